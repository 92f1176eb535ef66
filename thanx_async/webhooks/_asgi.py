"""The ASGI 3 adapter of :class:`WebhookReceiver`, written on the ASGI spec (no framework)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from thanx_async.webhooks._receiver import WebhookReceiver

__all__ = ["AsgiApp"]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]

_SIGNATURE = b"x-thanx-signature"  # ASGI servers give header names lower-cased


class AsgiApp:
    """An ASGI 3 application answering ``POST`` deliveries with a :class:`WebhookReceiver`.

    Route the webhook's path to it (``app.add_route(path, receiver.asgi_app,
    methods=["POST"])`` in FastAPI, ``Route(...)`` in Starlette, or ``app.mount``
    at the path with a trailing slash); it answers any path it receives.
    Other methods get 405. The lifespan protocol is completed, so it can be
    served on its own (``uvicorn module:app``).
    """

    def __init__(self, receiver: WebhookReceiver) -> None:
        self.receiver = receiver

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(receive, send)
        elif kind == "http":
            await self._http(scope, receive, send)
        else:
            # The ASGI spec: an application raises on a scope type it does not support.
            raise RuntimeError(f"the Thanx webhook receiver serves HTTP only, not {kind!r}")

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await _respond(send, 405, b'{"error":"method not allowed"}', [(b"allow", b"POST")])
            return
        signature: str | None = None
        length: int | None = None
        for name, value in scope["headers"]:
            if name == _SIGNATURE and signature is None:
                signature = value.decode("latin-1")
            elif name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = None
        limit = self.receiver.max_body_size
        if length is not None and length > limit:
            await _respond(send, *self.receiver.too_large(), [(b"connection", b"close")])
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left: nobody to answer, nothing acted on
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _respond(send, *self.receiver.too_large(), [(b"connection", b"close")])
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        status, body = self.receiver.handle(b"".join(chunks), signature)
        await _respond(send, status, body)


async def _respond(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra or ()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
