"""The rate limiter: zero 429s at the server, near-full throughput, priorities, 429s, restarts."""

from __future__ import annotations

import asyncio
import heapq
import math
import selectors
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thanx_async._config import RateLimit
from thanx_async._transport._ratelimit import LogEntry, SlidingLog, SlidingWindowLimiter

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

# --- a discrete-event simulation of clients and server over the pure core ---

#: (demand time, latency, where in [send, response] the server stamps it, as a fraction)
Demand = tuple[float, float, float]


class Run:
    """What one simulated run produced: grant times and server arrival stamps."""

    def __init__(self) -> None:
        self.grants: list[float] = []
        self.arrivals: list[float] = []


def simulate(log: SlidingLog, demands: list[Demand]) -> Run:
    """Drive ``log`` with FIFO demands on an exact virtual clock; requests send when granted."""
    run = Run()
    events: list[tuple[float, int, int, int]] = []  # (time, order, kind, demand index)
    finish, demand, wake = 0, 1, 2  # a finish at the same instant is processed first
    for i, (at, _, _) in enumerate(demands):
        heapq.heappush(events, (at, demand, len(events), i))
    queue: deque[int] = deque()
    entries: dict[int, LogEntry] = {}
    order = len(events)
    while events:
        now, kind, _, i = heapq.heappop(events)
        if kind == finish:
            log.finish(entries.pop(i), now)
        elif kind == demand:
            queue.append(i)
        while queue:
            ready = log.ready_at(now)
            if ready is None:  # a finish event is pending and will retry
                break
            if ready > now:
                order += 1
                heapq.heappush(events, (ready, wake, order, -1))
                break
            j = queue.popleft()
            _, latency, stamp = demands[j]
            entries[j] = log.start(now)
            run.grants.append(now)
            run.arrivals.append(now + stamp * latency)
            order += 1
            heapq.heappush(events, (now + latency, finish, order, j))
    assert not queue
    return run


def server_violations(arrivals: list[float], limit: RateLimit) -> list[tuple[float, float]]:
    """Pairs of stamps ``limit`` apart that are closer than the window (the emulator's rule).

    A fractional ``per_second`` r is checked as one request per ``second / r`` (and
    then at most ``ceil(r)`` in any ``second``), the rule :class:`RateLimit` documents.
    """
    stamps = sorted(arrivals)
    bad = []
    short_length, short_count = limit.short_window
    ceiling = math.ceil(limit.per_second)
    for count, length in (
        (short_count, short_length),
        (ceiling, limit.second),
        (limit.per_window, limit.window),
    ):
        bad += [
            (stamps[i], stamps[i + count])
            for i in range(len(stamps) - count)
            if not stamps[i + count] >= stamps[i] + length
        ]
    return bad


def optimal_last_arrival(n: int, limit: RateLimit) -> float:
    """The earliest the n-th stamp can be at any client: any k+1 stamps span a k-window."""
    stamps: list[float] = []
    short_length, short_count = limit.short_window
    for k in range(n):
        at = 0.0
        if k >= short_count:
            at = max(at, stamps[k - short_count] + short_length)
        if k >= limit.per_window:
            at = max(at, stamps[k - limit.per_window] + limit.window)
        stamps.append(at)
    return stamps[-1]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[RateLimit, list[Demand]]:
    """Scaled-down limits where both windows bind, and bursty random demand."""
    # Whole rates, and fractional ones (a worker's share of a credential's budget).
    fractional = st.floats(0.2, 6.0).filter(lambda r: not r.is_integer())
    limit = RateLimit(
        per_second=draw(st.integers(1, 6) | fractional),
        per_window=draw(st.integers(3, 30)),
        window=draw(st.floats(2.0, 20.0)),
        second=1.0,
    )
    n = draw(st.integers(1, 80))
    gaps = draw(
        st.lists(st.sampled_from([0.0, 0.01, 0.3]) | st.floats(0, 3), min_size=n, max_size=n)
    )
    latencies = draw(st.lists(st.floats(0, 4.0), min_size=n, max_size=n))
    stamps = draw(st.lists(st.floats(0, 1), min_size=n, max_size=n))
    times = [sum(gaps[: i + 1]) for i in range(n)]
    return limit, list(zip(times, latencies, stamps, strict=True))


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_server_never_sees_either_window_exceeded(scenario: tuple[RateLimit, list[Demand]]) -> None:
    """Whatever the timings and wherever the server stamps, no window ever holds too many."""
    limit, demands = scenario
    run = simulate(SlidingLog(limit), demands)
    assert len(run.arrivals) == len(demands)
    assert server_violations(run.arrivals, limit) == []


class _SendTimeLog(SlidingLog):
    """A broken log that counts a request from its send time only."""

    def finish(self, entry: LogEntry, now: float) -> None:
        super().finish(entry, entry.start)


def test_the_property_catches_counting_from_send_time() -> None:
    """The server check has teeth: a log that ignores latency is caught at once."""
    limit = RateLimit(per_second=1, per_window=100, window=100.0)
    demands = [(0.0, 0.9, 1.0), (0.0, 0.9, 0.0)]  # stamped at 0.9, then at 1.0
    assert server_violations(simulate(_SendTimeLog(limit), demands).arrivals, limit)
    assert not server_violations(simulate(SlidingLog(limit), demands).arrivals, limit)


@pytest.mark.parametrize(
    ("limit", "n"),
    [
        pytest.param(RateLimit(per_second=5, per_window=10**6), 1000, id="short-window"),
        pytest.param(RateLimit(per_second=5, per_window=50, window=20.0), 500, id="long-binds"),
        pytest.param(RateLimit(), 6000, id="thanx-defaults"),
        pytest.param(RateLimit(per_second=2.5, per_window=10**6), 500, id="fractional"),
        pytest.param(RateLimit(per_second=0.5, per_window=250), 300, id="worker-share"),
    ],
)
def test_saturating_load_runs_within_5_percent_of_the_limit(limit: RateLimit, n: int) -> None:
    """With demand always waiting and 1 ms latency, the last stamp is <5% after the optimum."""
    run = simulate(SlidingLog(limit), [(0.0, 0.001, 0.5)] * n)
    bound = optimal_last_arrival(n, limit)
    assert bound <= max(run.arrivals) <= 1.05 * bound


# --- 429s and restarts, on the pure core ---


def test_429_with_room_in_the_long_window_pauses_one_short_window() -> None:
    """A 429 while the long window has room holds every grant for exactly one second."""
    log = SlidingLog(RateLimit(per_second=5, per_window=100, window=60.0))
    log.finish(log.start(0.0), 0.1)
    assert log.ready_at(10.0) == 10.0
    log.penalize(10.0)
    assert log.ready_at(10.0) == log.ready_at(10.5) == 11.0
    assert log.ready_at(11.0) == 11.0


def test_429_near_a_full_long_window_waits_for_long_entries_to_expire() -> None:
    """A 429 with under a second's budget left in the long window waits out its oldest entries."""
    log = SlidingLog(RateLimit(per_second=2, per_window=10, window=60.0))
    for k in range(9):  # 9 of 10 used: our log alone would still admit one
        log.finish(log.start(k * 1.0), k * 1.0 + 0.5)
    assert log.ready_at(30.0) == 30.0
    log.penalize(30.0)
    # per_second (2) entries must leave: the second oldest finished at 1.5.
    assert log.ready_at(30.0) == 61.5


def test_retry_after_is_honoured_and_combined_with_the_inferred_wait() -> None:
    """Retry-After pauses until now + its value, never shorter than the inferred wait."""
    log = SlidingLog(RateLimit(per_second=5, per_window=100))
    log.penalize(10.0, retry_after=7.0)
    assert log.ready_at(10.0) == 17.0
    log.penalize(12.0, retry_after=0.0)
    assert log.ready_at(12.0) == 17.0  # an earlier pause is never shortened
    log.penalize(20.0, retry_after=0.2)
    assert log.ready_at(20.0) == 21.0  # the short window still applies


def test_in_flight_requests_block_until_they_finish() -> None:
    """A request counts while in flight, then for a full window after its response."""
    log = SlidingLog(RateLimit(per_second=1, per_window=100))
    entry = log.start(0.0)
    assert log.ready_at(50.0) is None
    log.finish(entry, 50.0)
    log.finish(entry, 70.0)  # finishing twice changes nothing
    assert log.ready_at(50.0) == 51.0


def test_snapshot_restore_round_trip_refuses_to_burst() -> None:
    """A limiter restored from a snapshot (other clock base) waits for the old requests."""
    limit = RateLimit(per_second=3, per_window=100, window=60.0)
    old = SlidingWindowLimiter(limit, clock=lambda: 1000.0, wall_clock=lambda: 5000.0)
    for k in range(3):
        old._log.finish(old._log.start(999.0 + k * 0.1), 999.5)
    old._log.start(999.9)  # still in flight when the process died
    snapshot = old.snapshot()
    assert snapshot == [(4999.9, None), (4999.0, 4999.5), (4999.1, 4999.5), (4999.2, 4999.5)]

    new = SlidingWindowLimiter(limit, clock=lambda: 7.0, wall_clock=lambda: 5000.2)
    new.restore(snapshot)
    # 4 entries count at 6.8: three finished at 6.3 (+1 s), one treated as finished at 7.0.
    assert new._log.ready_at(7.0) == pytest.approx(7.3)
    assert [f for _, f in sorted(new.snapshot())] == pytest.approx([4999.5] * 3 + [5000.2])


# --- the async limiter, on a virtual-time event loop ---


class _TimeTravelSelector(selectors.BaseSelector):
    """A selector that never blocks: waiting for a timer jumps the loop's clock instead."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._inner = selectors.DefaultSelector()
        self._loop = loop

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._inner.select(0)
        if not ready and timeout is None:
            raise RuntimeError("virtual-time deadlock: nothing scheduled, nothing ready")
        if not ready and timeout:
            self._loop.now = max(self._loop.now + timeout, math.nextafter(self._loop.now, math.inf))
        return ready

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._inner.get_map()

    def close(self) -> None:
        self._inner.close()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock only moves when every task is waiting for a timer."""

    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(_TimeTravelSelector(self))

    def time(self) -> float:
        return self.now


def run_virtual(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``main`` to completion in virtual time."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        runner.run(main())


def limiter_on_loop(limit: RateLimit) -> SlidingWindowLimiter:
    """A limiter whose clock is the running (virtual) loop's."""
    return SlidingWindowLimiter(limit, clock=asyncio.get_running_loop().time)


async def request(
    limiter: SlidingWindowLimiter, log: list[tuple[str, float]], name: str, latency: float = 0.0
) -> None:
    """Take a slot, note the grant time, hold it for ``latency``."""
    async with limiter.slot(background=name.startswith("bg")):
        log.append((name, asyncio.get_running_loop().time()))
        await asyncio.sleep(latency)


def test_background_gets_one_grant_in_three_while_foreground_waits() -> None:
    """Polls get every third grant while POSTs wait, every grant alone; FIFO in each class."""
    grants: list[tuple[str, float]] = []

    async def main() -> None:
        limiter = limiter_on_loop(RateLimit(per_second=1, per_window=1000, window=900.0))
        await request(limiter, grants, "first")
        names = [f"bg{i}" for i in range(6)] + [f"fg{i}" for i in range(6)]
        await asyncio.gather(*(request(limiter, grants, name) for name in names))

    run_virtual(main)
    assert [name for name, _ in grants] == [
        "first",
        *("fg0", "fg1", "bg0", "fg2", "fg3", "bg1", "fg4", "fg5", "bg2"),
        *("bg3", "bg4", "bg5"),
    ]
    assert [at for _, at in grants] == [float(k) for k in range(13)]  # no grant wasted


def test_background_alone_gets_the_full_rate() -> None:
    """With no foreground waiting, polls are granted as fast as the windows allow."""
    grants: list[tuple[str, float]] = []

    async def main() -> None:
        limiter = limiter_on_loop(RateLimit(per_second=2, per_window=1000, window=900.0))
        await asyncio.gather(*(request(limiter, grants, f"bg{i}") for i in range(8)))

    run_virtual(main)
    assert grants == [(f"bg{i}", float(i // 2)) for i in range(8)]


@settings(max_examples=60, deadline=None)
@given(scenarios(), st.data())
def test_async_limiter_keeps_both_windows_under_cancellation(
    scenario: tuple[RateLimit, list[Demand]], data: st.DataObject
) -> None:
    """The async limiter, with polls mixed in and random cancellations, never overfills a window."""
    limit, demands = scenario
    n = len(demands)
    background = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    cancel_at = data.draw(st.lists(st.none() | st.floats(0, 30), min_size=n, max_size=n))
    arrivals: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        limiter = limiter_on_loop(limit)

        async def one(at: float, latency: float, stamp: float, poll: bool) -> None:
            await asyncio.sleep(at)
            async with limiter.slot(background=poll):
                await asyncio.sleep(stamp * latency)
                arrivals.append(loop.time())
                await asyncio.sleep((1 - stamp) * latency)

        tasks = [
            asyncio.create_task(one(*demand, poll))
            for demand, poll in zip(demands, background, strict=True)
        ]
        for task, at in zip(tasks, cancel_at, strict=True):
            if at is not None:
                loop.call_at(at, task.cancel)
        await asyncio.gather(*tasks, return_exceptions=True)
        assert all(task.cancelled() or task.result() is None for task in tasks)
        stats = limiter.stats()
        assert (stats.in_flight, stats.queued) == (0, 0)
        assert len(arrivals) >= sum(at is None for at in cancel_at)

    run_virtual(main)
    assert server_violations(arrivals, limit) == []


def test_async_limiter_saturates_within_5_percent() -> None:
    """Through the async layer too, a saturating load ends within 5% of the optimum."""
    limit = RateLimit(per_second=5, per_window=60, window=20.0)
    arrivals: list[float] = []

    async def main() -> None:
        limiter = limiter_on_loop(limit)

        async def one(poll: bool) -> None:
            async with limiter.slot(background=poll):
                await asyncio.sleep(0.0005)
                arrivals.append(asyncio.get_running_loop().time())
                await asyncio.sleep(0.0005)

        await asyncio.gather(*(one(i % 2 == 0) for i in range(300)))

    run_virtual(main)
    bound = optimal_last_arrival(300, limit)
    assert server_violations(arrivals, limit) == []
    assert bound <= max(arrivals) <= 1.05 * bound


async def fill(limiter: SlidingWindowLimiter, n: int) -> None:
    """Use up ``n`` grants at once (each finishes immediately)."""
    for _ in range(n):
        async with limiter.slot():
            pass


def test_a_granted_waiter_cancelled_before_sending_gives_its_grant_back() -> None:
    """A waiter cancelled between its grant and its send frees the grant at once."""
    grants: list[tuple[str, float]] = []

    async def main() -> None:
        limiter = limiter_on_loop(RateLimit(per_second=2, per_window=1000, window=900.0))
        await fill(limiter, 2)
        victim: list[asyncio.Task[None]] = []

        async def canceller() -> None:
            async with limiter.slot():
                grants.append(("a", asyncio.get_running_loop().time()))
                victim[0].cancel()  # b was granted together with a, but has not run yet

        a = asyncio.create_task(canceller())
        victim.append(asyncio.create_task(request(limiter, grants, "b")))
        c = asyncio.create_task(request(limiter, grants, "c"))
        await asyncio.gather(a, victim[0], c, return_exceptions=True)
        assert victim[0].cancelled()
        stats = limiter.stats()
        assert (stats.granted, stats.in_flight, stats.queued) == (4, 0, 0)

    run_virtual(main)
    assert grants == [("a", 1.0), ("c", 1.0)]


def test_a_discarded_grant_wakes_a_watcher_waiting_for_a_finish() -> None:
    """When the request a watcher waits on is never sent, the watcher re-times itself."""
    grants: list[tuple[str, float]] = []

    async def main() -> None:
        limiter = limiter_on_loop(RateLimit(per_second=2, per_window=1000, window=900.0))
        await fill(limiter, 2)
        victim: list[asyncio.Task[None]] = []

        async def penalized() -> None:
            async with limiter.slot() as slot:
                grants.append(("a", asyncio.get_running_loop().time()))
                slot.rate_limited(retry_after=3.0)
                victim[0].cancel()  # the watcher now waits on no finish, only on the pause
                await asyncio.sleep(10.0)

        watcher = asyncio.create_task(request(limiter, grants, "bg-watcher"))
        a = asyncio.create_task(penalized())
        victim.append(asyncio.create_task(request(limiter, grants, "b")))
        await asyncio.gather(watcher, a, victim[0], return_exceptions=True)

    run_virtual(main)
    assert grants == [("a", 1.0), ("bg-watcher", 4.0)]


def test_a_cancelled_queued_waiter_keeps_fifo_for_the_others() -> None:
    """Cancelling a waiter in the middle of the queue lets the next one go in its place."""
    grants: list[tuple[str, float]] = []

    async def main() -> None:
        limiter = limiter_on_loop(RateLimit(per_second=1, per_window=1000, window=900.0))
        await fill(limiter, 1)
        tasks = [asyncio.create_task(request(limiter, grants, f"w{i}")) for i in range(4)]
        await asyncio.sleep(0.5)
        tasks[1].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert limiter.stats().queued == 0

    run_virtual(main)
    assert grants == [("w0", 1.0), ("w2", 2.0), ("w3", 3.0)]


def test_cancelling_the_clock_watcher_hands_the_watch_on() -> None:
    """The waiter that sleeps for everyone can be cancelled; the next one is granted on time."""
    grants: list[tuple[str, float]] = []

    async def main() -> None:
        limiter = limiter_on_loop(RateLimit(per_second=1, per_window=1000, window=900.0))
        await fill(limiter, 1)
        watcher = asyncio.create_task(request(limiter, grants, "watcher"))
        behind = [asyncio.create_task(request(limiter, grants, f"b{i}")) for i in range(2)]
        await asyncio.sleep(0.5)
        assert limiter._watcher is not None
        watcher.cancel()
        await asyncio.gather(watcher, *behind, return_exceptions=True)

    run_virtual(main)
    assert grants == [("b0", 1.0), ("b1", 2.0)]


def test_in_flight_slot_blocks_until_a_window_after_its_response() -> None:
    """A slot held for 5 s keeps its budget until 1 s after it is released."""
    grants: list[tuple[str, float]] = []

    async def main() -> None:
        limiter = limiter_on_loop(RateLimit(per_second=1, per_window=1000, window=900.0))
        await asyncio.gather(
            request(limiter, grants, "slow", latency=5.0), request(limiter, grants, "next")
        )

    run_virtual(main)
    assert grants == [("slow", 0.0), ("next", 6.0)]


def test_an_exception_inside_the_slot_still_finishes_the_entry() -> None:
    """A request that fails is finished at the failure, so the budget frees a window later."""
    grants: list[tuple[str, float]] = []

    async def main() -> None:
        limiter = limiter_on_loop(RateLimit(per_second=1, per_window=1000, window=900.0))

        async def fail_after(seconds: float) -> None:
            async with limiter.slot():
                await asyncio.sleep(seconds)
                raise ConnectionError

        with pytest.raises(ConnectionError):
            await fail_after(2.0)
        assert limiter.stats().in_flight == 0
        await request(limiter, grants, "after")

    run_virtual(main)
    assert grants == [("after", 3.0)]


def test_a_429_reported_through_the_slot_pauses_all_grants() -> None:
    """``slot.rate_limited()`` is counted and holds the next grant for a short window."""
    grants: list[tuple[str, float]] = []

    async def main() -> None:
        limiter = limiter_on_loop(RateLimit(per_second=5, per_window=1000, window=900.0))
        async with limiter.slot() as slot:
            slot.rate_limited(retry_after=2.5)
        await request(limiter, grants, "after")
        stats = limiter.stats()
        assert (stats.rate_limited, stats.waited, stats.wait_seconds) == (1, 1, 2.5)

    run_virtual(main)
    assert grants == [("after", 2.5)]


def test_restored_async_limiter_waits_instead_of_bursting() -> None:
    """After restore, the first requests of a new process wait for the old ones to expire."""
    grants: list[tuple[str, float]] = []
    limit = RateLimit(per_second=2, per_window=1000, window=900.0)

    async def main() -> None:
        clock = asyncio.get_running_loop().time
        old = SlidingWindowLimiter(limit, clock=clock, wall_clock=lambda: 1e9 + clock())
        await asyncio.gather(*(request(old, grants, "old") for _ in range(2)))
        snapshot = old.snapshot()
        await asyncio.sleep(0.5)
        new = SlidingWindowLimiter(
            limit, clock=lambda: clock() + 40.0, wall_clock=lambda: 1e9 + clock()
        )
        new.restore(snapshot)
        started = clock()
        await request(new, grants, "new")
        assert clock() - started == pytest.approx(0.5)

    run_virtual(main)


# --- fractional rates (a process's share of the credential's budget) ---


def test_a_half_request_per_second_sends_one_every_two_seconds() -> None:
    """RateLimit(per_second=0.5) grants one request per 2 s instead of never granting any."""
    limit = RateLimit(per_second=0.5, per_window=250)
    assert limit.short_window == (2.0, 1)
    run = simulate(SlidingLog(limit), [(0.0, 0.0, 0.0)] * 5)
    assert run.grants == [0.0, 2.0, 4.0, 6.0, 8.0]


@pytest.mark.parametrize(
    ("per_second", "expected"),
    [(5, (1.0, 5)), (5.0, (1.0, 5)), (2.5, (0.4, 1)), (0.25, (4.0, 1)), (1, (1.0, 1))],
)
def test_short_window_rule(per_second: float, expected: tuple[float, int]) -> None:
    """Integral rates keep the short window; a fractional r becomes one per second/r."""
    assert RateLimit(per_second=per_second).short_window == pytest.approx(expected)


def test_the_async_limiter_grants_a_fractional_rate() -> None:
    """Through the async limiter, per_second=0.5 grants at 0, 2, 4 s (it used to hang)."""
    grants: list[tuple[str, float]] = []

    async def main() -> None:
        limiter = limiter_on_loop(RateLimit(per_second=0.5, per_window=250))
        await asyncio.gather(*(request(limiter, grants, f"r{i}") for i in range(3)))

    run_virtual(main)
    assert [at for _, at in grants] == [0.0, 2.0, 4.0]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"per_window": 2.5}, TypeError),
        ({"per_window": 2000.0}, TypeError),
        ({"per_window": True}, TypeError),
        ({"per_window": 0}, ValueError),
        ({"per_second": 0}, ValueError),
        ({"per_second": -1.5}, ValueError),
        ({"per_second": math.inf}, ValueError),
        ({"per_second": math.nan}, ValueError),
        ({"per_second": "5"}, TypeError),
        ({"window": math.inf}, ValueError),
        ({"second": 0.0}, ValueError),
    ],
)
def test_rate_limit_refuses_what_it_cannot_enforce(
    options: dict[str, Any], error: type[Exception]
) -> None:
    """A non-integer per_window, or a non-finite or non-positive rate, is refused at once."""
    with pytest.raises(error, match=next(iter(options))):
        RateLimit(**options)
