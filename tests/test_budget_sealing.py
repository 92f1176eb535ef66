"""Budget-aware sealing: while the rate budget binds, batches keep filling instead of queueing."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
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
from thanx_async.testing._plugin import client_rate_limit


@contextlib.asynccontextmanager
async def batcher_for(emulator: ThanxEmulator, **options: Any) -> AsyncIterator[ta.RewardBatcher]:
    """A batcher whose client keeps the emulator's windows (the marker's scaled limits)."""
    async with (
        ta.ThanxClient(
            client_id=DEFAULT_CLIENT_ID,
            access_token=DEFAULT_ACCESS_TOKEN,
            base_url=emulator.url,
            rate_limit=client_rate_limit(emulator.state),
        ) as client,
        ta.RewardBatcher(
            client,
            merchant_id=DEFAULT_MERCHANT_ID,
            campaign_id=DEFAULT_CAMPAIGN_ID,
            variant_id=DEFAULT_VARIANT_ID,
            **options,
        ) as batcher,
    ):
        yield batcher


@pytest.mark.slow
@pytest.mark.thanx_emulator(
    start_delay=0.0,
    speed=1_000_000.0,
    rate_limit_per_second=5,
    rate_limit_per_window=20,
    rate_limit_window=10.0,
)
async def test_a_saturated_stream_sends_full_batches_and_resolves_everyone(
    thanx_emulator: ThanxEmulator,
) -> None:
    """800 identifiers/s against ~2 requests/s: hundreds per POST, all resolved, zero 429s."""
    async with batcher_for(thanx_emulator, max_wait=0.05) as batcher:
        futures = []
        for tick in range(60):  # 6 s of traffic, 80 identifiers every 0.1 s
            futures += [await batcher.submit(f"u{tick}-{i}@example.com") for i in range(80)]
            await asyncio.sleep(0.1)
        async with asyncio.timeout(30):
            outcomes = await asyncio.gather(*futures)
    assert all(o.issued for o in outcomes)
    state = thanx_emulator.state
    assert not [r for r in state.requests if r.status == 429]
    sizes = [len(orjson.loads(r.body)["identifiers"]) for r in state.requests_for("issue")]
    assert sum(sizes) == len(futures)
    assert sum(sizes) / len(sizes) >= 200, sizes
    # While the budget binds, each job is polled once, just after its predicted end.
    assert len(state.requests_for("get_job")) <= 1.05 * len(sizes) + 1
    counts = collections.Counter(e.identifier_value for e in state.ledger())
    assert set(counts.values()) == {1}


@pytest.mark.slow
@pytest.mark.thanx_emulator(
    start_delay=0.2,
    speed=20_000.0,
    rate_limit_per_second=5,
    rate_limit_per_window=10,
    rate_limit_window=5.0,
)
async def test_saturated_with_small_batches_accepted_jobs_do_not_pile_up(
    thanx_emulator: ThanxEmulator,
) -> None:
    """Batches capped at 50, far more than the budget carries: one poll per job, no pile-up.

    If POSTs kept winning the budget, accepted jobs would pile up unresolved,
    their people waiting ever longer (a saturated minute once accepted 9,000
    identifiers and resolved 4,200). Due polls go first: after the first
    window's burst, the jobs accepted but unresolved stop growing.
    """
    async with batcher_for(thanx_emulator, max_batch_size=50, close_timeout=0.5) as batcher:
        futures = [await batcher.submit(f"u{i}@example.com") for i in range(5_000)]
        backlog = []  # identifiers accepted and unresolved, every 0.25 s
        for _ in range(40):  # the first window's burst, then a window sustained
            await asyncio.sleep(0.25)
            backlog.append(batcher.stats().accepted - sum(f.done() for f in futures))
        resolved = sum(f.done() for f in futures)
    closed = await asyncio.gather(*futures, return_exceptions=True)  # the rest: closed
    assert {type(c) for c in closed if isinstance(c, BaseException)} <= {ta.BatcherClosedError}
    state = thanx_emulator.state
    assert not [r for r in state.requests if r.status == 429]
    posts = len(state.requests_for("issue"))
    polls = len(state.requests_for("get_job"))
    assert posts + polls >= 15, (posts, polls)  # the budget was used
    assert polls <= 1.05 * (resolved // 50) + 1, (posts, polls, resolved)  # one poll per job
    assert max(backlog[20:]) <= max(backlog[:20]) + 100, backlog  # two jobs of slack
