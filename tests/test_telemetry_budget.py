"""The rate budget's share in use (``thanx.limiter.budget_used``), per limiter kind."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Iterator

import pytest

import thanx_async as ta
from tests.redis_support import RedisServer
from tests.telemetry_support import Recorder
from thanx_async._transport._ratelimit import SlidingWindowLimiter
from thanx_async._transport._ratelog import SlidingLog
from thanx_async.redis import RedisRateLimiter


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """Providers recording into memory, shut down after the test."""
    recorder = Recorder()
    yield recorder
    recorder.shutdown()


def test_the_long_window_share_counts_in_flight_and_recent_requests_only() -> None:
    """In flight and finished within the window count; older ones no longer do."""
    log = SlidingLog(ta.RateLimit(per_second=100, per_window=10, window=60.0))
    entries = [log.start(0.0) for _ in range(3)]
    assert log.long_share(0.0) == pytest.approx(0.3)
    log.finish(entries[0], 1.0)
    log.finish(entries[1], 2.0)
    assert log.long_share(30.0) == pytest.approx(0.3)  # two finished within 60 s, one in flight
    assert log.long_share(61.5) == pytest.approx(0.2)  # the first left the window at 61 s
    assert log.long_share(62.5) == pytest.approx(0.1)
    # Reading the share prunes nothing: the log still holds both finished requests.
    assert len(log.snapshot(30.0)) == 3


def test_the_share_is_read_safely_from_another_thread() -> None:
    """A metrics reader's thread reads the share while the loop's thread changes the log."""
    now = [0.0]
    limiter = SlidingWindowLimiter(
        ta.RateLimit(per_second=10_000, per_window=1_000_000), clock=lambda: now[0]
    )
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                share = limiter.stats().budget_used
                assert share is not None
                assert 0.0 <= share <= 1.0
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                errors.append(exc)
                return

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(20_000):
            now[0] = i * 0.001
            entry = limiter._log.start(now[0])
            limiter._log.finish(entry, now[0])
            limiter._log.ready_at(now[0])  # prunes, as a grant does
    finally:
        stop.set()
        reader.join()
    assert errors == []


async def test_the_in_process_limiter_reports_its_share(recorder: Recorder) -> None:
    """Every grant raises the in-process share by one request in the long window."""
    limit = ta.RateLimit(per_second=1_000, per_window=200, window=60.0)
    client = ta.ThanxClient(
        client_id="c",
        access_token="t",
        base_url="http://127.0.0.1:9",
        rate_limit=limit,
        meter_provider=recorder.meter_provider,
    )
    async with client:
        for _ in range(5):
            async with client.limiter.slot():
                pass
        kind = {"thanx.limiter.kind": "in_process"}
        assert recorder.value("thanx.limiter.budget_used", **kind) == pytest.approx(5 / 200)
        assert recorder.value("thanx.limiter.queued", **kind) == 0


async def test_the_redis_limiter_reports_the_fleets_share(
    recorder: Recorder, redis_server: RedisServer
) -> None:
    """The shared limiter reports what Redis last said of the whole fleet's long window."""
    limit = ta.RateLimit(per_second=1_000, per_window=100, window=60.0)
    client_id = f"telemetry-{secrets.token_hex(4)}"
    other = RedisRateLimiter(redis_server.url, rate_limit=limit, client_id=client_id)
    mine = RedisRateLimiter(redis_server.url, rate_limit=limit)
    client = ta.ThanxClient(
        client_id=client_id,
        access_token="t",
        base_url="http://127.0.0.1:9",
        limiter=mine,
        meter_provider=recorder.meter_provider,
    )
    kind = {"thanx.limiter.kind": "redis"}
    async with client, other:
        assert recorder.points("thanx.limiter.budget_used") == []  # nothing known yet
        for _ in range(7):  # another process of the fleet
            async with other.slot():
                pass
        for _ in range(3):
            async with mine.slot():
                pass
        await asyncio.sleep(0)
        assert recorder.value("thanx.limiter.budget_used", **kind) == pytest.approx(10 / 100)
