"""The shared budget across processes: one log in Redis, on Redis's clock, for the whole fleet.

Several limiters on one budget stand for several processes (each has its own
token, queue and record, as a process would). Requests stamp the Redis
server's clock while they hold their slot, as the API server stamps arrivals.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio
from redis.crc import key_slot

import thanx_async as ta
from tests.redis_support import RedisServer
from tests.test_limiter_contract import SLACK, optimal_span, violations
from thanx_async.redis import RedisRateLimiter
from thanx_async.redis._scripts import budget_keys


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain client of the session's redis-server."""
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def fleet(redis_server: RedisServer) -> AsyncIterator[list[RedisRateLimiter]]:
    """A list the test fills with limiters (its "processes"); all closed afterwards."""
    limiters: list[RedisRateLimiter] = []
    try:
        yield limiters
    finally:
        for limiter in limiters:
            await limiter.aclose()


def processes(
    server: RedisServer,
    fleet: list[RedisRateLimiter],
    n: int,
    rate: ta.RateLimit,
    lease: float = 15.0,
) -> list[RedisRateLimiter]:
    """``n`` limiters sharing one fresh budget, as ``n`` processes would."""
    client_id = f"fleet-{uuid.uuid4()}"
    made = [
        RedisRateLimiter(server.url, rate_limit=rate, client_id=client_id, lease=lease)
        for _ in range(n)
    ]
    fleet.extend(made)
    return made


async def redis_time(client: redis.asyncio.Redis) -> float:
    seconds, micros = await client.time()
    return seconds + micros / 1e6


async def stamped(
    limiter: RedisRateLimiter,
    client: redis.asyncio.Redis,
    log: list[tuple[str, float]],
    name: str,
    latency: float = 0.0,
) -> float:
    """Take a slot, stamp Redis's clock inside it, hold it ``latency`` seconds."""
    async with limiter.slot(background=name.startswith("bg")):
        at = await redis_time(client)
        log.append((name, at))
        await asyncio.sleep(latency)
    return at


async def test_the_script_is_exact_over_both_windows_on_redis_clock(
    redis_server: RedisServer, fleet: list[RedisRateLimiter], redis_client: redis.asyncio.Redis
) -> None:
    """Three processes flat out: neither window ever overfilled, and the budget fully used."""
    rate = ta.RateLimit(per_second=5, second=0.2, per_window=20, window=1.0)
    limiters = processes(redis_server, fleet, 3, rate)
    log: list[tuple[str, float]] = []
    await asyncio.gather(
        *(stamped(limiters[i % 3], redis_client, log, f"p{i % 3}") for i in range(45))
    )
    stamps = [at for _, at in log]
    assert violations(stamps, rate) == []
    assert max(stamps) - min(stamps) <= optimal_span(45, rate) * 1.05 + SLACK
    assert {name for name, _ in log} == {"p0", "p1", "p2"}  # everyone got a share


def test_the_keys_share_one_cluster_slot_and_hide_the_client_id() -> None:
    """All keys of a budget hash to one Cluster slot; the client id is hashed, never stored."""
    keys = budget_keys(client_id="client-abc")
    assert len({key_slot(key.encode()) for key in keys}) == 1
    assert all("client-abc" not in key for key in keys)
    assert all(key.startswith("thanx_async:budget:{") for key in keys)
    other = budget_keys(client_id="client-abd")
    assert set(keys).isdisjoint(other)
    named = budget_keys(key="rewards-prod")
    assert named[0] == "thanx_async:budget:{rewards-prod}:inflight"
    with pytest.raises(ValueError, match="braces"):
        budget_keys(key="a}b")
    with pytest.raises(ValueError, match="exactly one"):
        budget_keys()


async def test_a_thanx_client_binds_the_limiter_to_its_credential(
    redis_server: RedisServer,
) -> None:
    """ThanxClient tells the limiter its client id; one limiter serves one credential."""
    limiter = RedisRateLimiter(redis_server.url)
    with pytest.raises(ValueError, match="needs the credential"):
        async with limiter.slot():
            pass
    client = ta.ThanxClient(client_id="abc", access_token="t", limiter=limiter)
    assert budget_keys(client_id="abc")[0].rsplit(":", 1)[0] in repr(limiter)
    ta.ThanxClient(client_id="abc", access_token="t", limiter=limiter)  # the same: fine
    with pytest.raises(ValueError, match="another client_id"):
        ta.ThanxClient(client_id="xyz", access_token="t", limiter=limiter)
    async with limiter.slot():
        assert connected(limiter)
    await client.aclose()
    assert not connected(limiter)  # closing the client closed the limiter's connection
    async with limiter.slot():  # and it reconnects when used again
        pass
    await limiter.aclose()
    keyed = RedisRateLimiter(redis_server.url, key="shared")
    keyed.bind("abc")  # an explicit key names the budget
    assert "{shared}" in repr(keyed)
    with pytest.raises(ValueError, match="not both"):
        RedisRateLimiter(redis_server.url, client_id="abc", key="shared")


async def test_a_dead_process_counts_until_its_lease_ends_then_a_window(
    redis_server: RedisServer, fleet: list[RedisRateLimiter], redis_client: redis.asyncio.Redis
) -> None:
    """A grant never released (its process died) counts as finished when its lease runs out."""
    rate = ta.RateLimit(per_second=1, second=0.2, per_window=100, window=10.0)
    dead, alive = processes(redis_server, fleet, 2, rate, lease=0.3)
    granted = await redis_time(redis_client)
    assert dead._budget is not None
    grant = await dead._budget.grant("dead:0", background=False, more=False)
    assert grant.granted  # ...and then the process is gone: no release, no renewal
    after = await stamped(alive, redis_client, [], "alive")
    assert granted + 0.3 + 0.2 <= after <= granted + 0.3 + 0.2 + SLACK


async def test_a_long_request_renews_its_lease(
    redis_server: RedisServer, fleet: list[RedisRateLimiter], redis_client: redis.asyncio.Redis
) -> None:
    """A request running past its lease stays in flight: it counts until a window after it ends."""
    rate = ta.RateLimit(per_second=1, second=0.2, per_window=100, window=10.0)
    slow, other = processes(redis_server, fleet, 2, rate, lease=0.3)

    holding = asyncio.Event()

    async def long_request() -> float:
        async with slow.slot():
            holding.set()
            await asyncio.sleep(1.0)
            return await redis_time(redis_client)

    async def then_other() -> float:
        await holding.wait()
        return await stamped(other, redis_client, [], "other")

    finished, after = await asyncio.gather(long_request(), then_other())
    assert finished + 0.2 <= after <= finished + 0.2 + SLACK


async def test_a_429_in_one_process_pauses_every_process(
    redis_server: RedisServer, fleet: list[RedisRateLimiter], redis_client: redis.asyncio.Redis
) -> None:
    """A 429 seen by one process holds the grants of all the others (Retry-After honoured)."""
    rate = ta.RateLimit(per_second=5, second=0.1, per_window=100, window=10.0)
    seer, others = processes(redis_server, fleet, 2, rate)
    async with seer.slot() as slot:
        seen = await redis_time(redis_client)
        slot.rate_limited(0.5)
    await asyncio.sleep(0.05)  # the report reaches Redis in the background
    after = await stamped(others, redis_client, [], "other")
    assert seen + 0.5 <= after <= seen + 0.5 + SLACK
    assert (seer.stats().rate_limited, others.stats().rate_limited) == (1, 0)


async def test_polls_of_one_process_yield_to_posts_of_another(
    redis_server: RedisServer, fleet: list[RedisRateLimiter], redis_client: redis.asyncio.Redis
) -> None:
    """Fleet-wide: while one process's POSTs wait, another's polls get at most a third."""
    rate = ta.RateLimit(per_second=1, second=0.1, per_window=1000, window=100.0)
    polls, posts = processes(redis_server, fleet, 2, rate)
    log: list[tuple[str, float]] = []
    await stamped(posts, redis_client, log, "first")
    await asyncio.gather(
        *(stamped(polls, redis_client, log, f"bg{i}") for i in range(8)),
        *(stamped(posts, redis_client, log, f"fg{i}") for i in range(6)),
    )
    order = [name for name, _ in log[1:]]
    last_post = max(i for i, name in enumerate(order) if name.startswith("fg"))
    polls_meanwhile = sum(name.startswith("bg") for name in order[:last_post])
    assert 1 <= polls_meanwhile <= 6 // 2, order  # at most one poll per two POSTs
    # None wasted: each request counts from its start to a window after its response, so
    # Redis round trips on a loaded machine add a little to every 0.1 s step.
    assert max(at for _, at in log) - log[0][1] <= 14 * 0.1 * 1.15 + SLACK


async def test_saturated_tells_when_the_budget_binds(
    redis_server: RedisServer, fleet: list[RedisRateLimiter]
) -> None:
    """saturated: False with room; True while requests wait or the long window runs low."""
    rate = ta.RateLimit(per_second=2, second=0.3, per_window=5, window=30.0)
    limiter, other = processes(redis_server, fleet, 2, rate)
    assert not saturated(limiter)
    async with limiter.slot():
        pass
    assert not saturated(limiter)  # 4 of 5 left
    async with limiter.slot():
        pass
    waiting = asyncio.create_task(_take(limiter))  # the short window is full: it waits
    await asyncio.sleep(0.1)
    assert saturated(limiter)
    await waiting
    assert not saturated(limiter)  # 2 left: a short window's worth
    async with other.slot():
        pass
    assert saturated(other)  # the other process learns it from Redis: 1 left
    assert not saturated(limiter)  # until it asks again
    async with limiter.slot():
        pass
    assert saturated(limiter)
    # Nothing is sent while it says so (a batcher keeps filling its batches instead), so
    # no answer would ever refresh it: a low answer holds for a short window only.
    await asyncio.sleep(0.35)
    assert not saturated(limiter)
    waiting = asyncio.create_task(_take(limiter))  # asks again: the window is still spent
    await asyncio.sleep(0.1)
    assert saturated(limiter)
    waiting.cancel()


def connected(limiter: RedisRateLimiter) -> bool:
    return limiter._redis is not None


def saturated(limiter: RedisRateLimiter) -> bool:
    return limiter.saturated


async def _take(limiter: RedisRateLimiter) -> None:
    async with limiter.slot():
        pass


async def test_every_key_expires_so_an_idle_budget_leaves_nothing(
    redis_server: RedisServer, fleet: list[RedisRateLimiter], redis_client: redis.asyncio.Redis
) -> None:
    """Every key of a budget carries an expiry of a lease plus the longest window (plus 1 s)."""
    rate = ta.RateLimit(per_second=5, second=0.1, per_window=100, window=2.0)
    (limiter,) = processes(redis_server, fleet, 1, rate, lease=0.5)
    async with limiter.slot() as slot:
        slot.rate_limited(None)
    await asyncio.sleep(0.05)
    async with limiter.slot():
        pass
    await limiter.aclose()  # the release has landed
    assert limiter._budget is not None
    existing = [key for key in limiter._budget.keys if await redis_client.exists(key)]
    assert {"finished", "meta"} <= {key.rsplit(":", 1)[1] for key in existing}
    for key in existing:
        assert 2_000 < await redis_client.pttl(key) <= 3_500


async def test_a_flushed_script_cache_is_reloaded(
    redis_server: RedisServer, fleet: list[RedisRateLimiter], redis_client: redis.asyncio.Redis
) -> None:
    """After SCRIPT FLUSH (as after a Redis restart), the scripts load again by themselves."""
    rate = ta.RateLimit(per_second=50, per_window=1000)
    (limiter,) = processes(redis_server, fleet, 1, rate)
    async with limiter.slot():
        pass
    await redis_client.script_flush()
    async with limiter.slot():
        pass
    assert limiter.stats().granted == 2


def test_bad_arguments_are_refused_at_once(redis_server: RedisServer) -> None:
    """A synchronous client, a malformed URL, both names or a lease <= 0 fail on construction."""
    import redis as sync_redis

    with pytest.raises(TypeError, match=r"redis\.asyncio client, not Redis"):
        RedisRateLimiter(sync_redis.Redis())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scheme"):
        RedisRateLimiter("http://127.0.0.1:6379")
    with pytest.raises(ValueError, match="lease"):
        RedisRateLimiter(redis_server.url, lease=0)
    with pytest.raises(ValueError, match="not both"):
        RedisRateLimiter(redis_server.url, client_id="a", key="b")
