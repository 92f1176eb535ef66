"""Errands to Redis that nobody waits for: releases, discards, renewals, 429 reports.

A slot's exit must not wait for Redis (it could be cancelled mid-way and lose
the finish), so these run as background tasks. Each one retries while Redis is
unreachable, for a bounded time, and logs instead of raising: a background task
never dies silently. :meth:`Errands.drain` lets them land before a close.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Awaitable, Callable

import redis.exceptions

__all__ = ["TRANSIENT", "Errands", "backoff"]

logger = logging.getLogger("thanx_async.redis")

#: Errors after which Redis may well answer again: retried, never sent past.
TRANSIENT = (
    redis.exceptions.ConnectionError,  # also BusyLoadingError (a restarted Redis loading)
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # a failover in progress
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
)
#: Backoff between attempts to reach Redis: full jitter under a cap doubling to 2 s.
_FIRST_BACKOFF, _MAX_BACKOFF = 0.05, 2.0


def backoff(attempt: int) -> float:
    """A random wait before retry number ``attempt`` (1 for the first)."""
    cap = min(_MAX_BACKOFF, _FIRST_BACKOFF * 2 ** (attempt - 1))
    return random.uniform(0.0, cap)  # noqa: S311 - not crypto


class Errands:
    """The background tasks of one limiter."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def run(
        self, op: Callable[[], Awaitable[None]], what: str, patience: float
    ) -> asyncio.Task[None]:
        """Run ``op`` in the background until Redis takes it, for at most ``patience`` seconds."""
        task = asyncio.get_running_loop().create_task(self._persist(op, what, patience))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _persist(self, op: Callable[[], Awaitable[None]], what: str, patience: float) -> None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + patience
        for attempt in itertools.count(1):
            try:
                await op()
            except TRANSIENT as exc:
                wait = backoff(attempt)
                if loop.time() + wait > give_up:
                    logger.warning("gave up a %s in Redis (%s)", what, type(exc).__name__)
                    return
                await asyncio.sleep(wait)
            except Exception:  # a background task must never die silently
                logger.exception("a %s in Redis failed", what)
                return
            else:
                return

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the errands to land; cancel the rest."""
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
