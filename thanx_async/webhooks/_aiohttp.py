"""The aiohttp adapter of :class:`WebhookReceiver`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from thanx_async.webhooks._signature import SIGNATURE_HEADER

if TYPE_CHECKING:
    from thanx_async.webhooks._receiver import WebhookReceiver

__all__ = ["handle_aiohttp"]


async def _read_capped(request: web.Request, limit: int) -> bytes | None:
    """The whole body, or ``None`` as soon as it grows past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def handle_aiohttp(receiver: WebhookReceiver, request: web.Request) -> web.Response:
    """Answer one delivery: size cap (413), then :meth:`WebhookReceiver.handle`."""
    limit = receiver.max_body_size
    length = request.content_length
    body = None if length is not None and length > limit else await _read_capped(request, limit)
    if body is None:
        status, payload = receiver.too_large()
        response = web.Response(status=status, body=payload, content_type="application/json")
        response.force_close()
        # Answer, then hang up: otherwise aiohttp would keep reading (and
        # discarding) the rest of an oversized body for up to 10 s.
        await response.prepare(request)
        await response.write_eof()
        request.protocol.force_close()
        return response
    status, payload = receiver.handle(body, request.headers.get(SIGNATURE_HEADER))
    return web.Response(status=status, body=payload, content_type="application/json")
