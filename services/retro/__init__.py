"""The retro worker: the post-stream report and the bandit's stream-level update."""
