"""Client-side rate limiting: one sliding log over both of the server's windows.

Thanx allows, per credential, ``per_second`` requests in any ``second``-long
window and ``per_window`` in any ``window``-long window, and stamps a request
when it *arrives*. We never see that stamp; we only know it lies between the
moment we start sending (``s``) and the moment the response arrives (``f``).
So every request stays in a log and, for a window of length ``W``, counts from
``s`` until ``f + W`` (indefinitely while it is in flight; a connection error
finishes it at the moment of failure). A request may start only while fewer
than ``limit`` requests count, in both windows.

Why this gives zero 429s: suppose ``limit + 1`` requests arrive within one
window (``a_max - a_min < W``) and let ``r`` be the one that started last. Any
other one, ``q``, started no later than ``r`` and finished no earlier than it
arrived, so ``f_q + W >= a_q + W > a_max >= s_r``: ``q`` still counted when
``r`` started. Then ``limit`` requests counted at ``s_r`` and ``r`` would not
have started. A token bucket has no such bound: it admits a full burst plus a
window's refill, up to about twice the limit in one window.

Cost: finished requests sit in one deque per window in finish order (the clock
is monotonic), so expiry pops from the left; in-flight requests are only
counted. Admission is amortised O(1); 2,000 entries is the steady state.

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
from typing import TYPE_CHECKING, Protocol

import attrs

from thanx_async._config import RateLimit

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["LimiterStats", "LogEntry", "RateLimiter", "SlidingLog", "SlidingWindowLimiter", "Slot"]

#: ``(start, finish)`` per live request; ``finish`` is ``None`` while in flight.
Snapshot = list[tuple[float, float | None]]


class LogEntry:
    """One started request: the handle :meth:`SlidingLog.finish` takes back."""

    __slots__ = ("start",)

    def __init__(self, start: float) -> None:
        self.start = start


class _Window:
    __slots__ = ("finished", "length", "limit")

    def __init__(self, length: float, limit: int) -> None:
        self.length = length
        self.limit = limit
        self.finished: deque[tuple[float, float]] = deque()  # (finish, start), finish order

    def prune(self, now: float) -> None:
        finished, length = self.finished, self.length
        while finished and finished[0][0] + length <= now:
            finished.popleft()

    def ready_at(self, in_flight: int) -> float | None:
        """When the count drops below the limit; ``None`` if only a finish can make it."""
        excess = in_flight + len(self.finished) - self.limit + 1
        if excess <= 0:
            return float("-inf")
        if excess > len(self.finished):
            return None
        return self.finished[excess - 1][0] + self.length


class SlidingLog:
    """The synchronous core: the log of recent requests, with the clock passed in.

    Args:
        limit: both windows and their limits.
    """

    def __init__(self, limit: RateLimit) -> None:
        self._short = _Window(limit.second, limit.per_second)
        self._long = _Window(limit.window, limit.per_window)
        self._in_flight: set[LogEntry] = set()
        self._paused_until = float("-inf")

    @property
    def in_flight(self) -> int:
        """Requests started and not finished."""
        return len(self._in_flight)

    def _prune(self, now: float) -> None:
        self._short.prune(now)
        self._long.prune(now)

    def ready_at(self, now: float) -> float | None:
        """The earliest time a request may start: ``now`` if it may start at once.

        Returns ``None`` when only in-flight requests block: ask again after a finish.
        """
        self._prune(now)
        ready = max(now, self._paused_until)
        for window in (self._short, self._long):
            at = window.ready_at(len(self._in_flight))
            if at is None:
                return None
            ready = max(ready, at)
        return ready

    def start(self, now: float) -> LogEntry:
        """Record a request starting at ``now`` (the caller checked :meth:`ready_at`)."""
        entry = LogEntry(now)
        self._in_flight.add(entry)
        return entry

    def finish(self, entry: LogEntry, now: float) -> None:
        """Record that ``entry`` got its response (or failed) at ``now``; idempotent."""
        if entry in self._in_flight:
            self._in_flight.remove(entry)
            self._short.finished.append((now, entry.start))
            self._long.finished.append((now, entry.start))

    def discard(self, entry: LogEntry) -> None:
        """Forget a started entry whose request was never sent (its waiter was cancelled)."""
        self._in_flight.discard(entry)

    def penalize(self, now: float, retry_after: float | None = None) -> None:
        """React to a 429: hold every grant for the window the log says was crossed.

        Our log never lets the server count more than the limits, so a 429 means
        the server knows requests we do not (another process, a restart without
        a journal). If the long window has less than one short window's budget
        left, the long window is the likely culprit: hold until the oldest
        ``per_second`` finished entries have left it. In any case hold for a
        full short window from ``now``, and until ``now + retry_after`` if given.
        """
        self._prune(now)
        until = now + self._short.length
        long = self._long
        if len(self._in_flight) + len(long.finished) >= long.limit - self._short.limit:
            freed = min(self._short.limit, len(long.finished))
            if freed:
                until = max(until, long.finished[freed - 1][0] + long.length)
        if retry_after is not None:
            until = max(until, now + retry_after)
        self._paused_until = max(self._paused_until, until)

    def snapshot(self, now: float) -> Snapshot:
        """The live entries as ``(start, finish)``; in-flight ones have ``finish=None``."""
        self._prune(now)
        # Both deques are suffixes of one finish-ordered sequence: the longer holds the other.
        finished = max(self._short.finished, self._long.finished, key=len)
        live: Snapshot = [(start, None) for start in sorted(e.start for e in self._in_flight)]
        live.extend((start, finish) for finish, start in finished)
        return live

    def restore(self, entries: Iterable[tuple[float, float | None]], now: float) -> None:
        """Load entries from :meth:`snapshot` (same clock), merging with the current log.

        A restored in-flight entry belonged to a process that is gone, so it
        finished by ``now`` at the latest. Times after ``now`` (a wall clock
        stepped back) are clamped to ``now`` so the deques stay in order.
        """
        loaded = [
            (now if finish is None else min(finish, now), min(start, now))
            for start, finish in entries
        ]
        for window in (self._short, self._long):
            window.finished = deque(sorted([*window.finished, *loaded]))
            window.prune(now)


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
    """

    granted: int
    waited: int
    wait_seconds: float
    rate_limited: int
    in_flight: int
    queued: int


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

    def stats(self) -> LimiterStats:
        """A snapshot of the counters."""
        return LimiterStats(
            granted=self._granted,
            waited=self._waited,
            wait_seconds=self._wait_seconds,
            rate_limited=self._rate_limited_count,
            in_flight=self._log.in_flight,
            queued=self._queued,
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
