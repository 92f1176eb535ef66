"""Where the bearer token comes from: a string, or an async provider re-asked on 401.

The token source also knows every token it handed out, so the transport can cut
them out of anything a server sends back (a proxy that echoes request headers
in an error page) before that text reaches an exception or a log line.
"""

from __future__ import annotations

import asyncio
import unicodedata
from collections import deque
from collections.abc import Awaitable, Callable
from urllib.parse import quote

import orjson

__all__ = ["REDACTED", "TokenError", "TokenProvider", "TokenSource", "clean_token"]

TokenProvider = Callable[[], Awaitable[str]]

#: What a token is replaced with in error texts and logs.
REDACTED = "<redacted>"

#: Tokens shorter than this are not redacted: they are no secret worth the name,
#: and cutting a 1-character token out of every message would garble them all.
_MIN_REDACTED = 4
#: A token at least twice this long also has any piece of it this long or longer
#: that starts or ends like it redacted (a message that cut a token short).
_PIECE = 8
#: Tokens remembered for redaction (a provider that rotates hourly for months
#: must not grow this without bound).
_REMEMBERED = 16


class TokenError(ValueError):
    """A token that cannot be sent (the message never contains the token)."""


def clean_token(token: str, origin: str) -> str:
    """The token without surrounding whitespace; refuse one that cannot be a header value.

    A token read from a file or an environment variable often ends with a
    newline; HTTP would drop that whitespace anyway (and aiohttp refuses the
    header outright), so it is stripped. A control character or whitespace
    *inside* the token is a broken secret, refused with a message that says
    where it is, never what it is.

    Args:
        token: the raw token.
        origin: what to call it in the error message.

    Raises:
        TokenError: the token is empty, or has whitespace or a control character inside.
    """
    stripped = token.strip()
    if not stripped:
        raise TokenError(f"{origin} is empty")
    for position, char in enumerate(stripped):
        if char.isspace() or unicodedata.category(char) == "Cc":
            raise TokenError(
                f"{origin} contains a control or whitespace character at position "
                f"{position} of {len(stripped)}; a bearer token cannot hold one "
                "(check how the secret is read)"
            )
    return stripped


def _spellings(token: str) -> list[str]:
    """The ways ``token`` can appear in text a server sends back."""
    forms = {token, orjson.dumps(token).decode()[1:-1], quote(token, safe="")}
    return [form for form in forms if len(form) >= _MIN_REDACTED]


class TokenSource:
    """Holds the current access token and refreshes it from a provider.

    A static string never changes. With a provider, the token is fetched on
    first use and fetched again when a request using it got a 401; concurrent
    401s for the same token cause one refresh, not many. Tokens are stripped of
    surrounding whitespace (a trailing newline from a secrets file) and refused
    with a :class:`TokenError` when they hold a control character.

    Raises:
        TokenError: a static token that is empty or holds a control character
            (also a ``ValueError``; the message never shows the token).
        TypeError: ``token`` is neither a string nor a callable.
    """

    __slots__ = ("_lock", "_provider", "_secrets", "_seen", "_token")

    def __init__(self, token: str | TokenProvider) -> None:
        self._seen: deque[str] = deque(maxlen=_REMEMBERED)  # raw tokens, oldest first
        self._secrets: list[str] = []  # their spellings, longest first
        if isinstance(token, str):
            self._token: str | None = clean_token(token, "access_token")
            self._provider: TokenProvider | None = None
            self._remember(token)
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

    @property
    def longest_secret(self) -> int:
        """The length of the longest text :meth:`redact` cuts out."""
        return max(map(len, self._secrets), default=0)

    def redact(self, text: str) -> str:
        """``text`` with every token this source ever gave out replaced by ``<redacted>``.

        A piece of a token (its first or last 8 characters or more, as left by
        someone else's truncation: ``'Bearer sk_live_ABCD...'``) is replaced too.
        """
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for secret in self._secrets:
            if len(secret) >= 2 * _PIECE:
                text = _redact_pieces(text, secret)
        return text

    def _remember(self, raw: str) -> None:
        if raw in self._seen:
            return
        self._seen.append(raw)
        # The raw form too: a server may echo the header before stripping it.
        forms = {
            f for token in self._seen for f in (*_spellings(token), *_spellings(token.strip()))
        }
        # Longest first, so a token is never half-replaced by a shorter spelling.
        self._secrets = sorted(forms, key=len, reverse=True)

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
            if not isinstance(token, str):
                raise TokenError(
                    f"the access token provider must return a string, got {type(token).__name__}"
                )
            if token.strip():  # an empty one is refused below; nothing to remember
                self._remember(token)
            self._token = clean_token(token, "the token from the access token provider")
            return self._token


def _redact_pieces(text: str, secret: str) -> str:
    """Replace runs of ``text`` that begin like ``secret`` or end like it."""
    head, tail = secret[:_PIECE], secret[-_PIECE:]
    start = text.find(head)
    while start != -1:
        end = start + _PIECE
        while end < len(text) and end - start < len(secret) and text[end] == secret[end - start]:
            end += 1
        text = text[:start] + REDACTED + text[end:]
        start = text.find(head, start + len(REDACTED))
    end = text.find(tail)
    while end != -1:
        stop = end + _PIECE  # the run ends here; walk back while it matches the token
        start = end
        while (
            start > 0
            and stop - start < len(secret)
            and text[start - 1] == secret[len(secret) - (stop - start) - 1]
        ):
            start -= 1
        text = text[:start] + REDACTED + text[stop:]
        end = text.find(tail, start + len(REDACTED))
    return text
