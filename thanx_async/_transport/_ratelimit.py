"""Client-side rate limiting: the async limiter every request of a client goes through.

The counting rules (and why they give zero 429s) are in :mod:`._ratelog`.

Waiting: requests wait FIFO in two classes, foreground and background (job
polls). While both wait, background gets every third grant; a class waiting
alone gets every grant. Nothing runs in the background: one of the waiters
watches the clock. It sleeps (in a short-lived timer task, so a grant can wake
it early) until the next expiry, or until a request finishes when only
in-flight requests block, grants what it can, and hands the watch on when it is
granted itself or cancelled. A grant from free budget never yields to the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import attrs

from thanx_async._config import RateLimit, low_water
from thanx_async._transport._ratelog import LogEntry, SlidingLog, Snapshot

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "BudgetSignal",
    "LimiterStats",
    "LogEntry",
    "PersistentRateLog",
    "RateLimiter",
    "SlidingLog",
    "SlidingWindowLimiter",
    "Slot",
]

# The pure core lives in _ratelog; its names are re-exported here for convenience.


class Slot(Protocol):
    """A granted request budget, held for the duration of one request."""

    def rate_limited(self, retry_after: float | None = None) -> None:
        """Report that the response was a 429, with its ``Retry-After`` seconds if any."""


class RateLimiter(Protocol):
    """What the transport needs from a rate limiter (in-process, or shared in wave 2)."""

    def slot(self, *, background: bool = False) -> contextlib.AbstractAsyncContextManager[Slot]:
        """Wait for budget; the request is counted from entering until after exiting.

        Args:
            background: a job poll, which yields to waiting foreground requests.
        """


@runtime_checkable
class PersistentRateLog(Protocol):
    """An optional capability of a :class:`RateLimiter`: its recent log can be saved and loaded.

    The in-process limiter has it, so a journal can carry its log across a
    restart (a restarted process must not burst into 429s its predecessor's
    requests would provoke). A shared limiter keeps its log where it counts
    and does not need it.
    """

    def snapshot(self) -> Snapshot:
        """The live log as ``(start, finish)`` wall-clock seconds."""
        ...

    def restore(self, entries: Iterable[tuple[float, float | None]]) -> None:
        """Load a :meth:`snapshot` (maybe a dead process's)."""
        ...


@runtime_checkable
class BudgetSignal(Protocol):
    """An optional capability of a :class:`RateLimiter`: it says when the budget binds.

    Both limiters of this package have it. While it is true, a batcher keeps a
    partition's open batch filling instead of sealing it into a POST that
    would only wait for budget (budget-aware sealing).
    """

    @property
    def saturated(self) -> bool:
        """Whether a request sent now would wait for budget (or soon will)."""
        ...


@attrs.frozen(kw_only=True)
class LimiterStats:
    """Counters for observability.

    Attributes:
        granted: slots granted so far.
        waited: grants that had to queue for budget.
        wait_seconds: total time spent queued, cancelled waits included.
        rate_limited: 429s reported through :meth:`Slot.rate_limited`.
        in_flight: slots currently held.
        queued: requests currently waiting.
        budget_used: the share of the long window's budget in use (0 to 1):
            for the in-process limiter, this process's requests; for a shared
            one, the fleet's as of its last answer (None before the first).
    """

    granted: int
    waited: int
    wait_seconds: float
    rate_limited: int
    in_flight: int
    queued: int
    budget_used: float | None = None


def _wake(wakeup: asyncio.Future[None]) -> None:
    if not wakeup.done():
        wakeup.set_result(None)


def _ring(wakeup: asyncio.Future[None], timer: asyncio.Future[None]) -> None:
    """Wake the watcher when its timer ends (passing on a failure of ``sleep``)."""
    if timer.cancelled() or wakeup.done():
        return
    error = timer.exception()
    if error is None:
        wakeup.set_result(None)
    else:
        wakeup.set_exception(error)


class _Waiter:
    __slots__ = ("abandoned", "entry", "wakeup")

    def __init__(self) -> None:
        self.entry: LogEntry | None = None
        self.wakeup: asyncio.Future[None] | None = None
        self.abandoned = False


class _SlotContext:
    __slots__ = ("_background", "_entry", "_limiter")

    def __init__(self, limiter: SlidingWindowLimiter, background: bool) -> None:
        self._limiter = limiter
        self._background = background

    async def __aenter__(self) -> Slot:
        self._entry = await self._limiter._acquire(self._background)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._limiter._finish(self._entry)

    def rate_limited(self, retry_after: float | None = None) -> None:
        self._limiter._rate_limited(retry_after)


class SlidingWindowLimiter:
    """The in-process :class:`RateLimiter`: a :class:`SlidingLog` with async waiting.

    Args:
        limit: both windows and their limits.
        clock: monotonic seconds; the log's time base.
        sleep: how to wait (tests pass a fake).
        wall_clock: wall seconds, only to translate :meth:`snapshot` for another process.

    Example::

        limiter = SlidingWindowLimiter(RateLimit())
        async with limiter.slot() as slot:
            response = await send()
            if response.status == 429:
                slot.rate_limited(retry_after)  # seconds from Retry-After, or None
    """

    def __init__(
        self,
        limit: RateLimit,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._log = SlidingLog(limit)
        self._low_water = low_water(limit)
        self._clock, self._sleep, self._wall_clock = clock, sleep, wall_clock
        self._foreground: deque[_Waiter] = deque()
        self._background: deque[_Waiter] = deque()
        self._queued = 0
        self._foreground_streak = 0  # foreground grants since the last background one
        self._watcher: _Waiter | None = None  # the one waiter that watches the clock
        self._finish_waiter: _Waiter | None = None  # woken by the next finish
        self._granted = self._waited = self._rate_limited_count = 0
        self._wait_seconds = 0.0

    def slot(self, *, background: bool = False) -> contextlib.AbstractAsyncContextManager[Slot]:
        """Wait for budget, FIFO within the class; see :meth:`RateLimiter.slot`."""
        return _SlotContext(self, background)

    @property
    def saturated(self) -> bool:
        """Whether the budget binds: a new request would wait, or the long window is nearly spent.

        True while foreground requests wait for budget, when one arriving now
        would have to wait, or when the long window has less than one short
        window's worth of requests left. Cheap and synchronous: the batcher
        reads it to keep batches filling instead of queueing small ones
        (see :class:`BudgetSignal`).
        """
        if self._foreground:
            return True
        now = self._clock()
        ready = self._log.ready_at(now)
        if ready is None or ready > now:
            return True
        return self._log.headroom(now) < self._low_water

    def stats(self) -> LimiterStats:
        """A snapshot of the counters."""
        return LimiterStats(
            granted=self._granted,
            waited=self._waited,
            wait_seconds=self._wait_seconds,
            rate_limited=self._rate_limited_count,
            in_flight=self._log.in_flight,
            queued=self._queued,
            budget_used=self._log.long_share(self._clock()),
        )

    def snapshot(self) -> Snapshot:
        """The live log as ``(start, finish)`` wall-clock (``time.time``) seconds."""
        now = self._clock()
        offset = self._wall_clock() - now
        return [(s + offset, None if f is None else f + offset) for s, f in self._log.snapshot(now)]

    def restore(self, entries: Iterable[tuple[float, float | None]]) -> None:
        """Load a :meth:`snapshot` (maybe another process's) so a restart does not burst."""
        now = self._clock()
        offset = self._wall_clock() - now
        self._log.restore(
            ((s - offset, None if f is None else f - offset) for s, f in entries), now
        )

    async def _acquire(self, background: bool) -> LogEntry:
        now = self._clock()
        if not self._queued:
            ready = self._log.ready_at(now)
            if ready is not None and ready <= now:  # the fast path: no queue, budget free
                self._granted += 1
                return self._log.start(now)
        waiter = _Waiter()
        (self._background if background else self._foreground).append(waiter)
        self._queued += 1
        self._waited += 1
        loop = asyncio.get_running_loop()
        try:
            while waiter.entry is None:
                waiter.wakeup = wakeup = loop.create_future()
                if self._watcher is None:
                    self._watcher = waiter
                timer = self._watch(waiter, wakeup) if self._watcher is waiter else None
                try:
                    # Resolved by a grant, by the timer, by a finish or to hand us the watch.
                    await wakeup
                finally:
                    if timer is not None:
                        timer.cancel()
        except BaseException:
            self._abandon(waiter)
            raise
        finally:
            self._wait_seconds += self._clock() - now
        if self._watcher is waiter:
            self._watcher = None
            self._elect()
        return waiter.entry

    def _watch(self, waiter: _Waiter, wakeup: asyncio.Future[None]) -> asyncio.Future[None] | None:
        """As the watcher: grant what budget allows, then arrange to be woken."""
        ready = self._dispatch(self._clock())
        if waiter.entry is not None:  # granted ourselves; the grant wakes us
            return None
        if ready is None:
            # Only in-flight requests block; the next finish gives them a time.
            self._finish_waiter = waiter
            return None
        # A finish never brings ``ready`` closer (its entry counts for a whole window
        # after it), so only a grant or a hand-over needs to interrupt this timer.
        timer = asyncio.ensure_future(self._sleep(ready - self._clock()))
        timer.add_done_callback(functools.partial(_ring, wakeup))
        return timer

    def _dispatch(self, now: float) -> float | None:
        """Grant queued waiters while budget lasts; return when the next one may go."""
        foreground, background = self._foreground, self._background
        while True:
            for queue in (foreground, background):
                while queue and queue[0].abandoned:
                    queue.popleft()
            if not foreground and not background:
                return now
            ready = self._log.ready_at(now)
            if ready is None or ready > now:
                return ready
            if foreground and (not background or self._foreground_streak < 2):
                waiter = foreground.popleft()
                self._foreground_streak += 1
            else:
                waiter = background.popleft()
                self._foreground_streak = 0
            waiter.entry = self._log.start(now)
            self._queued -= 1
            self._granted += 1
            if waiter.wakeup is not None:
                # Deferred, so waiters granted at one instant (the watcher among them)
                # resume, and send, in the order they were granted.
                asyncio.get_running_loop().call_soon(_wake, waiter.wakeup)

    def _elect(self) -> None:
        """Hand the watch to a waiter; the last in line, so hand-overs stay rare."""
        for queue in (self._foreground, self._background):
            while queue and queue[-1].abandoned:
                queue.pop()
            if queue:
                self._watcher = watcher = queue[-1]
                if watcher.wakeup is not None:
                    _wake(watcher.wakeup)
                return

    def _abandon(self, waiter: _Waiter) -> None:
        if waiter.entry is not None:
            # Granted, but cancelled before it could send: give the budget back.
            self._log.discard(waiter.entry)
            self._granted -= 1
            waiter.entry = None
        else:
            waiter.abandoned = True
            self._queued -= 1
        if self._watcher is waiter:
            self._watcher = None
        if self._watcher is None:
            self._elect()
        elif self._watcher.wakeup is not None:
            # Budget may have come back, or the watcher may be waiting for a finish
            # that the discarded entry will never send: let it look again.
            _wake(self._watcher.wakeup)

    def _finish(self, entry: LogEntry) -> None:
        self._log.finish(entry, self._clock())
        waiter, self._finish_waiter = self._finish_waiter, None
        if waiter is not None and waiter.wakeup is not None:
            _wake(waiter.wakeup)

    def _rate_limited(self, retry_after: float | None) -> None:
        self._rate_limited_count += 1
        self._log.penalize(self._clock(), retry_after)
