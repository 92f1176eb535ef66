"""The rate limiter's pure core: one sliding log over both of the server's windows.

Thanx allows, per credential, ``per_second`` requests in any ``second``-long
window and ``per_window`` in any ``window``-long window (a fractional
``per_second`` becomes one request per ``second / per_second``: see
:attr:`RateLimit.short_window`), and stamps a request
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
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from thanx_async._config import RateLimit

__all__ = ["LogEntry", "SlidingLog", "Snapshot"]

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
        self._short = _Window(*limit.short_window)
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

    def headroom(self, now: float) -> int:
        """Requests the long window still admits now (after the short window's own bound)."""
        self._prune(now)
        long = self._long
        return long.limit - len(self._in_flight) - len(long.finished)

    def long_share(self, now: float) -> float:
        """The share of the long window's budget in use at ``now`` (0 to 1), without pruning.

        Safe to call from another thread (a metrics reader's): it changes
        nothing and reads the log from an atomic copy.
        """
        long = self._long
        horizon = now - long.length
        counted = len(self._in_flight) + sum(1 for f, _ in long.finished.copy() if f > horizon)
        return min(1.0, counted / long.limit)

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
        short-window-limit finished entries have left it. In any case hold for a
        full short window from ``now``, and until ``now + retry_after`` if given.

        A ``retry_after`` is capped at the long window (no limit of this API
        needs a longer pause, and an absurd value such as ``86400``, ``inf`` or
        a date in 2099 must not stall every request); a NaN or negative one is
        ignored.
        """
        self._prune(now)
        until = now + self._short.length
        long = self._long
        if len(self._in_flight) + len(long.finished) >= long.limit - self._short.limit:
            freed = min(self._short.limit, len(long.finished))
            if freed:
                until = max(until, long.finished[freed - 1][0] + long.length)
        if retry_after is not None and retry_after > 0:  # False for NaN
            until = max(until, now + min(retry_after, long.length))
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
