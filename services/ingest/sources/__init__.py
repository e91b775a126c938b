"""Ingest's pulled sources: each runs under the lifespan until ``stop`` and publishes events.

``audience`` (the pure simulated audience) and ``simulator`` (its Redis runner),
``scenario`` with the shipped ``scenarios/``; ``twitch`` (the EventSub source and
Helix poll), ``eventsub_socket`` (the WebSocket protocol client), ``eventsub`` (the
notification mapping, shared with the webhook route); ``recording`` (record, replay).
"""
