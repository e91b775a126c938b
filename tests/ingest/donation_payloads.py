"""Donation webhook bodies in the shapes the donation services send."""

from __future__ import annotations

from typing import Any


def streamelements_tip(n: int, id_prefix: str = "tip") -> dict[str, Any]:
    """A StreamElements tip of $n, its ids ``{id_prefix}-{n}``."""
    return {
        "_id": f"{id_prefix}-{n}",
        "type": "tip",
        "createdAt": "2026-02-27T10:30:00.000Z",
        "data": {
            "tipId": f"{id_prefix}-{n}",
            "username": f"fan{n}",
            "amount": n,
            "currency": "USD",
        },
    }
