"""Without a journal, recent results answer resubmissions: the rule does not depend on batching."""

from __future__ import annotations

import asyncio

import pytest

import thanx_async as ta
from thanx_async.testing import (
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
    ThanxEmulator,
)

pytestmark = pytest.mark.thanx_emulator(start_delay=0.0, speed=1_000_000.0)


def email(i: int) -> str:
    return f"user{i}@example.com"


def batcher_for(client: ta.ThanxClient, **options: object) -> ta.RewardBatcher:
    defaults = {
        "merchant_id": DEFAULT_MERCHANT_ID,
        "campaign_id": DEFAULT_CAMPAIGN_ID,
        "variant_id": DEFAULT_VARIANT_ID,
        "max_wait": 0.02,
    }
    return ta.RewardBatcher(client, **{**defaults, **options})  # type: ignore[arg-type]


def posts(emu: ThanxEmulator) -> int:
    return len(emu.state.requests_for("issue"))


async def test_a_resubmission_in_another_batch_gets_the_recorded_result(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator
) -> None:
    """A person submitted again beside new neighbours is not rewarded twice: same outcome."""
    async with batcher_for(thanx_client) as b:
        first = await b.issue(email(1))
        # A different batch: other people too, so a different idempotency key.
        again, *others = await asyncio.gather(*(b.issue(email(i)) for i in (1, 2, 3)))
    assert again == first
    assert [o.issued for o in others] == [True, True]
    assert thanx_emulator.state.issued_count("email", email(1)) == 1
    body = thanx_emulator.state.requests_for("issue")[-1].body
    assert email(1).encode() not in body


async def test_a_failed_job_is_remembered(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator
) -> None:
    """A person whose job failed gets the same JobFailedError again, nothing sent."""
    thanx_emulator.state.fail_next_jobs(1)
    async with batcher_for(thanx_client) as b:
        with pytest.raises(ta.JobFailedError) as first:
            await b.issue(email(1))
        with pytest.raises(ta.JobFailedError) as again:
            await b.issue(email(1))
    assert again.value.job is first.value.job
    assert posts(thanx_emulator) == 1


async def test_a_rejection_that_issued_nothing_is_tried_again(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator
) -> None:
    """A refused batch is no result: a resubmission is sent again."""
    async with batcher_for(thanx_client, campaign_id="camp_nope") as b:
        for _ in range(2):
            with pytest.raises(ta.NotFoundError):
                await b.issue(email(1))
    assert posts(thanx_emulator) == 2


async def test_results_are_forgotten_after_the_dedupe_window(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator
) -> None:
    """Past dedupe_window a resubmission is a new issuance (a new batch, a new reward)."""
    async with batcher_for(thanx_client, dedupe_window=0.2) as b:
        first = await b.issue(email(1))
        await asyncio.sleep(0.3)
        again = await b.issue(email(1), dedupe_key="later")  # a new batch's content
        third = await b.issue(email(1))
    assert again.job_id != first.job_id
    # Forgotten, so sent again: the same content has the same key, and the
    # server's idempotency cache answers with the original job.
    assert posts(thanx_emulator) == 3
    assert third.job_id == first.job_id


async def test_memory_is_bounded_by_recent_results(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator
) -> None:
    """Only the last recent_results results are kept; older ones are sent again."""
    async with batcher_for(thanx_client, recent_results=2) as b:
        for i in range(3):
            await b.issue(email(i))
        assert len(b._resolver.recent or ()) == 2
        await b.issue(email(2))  # remembered
        await b.issue(email(0), dedupe_key="x")  # a new issuance, evicting the oldest kept
    assert posts(thanx_emulator) == 4


async def test_distinct_dedupe_keys_are_still_distinct(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator
) -> None:
    """Remembering never merges different dedupe keys: two events, two rewards."""
    async with batcher_for(thanx_client) as b:
        first = await b.issue(email(1), dedupe_key="order-1")
        second = await b.issue(email(1), dedupe_key="order-2")
    assert first.job_id != second.job_id
    assert thanx_emulator.state.issued_count("email", email(1)) == 2
