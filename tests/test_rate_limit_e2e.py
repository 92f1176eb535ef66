"""The rate budget against a real server that enforces it: zero 429s, no over-throttling."""

from __future__ import annotations

import asyncio
import time

import pytest

import thanx_async as ta
from thanx_async.testing import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
    ThanxEmulator,
)

pytestmark = pytest.mark.slow


def limit_bound(n: int, per_second: int, second: float, per_window: int, window: float) -> float:
    """Earliest time the n-th request can arrive when the first arrives at 0 (both windows)."""
    k = n - 1
    return max((k // per_second) * second, (k // per_window) * window)


@pytest.mark.parametrize(
    ("per_second", "second", "per_window", "window", "requests"),
    # Each window cycle costs one response latency on top of the bound (a request counts
    # until a full window after its response), so windows are long next to loopback latency.
    [
        (5, 1.0, 10_000, 900.0, 20),  # the short window binds: Thanx's own 5 per second
        (5, 0.05, 20, 2.0, 60),  # the long window binds
    ],
)
async def test_flat_out_client_gets_no_429_and_is_not_over_throttled(
    per_second: int, second: float, per_window: int, window: float, requests: int
) -> None:
    """Firing requests as fast as possible: no 429, and within 5% of the limit-bound time."""
    async with ThanxEmulator(
        rate_limit_per_second=per_second, rate_limit_second=second,
        rate_limit_per_window=per_window, rate_limit_window=window,
    ) as emu, ta.ThanxClient(
        client_id=DEFAULT_CLIENT_ID, access_token=DEFAULT_ACCESS_TOKEN, base_url=emu.url,
        rate_limit=ta.RateLimit(
            per_second=per_second, second=second, per_window=per_window, window=window
        ),
    ) as client:  # fmt: skip
        await client.get_scopes()  # warm the connection pool; counted by both sides
        started = time.perf_counter()
        await asyncio.gather(*(client.get_scopes() for _ in range(requests)))
        elapsed = time.perf_counter() - started
        statuses = [r.status for r in emu.state.requests]
    assert 429 not in statuses
    assert client.stats.rate_limited == 0
    bound = limit_bound(requests + 1, per_second, second, per_window, window)
    assert elapsed <= bound * 1.05, (elapsed, bound)


async def test_batcher_under_the_documented_limits_gets_no_429() -> None:
    """With Thanx's own limits (5/s, 2,000/15 min) enforced, many small batches see zero 429s."""
    async with ThanxEmulator(start_delay=0.1, speed=50_000.0) as emu, ta.ThanxClient(
        client_id=DEFAULT_CLIENT_ID, access_token=DEFAULT_ACCESS_TOKEN, base_url=emu.url
    ) as client, ta.RewardBatcher(
        client, merchant_id=DEFAULT_MERCHANT_ID, campaign_id=DEFAULT_CAMPAIGN_ID,
        variant_id=DEFAULT_VARIANT_ID, max_batch_size=50, max_wait=0.05,
    ) as batcher:  # fmt: skip
        futures = [await batcher.submit(f"user{i}@example.com") for i in range(1_000)]
        outcomes = await asyncio.gather(*futures)
        statuses = [r.status for r in emu.state.requests]
    assert all(o.issued for o in outcomes)
    assert len(statuses) >= 25  # 20 POSTs and their polls
    assert 429 not in statuses
    assert batcher.stats().rate_limited == 0
