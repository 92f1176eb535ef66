"""The innermost layer: send one HTTP request, get one response.

A transport is a small protocol so tests (and users with unusual needs) can
swap it; auth, rate limiting and retries wrap it in :mod:`._requester`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

import aiohttp
import attrs

from thanx_async._errors import TransportError

__all__ = ["AiohttpTransport", "Response", "Transport"]


@attrs.frozen
class Response:
    """A complete HTTP response: status, headers and the whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    """Sends one request and returns the whole response, or raises TransportError."""

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
    """

    def __init__(self, session: aiohttp.ClientSession | None = None) -> None:
        self._session = session
        self._owns_session = session is None
        self._closed = False

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
                data = await resp.read()
                return Response(resp.status, resp.headers, data)
        except TimeoutError:
            raise TransportError(f"no response within {timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from None

    async def aclose(self) -> None:
        """Close the session if we created it."""
        self._closed = True
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()
            # Let the connector's transports finish closing (aiohttp's documented advice).
            await asyncio.sleep(0)
