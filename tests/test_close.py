"""Closing: acknowledged means kept, aclose() is safe to cancel and retry, unclosed warns."""

from __future__ import annotations

import asyncio
import collections
import gc
from pathlib import Path

import pytest

import thanx_async as ta
from tests.test_batcher import sdk_tasks
from thanx_async.testing import (
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
    ThanxEmulator,
)

FAST = pytest.mark.thanx_emulator(start_delay=0.0, speed=1_000_000.0)
SLOW_JOBS = pytest.mark.thanx_emulator(start_delay=30.0, speed=1_000_000.0)


def batcher_for(
    client: ta.ThanxClient, journal: Path | None, **options: object
) -> ta.RewardBatcher:
    return ta.RewardBatcher(
        client,
        merchant_id=DEFAULT_MERCHANT_ID,
        campaign_id=DEFAULT_CAMPAIGN_ID,
        variant_id=DEFAULT_VARIANT_ID,
        journal=journal,
        **{"max_wait": 0.05, **options},  # type: ignore[arg-type]
    )


def email(i: int) -> str:
    return f"user{i}@example.com"


def issued_counts(emu: ThanxEmulator) -> collections.Counter[str]:
    return collections.Counter(e.identifier_value for e in emu.state.ledger())


async def submit_during_close(
    batcher: ta.RewardBatcher, count: int, close: asyncio.Future[None] | None = None
) -> tuple[list[asyncio.Future[ta.IssuanceOutcome]], int]:
    """Start ``count`` submits and aclose() in one loop turn; the futures of those that returned."""
    submits = [asyncio.ensure_future(batcher.submit(email(i))) for i in range(count)]
    closing = close if close is not None else asyncio.ensure_future(batcher.aclose())
    results = await asyncio.gather(*submits, return_exceptions=True)
    await asyncio.gather(closing, return_exceptions=True)
    refused = sum(isinstance(r, ta.BatcherClosedError) for r in results)
    futures = [r for r in results if isinstance(r, asyncio.Future)]
    assert refused + len(futures) == count, [r for r in results if isinstance(r, Exception)][:3]
    return futures, refused


@FAST
@pytest.mark.parametrize("journaled", [False, True], ids=["memory", "journal"])
async def test_a_submit_that_returns_during_close_leads_to_an_outcome(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator, tmp_path: Path, journaled: bool
) -> None:
    """Submits racing aclose() either raise BatcherClosedError or are issued, exactly once."""
    journal = tmp_path / "j.db" if journaled else None
    batcher = batcher_for(thanx_client, journal)
    await batcher.__aenter__()
    futures, _ = await submit_during_close(batcher, 20_000)
    assert futures, "the race admitted nobody: the test proves nothing"
    assert all(f.done() for f in futures), "an acknowledged identifier was left hanging"
    outcomes = [f.result() for f in futures]
    assert {o.status for o in outcomes} == {ta.OutcomeStatus.ISSUED}
    counts = issued_counts(thanx_emulator)
    assert all(counts[o.identifier.value] == 1 for o in outcomes)


@pytest.mark.thanx_emulator(start_delay=1.0, speed=1_000_000.0)
async def test_a_hurried_close_keeps_acknowledged_work_for_the_next_start(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator, tmp_path: Path
) -> None:
    """A cancelled aclose() racing submits: after a restart everyone is issued exactly once."""
    journal = tmp_path / "j.db"
    batcher = batcher_for(thanx_client, journal)
    await batcher.__aenter__()
    close = asyncio.ensure_future(asyncio.wait_for(batcher.aclose(), 0.05))
    futures, _ = await submit_during_close(batcher, 5_000, close)
    assert all(f.done() for f in futures), "an acknowledged identifier was left hanging"
    assert all(
        f.exception() is None or isinstance(f.exception(), ta.BatcherClosedError) for f in futures
    )
    async with batcher_for(thanx_client, journal) as again:
        # What was acknowledged is journaled: the restart issues it, and a
        # resubmission joins that work (or gets its recorded result).
        outcomes = await asyncio.gather(*(again.issue(email(i)) for i in range(5_000)))
    assert {o.status for o in outcomes} == {ta.OutcomeStatus.ISSUED}
    assert set(issued_counts(thanx_emulator).values()) == {1}


@SLOW_JOBS
async def test_a_cancelled_aclose_cleans_up_and_a_second_one_finishes(
    thanx_client: ta.ThanxClient, tmp_path: Path
) -> None:
    """aclose() cut short by a timeout still stops every task and releases the journal."""
    journal = tmp_path / "j.db"
    batcher = batcher_for(thanx_client, journal)
    future = await batcher.submit(email(1))
    await batcher.flush()  # accepted; its job takes 30 s
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(batcher.aclose(), 0.2)
    async with asyncio.timeout(2):
        await batcher.aclose()  # returns at once
        await batcher.__aexit__(None, None, None)
    assert future.done()
    assert isinstance(future.exception(), ta.BatcherClosedError)
    assert not sdk_tasks(asyncio.all_tasks())
    # The journal is free again in this very process.
    async with batcher_for(thanx_client, journal, close_timeout=0.1) as again:
        assert again.stats().pending == 1  # resumed from the journal
        with pytest.raises(ta.BatcherClosedError):
            await batcher.submit(email(2))


@FAST
async def test_concurrent_acloses_all_return(thanx_client: ta.ThanxClient) -> None:
    """Several tasks closing at once all return once the batcher is closed."""
    batcher = batcher_for(thanx_client, None)
    future = await batcher.submit(email(1))
    async with asyncio.timeout(5):
        await asyncio.gather(*(batcher.aclose() for _ in range(3)))
    assert future.result().issued
    with pytest.raises(ta.BatcherClosedError):
        await batcher.__aenter__()


@FAST
async def test_a_started_batcher_never_closed_warns(thanx_client: ta.ThanxClient) -> None:
    """Like an unclosed aiohttp session, a started batcher that is never closed warns."""
    batcher = batcher_for(thanx_client, None)
    await batcher.__aenter__()
    del batcher
    with pytest.warns(ResourceWarning, match="never closed"):
        gc.collect()


@FAST
async def test_an_unstarted_batcher_does_not_warn(thanx_client: ta.ThanxClient) -> None:
    """A batcher that never started holds nothing, so dropping it is silent."""
    batcher = batcher_for(thanx_client, None)
    del batcher
    gc.collect()
