"""Reading a webhook body safely: a JSON content type, a hard size cap and a deadline."""

from __future__ import annotations

import asyncio

from fastapi import HTTPException, Request, status


def require_json(request: Request) -> None:
    """Refuse (415) anything but ``application/json``."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"expected Content-Type application/json, got {media_type or 'none'}",
        )


async def read_capped(request: Request, max_bytes: int, timeout_s: float) -> bytes:
    """The raw body, refusing (413) as soon as it passes ``max_bytes``, and (408) when it
    has not all arrived within ``timeout_s`` (a slow sender holds no connection for long).

    Reads in chunks, so a lying or missing Content-Length cannot make it buffer more.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_bytes:
                    raise _too_large(max_bytes)
    except TimeoutError as error:
        raise HTTPException(
            status.HTTP_408_REQUEST_TIMEOUT,
            f"body not received within {timeout_s:g} s (WEBHOOK_BODY_TIMEOUT_S)",
            headers={"Connection": "close"},
        ) from error
    return bytes(body)


def _too_large(max_bytes: int) -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"body larger than {max_bytes} bytes (WEBHOOK_MAX_BODY_BYTES)",
    )
