"""One contract, two limiters: the in-process SlidingWindowLimiter and the RedisRateLimiter agree.

Every test runs against both, on real clocks with scaled-down windows. Each
limiter is paired with the clock it counts on (the loop's for the in-process
one, the Redis server's ``TIME`` for the shared one); requests stamp that clock
while they hold their slot, as the API server stamps a request between its
send and its response, and the stamps are checked against both windows.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio

from tests.redis_support import RedisServer
from thanx_async._config import RateLimit
from thanx_async._transport._ratelimit import LimiterStats, RateLimiter, SlidingWindowLimiter
from thanx_async.redis import RedisRateLimiter

#: Lateness allowed beyond an exact bound: scheduling, a Redis round trip, jitter.
SLACK = 0.08


def limit(**values: Any) -> RateLimit:
    """A RateLimit (fractional per_second included, whatever its annotation says)."""
    return RateLimit(**values)


def windows(rate: RateLimit) -> list[tuple[float, int]]:
    """``(length, requests)`` of both windows, per the shared rule for a fractional per_second."""
    per_second = float(rate.per_second)
    short = (
        (rate.second, int(per_second)) if per_second.is_integer() else (rate.second / per_second, 1)
    )
    return [short, (rate.window, rate.per_window)]


def violations(stamps: list[float], rate: RateLimit) -> list[tuple[float, float]]:
    """Pairs of stamps ``requests`` apart that lie within one window (what a server would 429)."""
    ordered = sorted(stamps)
    bad = []
    for length, count in windows(rate):
        bad += [
            (ordered[i], ordered[i + count])
            for i in range(len(ordered) - count)
            if ordered[i + count] - ordered[i] < length
        ]
    return bad


def optimal_span(n: int, rate: RateLimit) -> float:
    """The shortest time from the first to the n-th stamp that both windows allow."""
    stamps: list[float] = []
    for k in range(n):
        at = 0.0
        for length, count in windows(rate):
            if k >= count:
                at = max(at, stamps[k - count] + length)
        stamps.append(at)
    return stamps[-1]


class Harness:
    """A limiter and the clock it counts on."""

    def __init__(
        self,
        limiter: SlidingWindowLimiter | RedisRateLimiter,
        stamp: Callable[[], Awaitable[float]],
    ) -> None:
        self.limiter: RateLimiter = limiter
        self._limiter = limiter
        self.stamp = stamp

    def stats(self) -> LimiterStats:
        return self._limiter.stats()

    async def request(
        self, log: list[tuple[str, float]] | None = None, name: str = "", latency: float = 0.0
    ) -> float:
        """Take a slot, stamp the clock inside it, hold it ``latency`` seconds; the stamp."""
        async with self.limiter.slot(background=name.startswith("bg")):
            at = await self.stamp()
            if log is not None:
                log.append((name, at))
            await asyncio.sleep(latency)
        return at


Make = Callable[[RateLimit], Harness]


async def _loop_time() -> float:
    return asyncio.get_running_loop().time()


@pytest.fixture(params=["in-process", "redis"])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Make]:
    """Builds a limiter of either kind (a fresh budget each) with its clock."""
    built: list[RedisRateLimiter] = []
    if request.param == "in-process":
        yield lambda rate: Harness(SlidingWindowLimiter(rate), _loop_time)
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    client = redis.asyncio.Redis.from_url(server.url)

    async def redis_time() -> float:
        seconds, micros = await client.time()
        return seconds + micros / 1e6

    def build(rate: RateLimit) -> Harness:
        limiter = RedisRateLimiter(server.url, rate_limit=rate, client_id=f"c-{uuid.uuid4()}")
        built.append(limiter)
        return Harness(limiter, redis_time)

    try:
        yield build
    finally:
        for limiter in built:
            await limiter.aclose()
        await client.aclose()


async def test_both_windows_are_never_exceeded_and_fully_used(make: Make) -> None:
    """Flat-out demand: no window ever holds too many, and the budget is used to within 5%."""
    rate = limit(per_second=3, second=0.1, per_window=9, window=0.6)
    h = make(rate)
    stamps = await asyncio.gather(*(h.request() for _ in range(20)))
    assert violations(stamps, rate) == []
    span = max(stamps) - min(stamps)
    assert span <= optimal_span(20, rate) * 1.05 + SLACK


async def test_a_request_counts_until_a_window_after_its_response(make: Make) -> None:
    """A slot held 0.3 s keeps its budget until one window after it was given back."""
    rate = limit(per_second=1, second=0.2, per_window=100, window=10.0)
    h = make(rate)
    log: list[tuple[str, float]] = []

    async def slow() -> float:
        async with h.limiter.slot():
            await asyncio.sleep(0.3)
            return await h.stamp()  # the response arrived no earlier than this

    finished, after = await asyncio.gather(slow(), h.request(log, "next"))
    assert finished + 0.2 <= after <= finished + 0.2 + SLACK


async def test_an_exception_inside_the_slot_still_finishes_the_request(make: Make) -> None:
    """A request that fails counts until a window after the failure, then frees its budget."""
    rate = limit(per_second=1, second=0.2, per_window=100, window=10.0)
    h = make(rate)
    failed = 0.0

    async def fail() -> None:
        nonlocal failed
        async with h.limiter.slot():
            failed = await h.stamp()
            raise ConnectionError

    with pytest.raises(ConnectionError):
        await fail()
    after = await h.request()
    assert failed + 0.2 <= after <= failed + 0.2 + SLACK
    assert h.stats().in_flight == 0


async def test_a_429_pauses_every_grant_for_a_short_window(make: Make) -> None:
    """A 429 with room in the long window holds the next grant for one short window."""
    rate = limit(per_second=5, second=0.3, per_window=100, window=10.0)
    h = make(rate)
    async with h.limiter.slot() as slot:
        seen = await h.stamp()
        slot.rate_limited(None)
    after = await h.request()
    assert seen + 0.3 <= after <= seen + 0.3 + SLACK
    assert h.stats().rate_limited == 1


async def test_a_429_near_a_full_long_window_waits_for_its_oldest_requests(make: Make) -> None:
    """Under a short window's budget left, a 429 waits until the oldest leave the long window."""
    rate = limit(per_second=2, second=0.05, per_window=6, window=0.8)
    h = make(rate)
    stamps = [await h.request() for _ in range(4)]  # 4 of 6 used: >= 6 - 2
    async with h.limiter.slot() as slot:
        slot.rate_limited(None)
    after = await h.request()
    # The two oldest (per_second) must have left the long window.
    assert after >= stamps[1] + 0.8
    assert after <= stamps[1] + 0.8 + 0.1 + SLACK  # finish is a little after the stamp


async def test_retry_after_is_honoured(make: Make) -> None:
    """A Retry-After longer than the inferred pause holds every grant that long."""
    rate = limit(per_second=5, second=0.1, per_window=100, window=10.0)
    h = make(rate)
    async with h.limiter.slot() as slot:
        seen = await h.stamp()
        slot.rate_limited(0.4)
    after = await h.request()
    assert seen + 0.4 <= after <= seen + 0.4 + SLACK


async def test_retry_after_is_capped_at_the_long_window(make: Make) -> None:
    """An absurd Retry-After pauses at most one long window, not an hour."""
    rate = limit(per_second=5, second=0.1, per_window=100, window=0.5)
    h = make(rate)
    async with h.limiter.slot() as slot:
        seen = await h.stamp()
        slot.rate_limited(3600.0)
    async with asyncio.timeout(3.0):
        after = await h.request()
    assert seen + 0.1 <= after <= seen + 0.5 + SLACK


@pytest.mark.parametrize("retry_after", [-5.0, math.nan, 0.0])
async def test_a_meaningless_retry_after_is_ignored(make: Make, retry_after: float) -> None:
    """A negative, NaN or zero Retry-After leaves the inferred pause: one short window."""
    rate = limit(per_second=5, second=0.2, per_window=100, window=10.0)
    h = make(rate)
    async with h.limiter.slot() as slot:
        seen = await h.stamp()
        slot.rate_limited(retry_after)
    after = await h.request()
    assert seen + 0.2 <= after <= seen + 0.2 + SLACK


async def test_polls_get_a_third_while_posts_wait(make: Make) -> None:
    """While POSTs wait, polls get at most a third of the grants, yet are not starved."""
    rate = limit(per_second=1, second=0.1, per_window=1000, window=100.0)
    h = make(rate)
    log: list[tuple[str, float]] = []
    await h.request(log, "first")
    names = [f"bg{i}" for i in range(6)] + [f"fg{i}" for i in range(6)]
    await asyncio.gather(*(h.request(log, name) for name in names))
    order = [name for name, _ in log[1:]]
    while_posts_wait = order[:9]  # the POSTs are all granted within the first 9
    assert sum(name.startswith("bg") for name in while_posts_wait) in (2, 3), order
    assert all(name.startswith("bg") for name in order[9:]), order
    assert [n for n in order if n.startswith("fg")] == [f"fg{i}" for i in range(6)]  # FIFO
    assert [n for n in order if n.startswith("bg")] == [f"bg{i}" for i in range(6)]
    # No grant wasted (Redis round trips on a loaded machine add a little to each step).
    assert max(at for _, at in log) - log[0][1] <= 12 * 0.1 * 1.15 + SLACK


async def test_polls_alone_get_the_full_rate(make: Make) -> None:
    """With no POST waiting, polls are granted as fast as the windows allow."""
    rate = limit(per_second=2, second=0.15, per_window=1000, window=100.0)
    h = make(rate)
    log: list[tuple[str, float]] = []
    await asyncio.gather(*(h.request(log, f"bg{i}") for i in range(8)))
    stamps = [at for _, at in log]
    assert violations(stamps, rate) == []
    assert max(stamps) - min(stamps) <= optimal_span(8, rate) * 1.05 + SLACK


@pytest.mark.parametrize(
    ("per_second", "spacing"),
    [(0.4, 0.25), (2.5, 0.04)],
    ids=["below-one", "above-one"],
)
async def test_a_fractional_per_second_is_one_request_per_second_over_rate(
    make: Make, per_second: float, spacing: float
) -> None:
    """A non-integral per_second r admits one request per second / r, no burst."""
    rate = limit(per_second=per_second, second=0.1, per_window=1000, window=100.0)
    h = make(rate)
    async with asyncio.timeout(5.0):  # a limiter that breaks on fractions fails, not hangs
        stamps = sorted(await asyncio.gather(*(h.request() for _ in range(5))))
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= spacing, gaps
    assert stamps[-1] - stamps[0] <= 4 * spacing * 1.05 + SLACK


async def test_an_integral_float_per_second_keeps_the_short_window(make: Make) -> None:
    """per_second=3.0 is per_second=3: three requests at once, then a window's wait."""
    rate = limit(per_second=3.0, second=0.2, per_window=1000, window=100.0)
    h = make(rate)
    async with asyncio.timeout(5.0):
        stamps = sorted(await asyncio.gather(*(h.request() for _ in range(6))))
    assert stamps[2] - stamps[0] < 0.1  # a burst of three
    assert stamps[3] - stamps[0] >= 0.2
    assert violations(stamps, rate) == []


async def test_cancelled_waiters_leave_the_budget_untouched(make: Make) -> None:
    """Waiters cancelled while queued take no budget: the next request goes on time."""
    rate = limit(per_second=1, second=0.25, per_window=1000, window=100.0)
    h = make(rate)
    first = await h.request()
    waiters = [asyncio.create_task(h.request()) for _ in range(5)]
    await asyncio.sleep(0.1)
    for task in waiters:
        task.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    assert all(task.cancelled() for task in waiters)
    after = await h.request()
    assert first + 0.25 <= after <= first + 0.25 + SLACK
    stats = h.stats()
    assert (stats.in_flight, stats.queued, stats.granted) == (0, 0, 2)


async def test_a_deadline_while_waiting_leaks_nothing(make: Make) -> None:
    """A caller's deadline ends its wait for budget; its place is given back, FIFO holds."""
    rate = limit(per_second=1, second=0.3, per_window=1000, window=100.0)
    h = make(rate)
    first = await h.request()
    log: list[tuple[str, float]] = []

    async def impatient() -> None:
        async with asyncio.timeout(0.1):
            await h.request(log, "impatient")

    results = await asyncio.gather(impatient(), h.request(log, "patient"), return_exceptions=True)
    assert isinstance(results[0], TimeoutError)
    assert [name for name, _ in log] == ["patient"]
    assert first + 0.3 <= log[0][1] <= first + 0.3 + SLACK
    assert (h.stats().in_flight, h.stats().queued) == (0, 0)


async def test_stats_count_grants_waits_and_429s(make: Make) -> None:
    """The counters: granted, waited (and for how long), 429s, nothing left in flight or queued."""
    rate = limit(per_second=1, second=0.2, per_window=1000, window=100.0)
    h = make(rate)
    await h.request()
    async with h.limiter.slot() as slot:  # waits one window
        slot.rate_limited(None)
    stats = h.stats()
    assert (stats.granted, stats.waited, stats.rate_limited) == (2, 1, 1)
    assert 0.15 <= stats.wait_seconds <= 0.2 + SLACK
    assert (stats.in_flight, stats.queued) == (0, 0)


@pytest.mark.parametrize(
    ("rate", "binds"),
    [
        (limit(per_second=5, per_window=1_000_000_000, window=900.0), False),
        (limit(per_second=1_000_000_000, per_window=1_000_000_000, window=900.0), False),
        (limit(per_second=5, per_window=8, window=60.0), True),
    ],
    ids=["long-window-roomy", "both-unlimited", "long-window-low"],
)
async def test_saturated_only_when_the_long_window_is_nearly_spent(
    make: Make, rate: RateLimit, binds: bool
) -> None:
    """Four requests: "saturated" when fewer than a short window's worth are left, not before.

    With both windows equally huge (the pytest plugin's client against an
    emulator without limits), one request once made the budget "nearly spent"
    for good, and budget-aware sealing then held every batch back.
    """
    h = make(rate)
    for _ in range(4):
        await h.request()
    assert h._limiter.saturated is binds
