"""Ingest's pushed sources: HTTP routes that verify, parse and submit what providers send.

``twitch`` (EventSub webhook), ``donation`` (Streamlabs/StreamElements) with its
payload parsers ``donation_payloads``; ``body`` (capped, timed body reading) and
``submit`` (publish, or hold in the outage buffer) are shared by both routes.
"""
