"""One credential's budget in Redis, seen from one process: the scripts and this process's part.

:class:`Budget` calls the scripts of :mod:`._scripts` and keeps a private
record of this process's own recent requests (on the Redis clock). Redis may
lose the log (a restart without persistence, a flush, a failover to an empty
replica); the grant script notices, because the log's ``epoch`` is not the one
this process knew, and the process puts its own requests back before it takes
another grant. Every live process does the same at its next request, so the
fleet rebuilds the log instead of bursting into 429s.

Queueing, waiting and retrying are the limiter's (:mod:`._limiter`); this
module only talks to Redis, and raises what redis-py raises.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import redis.asyncio
import redis.exceptions

from thanx_async.redis import _scripts

if TYPE_CHECKING:
    from thanx_async._config import RateLimit

__all__ = ["Budget", "Grant"]

_US = 1_000_000
#: How long a waiting process's registration outlives its computed wait: enough
#: for its wake-up, jitter and round trip, short enough that a dead one is forgotten soon.
_MARGIN = 2.0
#: Times a grant puts this process's requests back into a log lost again meanwhile.
_RESTORE_ROUNDS = 3


@attrs.frozen
class Grant:
    """The grant script's answer.

    Attributes:
        granted: the request may be sent now.
        wait: when refused, seconds until the budget may admit it (a lower bound
            when only in-flight requests block).
        long_left: requests the long window could still admit after this answer.
        defer: refused, and the next free request is the polls' turn: wake a
            little after them.
    """

    granted: bool
    wait: float
    long_left: int
    defer: bool


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Budget:
    """The scripts of one credential's budget, bound to a Redis client.

    Args:
        connect: returns the Redis client to use (it may be recreated after ``aclose``).
        keys: the budget's four keys (:func:`._scripts.budget_keys`).
        limit: the windows and their limits.
        lease: seconds an in-flight request counts as in flight without a renewal.
        token: this process's name in the waiting set.
    """

    def __init__(
        self,
        connect: Callable[[], redis.asyncio.Redis | redis.asyncio.RedisCluster],
        keys: list[str],
        limit: RateLimit,
        lease: float,
        token: str,
    ) -> None:
        self._connect = connect
        self._client: object = None
        self._scripts: dict[str, Any] = {}
        self.keys = keys
        short_len, short_limit = limit.short_window
        self._short = (round(short_len * _US), short_limit)
        self._long = (round(limit.window * _US), limit.per_window)
        self._horizon = max(self._short[0], self._long[0])
        self._lease = round(lease * _US)
        self._margin = round(_MARGIN * _US)
        # Keys outlive their last write by a lease and the longest window, then vanish.
        self._ttl = math.ceil((self._lease + self._horizon) / 1000) + 1000
        self._token = token
        self._epoch = ""  # the log this process knows ("" before its first grant)
        self._in_flight: dict[str, int] = {}  # id -> lease deadline (Redis µs)
        self._finished: deque[tuple[int, str]] = deque()  # (finish µs, id), finish order
        self._now = 0  # the latest Redis time seen

    def _script(self, name: str) -> Any:
        client = self._connect()
        if client is not self._client:
            self._client, self._scripts = client, {}
        script = self._scripts.get(name)
        if script is None:
            # redis-py's Script runs EVALSHA and loads the source on NOSCRIPT
            # (after a Redis restart or SCRIPT FLUSH).
            script = self._scripts[name] = client.register_script(getattr(_scripts, name))
        return script

    async def _run(self, name: str, *args: object) -> Any:
        return await self._script(name)(keys=self.keys, args=args)

    async def grant(self, request_id: str, *, background: bool, more: bool) -> Grant:
        """Ask for budget for one request; record it when granted.

        Args:
            request_id: names the request in Redis (unique in the fleet).
            background: a poll, which yields to waiting foreground requests.
            more: other requests of the same class wait in this process (it
                stays registered as waiting after this grant).

        Raises:
            redis.RedisError: Redis did not answer (the grant may or may not
                have been recorded: :meth:`discard` the id).
        """
        for round_ in range(2 * _RESTORE_ROUNDS):
            reply = await self._run(
                "GRANT",
                request_id,
                int(background),
                self._token,
                int(more),
                *self._short,
                *self._long,
                self._lease,
                self._epoch,
                self._margin,
                self._ttl,
            )
            status, wait, now, left, epoch, defer = reply
            self._seen(int(now))
            epoch = _text(epoch)
            if int(status) >= 0:
                self._epoch = epoch
                if status:
                    self._in_flight[request_id] = int(now) + self._lease
                return Grant(
                    granted=bool(status),
                    wait=int(wait) / _US,
                    long_left=int(left),
                    defer=bool(defer),
                )
            # Redis lost the log this process knew: put our part back, then ask again.
            # A log lost at every round (evicted under memory pressure?) is adopted as
            # it is after a few rounds, and given up on after a few more.
            if round_ >= _RESTORE_ROUNDS or await self._run(
                "RESTORE", epoch, self._ttl, *self._entries()
            ):
                self._epoch = epoch
        raise redis.exceptions.ResponseError(
            "the budget's keys vanish between two scripts (is Redis evicting them?)"
        )

    def _entries(self) -> list[object]:
        self._prune()
        args: list[object] = []
        for request_id, deadline in self._in_flight.items():
            args += [request_id, "i", deadline]
        for finish, request_id in self._finished:
            args += [request_id, "f", finish]
        return args

    def _seen(self, now: int) -> None:
        self._now = max(self._now, now)

    def _prune(self) -> None:
        finished, oldest = self._finished, self._now - self._horizon
        while finished and finished[0][0] <= oldest:
            finished.popleft()

    async def release(self, request_id: str) -> None:
        """The request got its response (or failed): it counts a window more."""
        finish = int(await self._run("RELEASE", request_id, self._ttl))
        self._seen(finish)
        if self._in_flight.pop(request_id, None) is not None:
            self._finished.append((finish, request_id))
            self._prune()

    async def discard(self, request_id: str) -> None:
        """Forget a grant whose request was never sent."""
        self._in_flight.pop(request_id, None)
        await self._run("DISCARD", request_id)

    async def renew(self, request_id: str) -> None:
        """Extend the lease of a request that is still running."""
        deadline = int(await self._run("RENEW", request_id, self._lease, self._ttl))
        if deadline and request_id in self._in_flight:
            self._in_flight[request_id] = deadline

    async def penalize(self, retry_after: float | None) -> float:
        """Pause the fleet after a 429; returns the pause in seconds from now."""
        after = 0 if retry_after is None or not retry_after > 0 else retry_after
        after_us = round(min(after, self._long[0] / _US) * _US)
        pause = await self._run("PENALIZE", *self._short, *self._long, after_us, self._ttl)
        return int(pause) / _US

    async def unregister(self, background: bool) -> None:
        """This process has no request of that class waiting any more."""
        client = self._connect()
        await client.zrem(self.keys[4 if background else 3], self._token)
