"""Redis down, restarted or emptied: nothing is sent unbudgeted, errors are typed, and it recovers.

Each test has its own redis-server, which it stops, kills or restarts.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

import thanx_async as ta
from tests.redis_support import RedisServer
from thanx_async.redis import RedisRateLimiter
from thanx_async.testing import DEFAULT_ACCESS_TOKEN, DEFAULT_CLIENT_ID, ThanxEmulator

#: No retries by the client: the limiter's own waiting is what is under test.
ONCE = ta.RetryPolicy(max_attempts=1, deadline=None)


def limiter_for(
    server: RedisServer, rate: ta.RateLimit, unreachable_timeout: float = 30.0
) -> RedisRateLimiter:
    return RedisRateLimiter(
        server.url,
        rate_limit=rate,
        client_id=f"f-{uuid.uuid4()}",
        unreachable_timeout=unreachable_timeout,
    )


async def test_unreachable_redis_sends_nothing_then_fails_typed_and_recovers(
    own_redis_server: RedisServer,
) -> None:
    """Redis down: no request reaches the API, the call fails with TransportError, then recovers."""
    rate = ta.RateLimit(per_second=5, per_window=100)
    limiter = RedisRateLimiter(own_redis_server.url, rate_limit=rate, unreachable_timeout=0.5)
    async with ThanxEmulator() as emu, ta.ThanxClient(
        client_id=DEFAULT_CLIENT_ID, access_token=DEFAULT_ACCESS_TOKEN, base_url=emu.url,
        retry=ONCE, limiter=limiter,
    ) as client:  # fmt: skip
        await client.get_scopes()
        own_redis_server.stop()
        started = time.monotonic()
        with pytest.raises(ta.TransportError, match=r"unreachable.*nothing was sent") as caught:
            await client.get_scopes()
        assert 0.5 <= time.monotonic() - started <= 0.5 + 2.5  # one attempt may take a while
        assert len(emu.state.requests) == 1  # only the request made before Redis went away
        assert "redis://" not in str(caught.value)
        own_redis_server.start()
        assert "rewards.issue" in await client.get_scopes()
        assert len(emu.state.requests) == 2
        stats = limiter.stats()
        assert (stats.granted, stats.in_flight, stats.queued) == (2, 0, 0)


async def test_requests_queued_behind_an_unreachable_redis_fail_together(
    own_redis_server: RedisServer,
) -> None:
    """Every request waiting for an unreachable Redis fails at once when the first one gives up."""
    limiter = limiter_for(own_redis_server, ta.RateLimit(), unreachable_timeout=0.5)
    own_redis_server.stop()

    async def take() -> None:
        async with limiter.slot():
            pytest.fail("a slot was granted without Redis")

    started = time.monotonic()
    results = await asyncio.gather(*(take() for _ in range(6)), return_exceptions=True)
    elapsed = time.monotonic() - started
    assert all(isinstance(r, ta.TransportError) for r in results), results
    assert elapsed <= 0.5 + 2.5  # not six timeouts one after the other
    assert (limiter.stats().queued, limiter.stats().in_flight) == (0, 0)
    await limiter.aclose()


async def test_a_deadline_ends_the_wait_for_an_unreachable_redis(
    own_redis_server: RedisServer,
) -> None:
    """The caller's deadline bounds the wait for an unreachable Redis; nothing is left behind."""
    limiter = limiter_for(own_redis_server, ta.RateLimit())  # its own limit: 30 s
    own_redis_server.stop()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3), limiter.slot():
            pytest.fail("a slot was granted without Redis")
    assert time.monotonic() - started <= 0.3 + 0.2
    assert (limiter.stats().queued, limiter.stats().in_flight) == (0, 0)
    own_redis_server.start()
    async with limiter.slot():  # recovered, and no stale state blocks it
        pass
    await limiter.aclose()


async def test_redis_killed_mid_run_pauses_sending_and_resumes_without_429s(
    own_redis_server: RedisServer,
) -> None:
    """A stream of requests survives Redis crashing and coming back: none sent meanwhile, no 429."""
    rate = ta.RateLimit(per_second=5, second=0.25, per_window=1000, window=60.0)
    limiter = RedisRateLimiter(own_redis_server.url, rate_limit=rate)
    async with ThanxEmulator(
        rate_limit_per_second=5, rate_limit_second=0.25,
        rate_limit_per_window=1000, rate_limit_window=60.0,
    ) as emu, ta.ThanxClient(
        client_id=DEFAULT_CLIENT_ID, access_token=DEFAULT_ACCESS_TOKEN, base_url=emu.url,
        retry=ONCE, limiter=limiter,
    ) as client:  # fmt: skip
        stream = asyncio.gather(*(client.get_scopes() for _ in range(40)))
        while len(emu.state.requests) < 10:  # noqa: ASYNC110 - the emulator has no event for it
            await asyncio.sleep(0.005)
        own_redis_server.kill()
        down = time.monotonic()
        await asyncio.sleep(0.5)
        up = time.monotonic()
        own_redis_server.start()
        results = await stream
    assert len(results) == 40
    statuses = [r.status for r in emu.state.requests]
    assert statuses == [200] * 40  # no 429, no error
    # Nothing arrived while Redis was down (the first arrivals after it may have
    # been granted just before the kill: allow one round trip's grace).
    during = [r.at for r in emu.state.requests if down + 0.05 < r.at < up]
    assert during == []


async def test_a_log_redis_lost_is_rebuilt_from_each_process(own_redis_server: RedisServer) -> None:
    """Redis restarted empty: a process puts its recent requests back before its next grant."""
    rate = ta.RateLimit(per_second=2, second=1.0, per_window=1000, window=60.0)
    limiter = limiter_for(own_redis_server, rate)
    finishes = []
    for _ in range(2):
        async with limiter.slot():
            pass
        finishes.append(time.monotonic())
    await asyncio.sleep(0.05)  # the releases land
    own_redis_server.restart()  # empty: no persistence
    async with limiter.slot():
        granted = time.monotonic()
    # Counted until a window after the first finish, as if Redis had never forgotten.
    assert granted >= finishes[0] + 1.0 - 0.01
    assert granted <= finishes[0] + 1.0 + 0.2
    await limiter.aclose()


async def test_a_redis_refusing_the_credentials_fails_at_once(
    own_redis_server: RedisServer,
) -> None:
    """A wrong Redis password is not waited out: TransportError at once, the password not shown."""
    import redis.asyncio

    admin = redis.asyncio.Redis.from_url(own_redis_server.url)
    await admin.config_set("requirepass", "right-secret")
    await admin.aclose()
    url = own_redis_server.url.replace("redis://", "redis://:wrong-secret@")
    limiter = RedisRateLimiter(url, client_id="c", unreachable_timeout=30.0)
    started = time.monotonic()
    with pytest.raises(ta.TransportError, match="refused this client") as caught:
        async with limiter.slot():
            pytest.fail("a slot was granted without Redis")
    assert time.monotonic() - started < 2.0
    assert "secret" not in str(caught.value)
    assert "secret" not in repr(limiter)
    await limiter.aclose()
