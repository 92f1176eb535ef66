"""RedisJournal's line to Redis: groups of script calls, one pipeline each, bounded retries.

A group goes out as one pipeline of ``EVALSHA`` calls (one round trip); each
call succeeds or fails alone. While Redis is unreachable the group is sent
again with backoff, for at most ``timeout`` seconds, then the caller gets a
:class:`~thanx_async.JournalError`. Sending again is safe: every script is
idempotent or replays its recorded reply (``P..'r:'..opid``). A script Redis
does not know (a restarted server) is loaded and its calls sent again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio
import redis.exceptions

from thanx_async._errors import JournalError
from thanx_async.redis import _journal_lua_lease, _journal_lua_work
from thanx_async.redis._errands import TRANSIENT, backoff

__all__ = ["SCRIPTS", "Arg", "Link", "Script"]

logger = logging.getLogger("thanx_async.journal")

#: An argument to a script.
Arg = bytes | str | int

_REFUSED = (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError)


class Script:
    """One Lua script and its SHA-1 (what ``EVALSHA`` names it by)."""

    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


class Link:
    """Runs script calls for one journal.

    Args:
        connection: returns the client to use (created on first use).
        key: ``KEYS[1]`` of every call (routes a Redis Cluster to the journal's slot).
        name: the journal's name, for messages (never the URL).
        timeout: seconds a group keeps trying while Redis is unreachable.
    """

    def __init__(
        self,
        connection: Callable[[], redis.asyncio.Redis],
        key: str,
        name: str,
        timeout: float,
    ) -> None:
        self._connection = connection
        self._key = key
        self._name = name
        self.timeout = timeout

    def error(self, what: str) -> JournalError:
        """A JournalError naming the journal."""
        return JournalError(f"journal {self._name!r} (Redis): {what}")

    async def call(
        self, calls: Sequence[tuple[Script, Sequence[Arg]]], *, timeout: float | None = None
    ) -> list[Any]:
        """The replies of ``calls``, in order; a call Redis refused gives its ``ResponseError``.

        Raises:
            JournalError: Redis stayed unreachable for ``timeout`` seconds (the
                link's own by default), or refused this client.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + (self.timeout if timeout is None else timeout)
        replies: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))
        failures = 0
        while pending:
            try:
                async with asyncio.timeout(max(0.0, deadline - loop.time())):
                    got = await self._pipeline([calls[i] for i in pending])
                    for i, reply in zip(pending, got, strict=True):
                        replies[i] = reply
                    # Calls of a script Redis does not know (restarted) did not run: again.
                    pending = [i for i in pending if _noscript(replies[i])]
                    if pending:
                        await self._load({calls[i][0] for i in pending})
            except _REFUSED as exc:  # a wrong password does not heal by waiting
                raise self.error(f"Redis refused this client ({type(exc).__name__})") from exc
            except (*TRANSIENT, TimeoutError) as exc:
                failures += 1
                now = loop.time()
                if now >= deadline:
                    cause = "no answer" if isinstance(exc, TimeoutError) else type(exc).__name__
                    raise self.error(f"unreachable for {now - started:.1f}s ({cause})") from exc
                if failures == 1:
                    logger.warning(
                        "journal %r: Redis is unreachable (%s); retrying for up to %.1fs",
                        self._name, type(exc).__name__, deadline - now,
                    )  # fmt: skip
                await asyncio.sleep(min(backoff(failures), deadline - now))
            except redis.exceptions.RedisError as exc:
                raise self.error(f"{type(exc).__name__}: {exc}") from exc
        return replies

    async def one(
        self, script: Script, args: Sequence[Arg], *, timeout: float | None = None
    ) -> Any:
        """The reply of one call (see :meth:`call`); a refusal raises JournalError."""
        (reply,) = await self.call([(script, args)], timeout=timeout)
        if isinstance(reply, Exception):
            raise self.error(f"{script.name.lower()} failed ({reply})")
        return reply

    async def load(self, scripts: Sequence[Script]) -> None:
        """Load scripts ahead of their first use (bounded like a call)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        failures = 0
        while True:
            try:
                async with asyncio.timeout(max(0.0, deadline - loop.time())):
                    await self._load(set(scripts))
                    return
            except _REFUSED as exc:
                raise self.error(f"Redis refused this client ({type(exc).__name__})") from exc
            except (*TRANSIENT, TimeoutError) as exc:
                failures += 1
                if loop.time() >= deadline:
                    raise self.error(f"unreachable ({type(exc).__name__})") from exc
                await asyncio.sleep(min(backoff(failures), max(0.0, deadline - loop.time())))
            except redis.exceptions.RedisError as exc:
                raise self.error(f"{type(exc).__name__}: {exc}") from exc

    async def _pipeline(self, calls: Sequence[tuple[Script, Sequence[Arg]]]) -> list[Any]:
        pipe = self._connection().pipeline(transaction=False)
        for script, args in calls:
            pipe.execute_command("EVALSHA", script.sha, 1, self._key, *args)
        return await pipe.execute(raise_on_error=False)

    async def _load(self, scripts: set[Script]) -> None:
        connection = self._connection()
        for script in scripts:
            sha = await connection.script_load(script.source)
            if _text(sha) != script.sha:  # pragma: no cover - Redis hashes as we do
                raise self.error(f"Redis named script {script.name} {sha!r}")


def _noscript(reply: Any) -> bool:
    return isinstance(reply, redis.exceptions.NoScriptError)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


#: Every script of the journal, by name.
SCRIPTS = {
    name: Script(name, getattr(module, name))
    for module in (_journal_lua_work, _journal_lua_lease)
    for name in module.__all__
}
