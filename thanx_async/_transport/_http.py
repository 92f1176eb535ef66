"""The innermost layer: send one HTTP request, get one response.

A transport is a small protocol so tests (and users with unusual needs) can
swap it; auth, rate limiting and retries wrap it in :mod:`._requester`.

Whatever the server does, the default transport's memory stays bounded: a body
is read incrementally and reading stops at ``max_body`` bytes (the connection
is then dropped), and aiohttp's own limits bound the status line and headers
(8,190 bytes a line, 128 headers); anything that is not valid HTTP becomes a
:class:`TransportError` whose message quotes none of the server's bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

import aiohttp
import attrs

from thanx_async._errors import TransportError

__all__ = [
    "DEFAULT_MAX_BODY",
    "AiohttpTransport",
    "Response",
    "Transport",
    "WireError",
    "error_type",
]

#: The default cap on a response body. The largest real answer, a completed job
#: listing 10,000 failures, is about 1 MB.
DEFAULT_MAX_BODY = 16 * 1024 * 1024
#: What is kept of a body over the cap (enough for an error message).
_KEPT_OF_TRUNCATED = 64 * 1024


class WireError(TransportError):
    """A :class:`TransportError` of the default transport, with what kind of failure it was.

    Only the transport layer sees it (the requester re-raises a plain
    TransportError): ``kind`` is telemetry's ``error.type``, ``timeout`` or the
    aiohttp exception's name.
    """

    def __init__(self, message: str, *, kind: str, may_have_succeeded: bool = True) -> None:
        super().__init__(message, may_have_succeeded=may_have_succeeded)
        self.kind = kind


def error_type(exc: TransportError) -> str:
    """The ``error.type`` of a failed attempt: low-cardinality, never the message."""
    if isinstance(exc, WireError):
        return exc.kind
    return "thanx_async.TransportError"  # a transport of the user's own


@attrs.frozen
class Response:
    """An HTTP response: status, headers and the body.

    Attributes:
        status: the HTTP status.
        headers: the response headers.
        body: the whole body, or its first bytes when ``truncated``.
        truncated: the body was larger than the transport's cap and was not read whole.
    """

    status: int
    headers: Mapping[str, str]
    body: bytes
    truncated: bool = False


class Transport(Protocol):
    """Sends one request and returns the whole response, or raises TransportError.

    A TransportError's ``may_have_succeeded`` says whether the request may have
    reached the server (``False`` only when it surely did not).
    """

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float,
    ) -> Response:
        """Send one request; connection failures and timeouts raise TransportError."""
        ...

    async def aclose(self) -> None:
        """Release connections (a session the user passed in is left open)."""
        ...


class AiohttpTransport:
    """The default transport: one ``aiohttp.ClientSession`` per client.

    The session is created lazily inside the running loop on the first request.
    A session passed in by the user is used as it is and never closed by us.

    Args:
        session: a session to use instead of our own.
        max_body: the largest body read whole; a larger one is cut off and its
            :class:`Response` marked ``truncated``.
    """

    def __init__(
        self, session: aiohttp.ClientSession | None = None, *, max_body: int = DEFAULT_MAX_BODY
    ) -> None:
        if max_body <= 0:
            raise ValueError("max_body must be > 0")
        self._session = session
        self._owns_session = session is None
        self._closed = False
        self._max_body = max_body

    @property
    def owns_open_session(self) -> bool:
        """Whether we created a session that is still open (for the ResourceWarning)."""
        return self._owns_session and self._session is not None and not self._session.closed

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the client is closed")
        if self._session is None:
            # JSON bodies are already bytes; skip aiohttp's own serialisation and cookie jar.
            self._session = aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(), raise_for_status=False
            )
        return self._session

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float,
    ) -> Response:
        """Send one request with aiohttp; see :class:`Transport`."""
        session = self._get_session()
        try:
            async with session.request(
                method,
                url,
                headers=headers,
                data=body,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as resp:
                return await self._read(resp)
        except TimeoutError:
            raise WireError(f"no response within {timeout:g}s", kind="timeout") from None
        except aiohttp.ClientResponseError as exc:
            # aiohttp's parser errors quote the offending bytes (a header line
            # that may echo our Authorization header): keep only its words.
            raise WireError(
                f"invalid HTTP response: {_without_quotes(exc.message)}", kind=_kind(exc)
            ) from None
        except aiohttp.ClientConnectorError as exc:
            # The connection never opened: not a byte of the request left.
            raise WireError(
                f"{type(exc).__name__}: {exc}", kind=_kind(exc), may_have_succeeded=False
            ) from None
        except aiohttp.ClientError as exc:
            raise WireError(f"{type(exc).__name__}: {exc}", kind=_kind(exc)) from None

    async def _read(self, resp: aiohttp.ClientResponse) -> Response:
        """Read the body in chunks, stopping (and dropping the connection) past the cap."""
        declared = resp.content_length
        if declared is not None and declared > self._max_body:
            head = await resp.content.read(_KEPT_OF_TRUNCATED)
            resp.close()
            return Response(resp.status, resp.headers, head, truncated=True)
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            if size > self._max_body:
                resp.close()  # the rest is never read: the connection cannot be reused
                return Response(resp.status, resp.headers, _head(chunks), truncated=True)
            chunks.append(chunk)
        return Response(resp.status, resp.headers, b"".join(chunks))

    async def aclose(self) -> None:
        """Close the session if we created it."""
        self._closed = True
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
            # Let the connector's transports finish closing (aiohttp's documented advice).
            await asyncio.sleep(0)


def _kind(exc: BaseException) -> str:
    return f"aiohttp.{type(exc).__name__}"


def _head(chunks: list[bytes]) -> bytes:
    """The first bytes of a body over the cap, without joining all of it."""
    kept: list[bytes] = []
    size = 0
    for chunk in chunks:
        if size >= _KEPT_OF_TRUNCATED:
            break
        kept.append(chunk[: _KEPT_OF_TRUNCATED - size])
        size += len(kept[-1])
    return b"".join(kept)


def _without_quotes(message: str) -> str:
    """The words of an aiohttp parser message, without the bytes it quotes (``: b'...'``)."""
    for marker in (":\n", ": b'", ': b"', ": bytearray("):
        message = message.split(marker, 1)[0]
    return message.strip()[:200] or "unparsable"
