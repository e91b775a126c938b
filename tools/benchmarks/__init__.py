"""``make bench``'s benchmarks, one module each, and the harness they share (see tools/bench.py)."""
