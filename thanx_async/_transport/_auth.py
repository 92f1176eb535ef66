"""Where the bearer token comes from: a string, or an async provider re-asked on 401."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

__all__ = ["TokenProvider", "TokenSource"]

TokenProvider = Callable[[], Awaitable[str]]


class TokenSource:
    """Holds the current access token and refreshes it from a provider.

    A static string never changes. With a provider, the token is fetched on
    first use and fetched again when a request using it got a 401; concurrent
    401s for the same token cause one refresh, not many.
    """

    __slots__ = ("_lock", "_provider", "_token")

    def __init__(self, token: str | TokenProvider) -> None:
        if isinstance(token, str):
            if not token:
                raise ValueError("access_token is empty")
            self._token: str | None = token
            self._provider: TokenProvider | None = None
        elif callable(token):
            self._token = None
            self._provider = token
        else:
            raise TypeError("access_token must be a string or an async callable returning one")
        self._lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return "TokenSource(<redacted>)"

    @property
    def can_refresh(self) -> bool:
        """Whether a 401 is worth one more try with a fresh token."""
        return self._provider is not None

    async def get(self) -> str:
        """The token to send now."""
        if self._token is not None:
            return self._token
        return await self._fetch(stale=None)

    async def refresh(self, stale: str) -> str:
        """Ask the provider again, unless someone already replaced ``stale``."""
        return await self._fetch(stale=stale)

    async def _fetch(self, stale: str | None) -> str:
        assert self._provider is not None  # callers check can_refresh / _token first
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._token is not None and self._token != stale:
                return self._token
            token = await self._provider()
            if not isinstance(token, str) or not token:
                raise TypeError("the access token provider must return a non-empty string")
            self._token = token
            return token
