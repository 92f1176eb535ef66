"""RewardBatcher against the emulator: batching, outcomes, faults, admission, lifecycle."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypedDict

import attrs
import orjson
import pytest

import thanx_async as ta
from thanx_async.testing import (
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
    ThanxEmulator,
)

FAST = pytest.mark.thanx_emulator(start_delay=0.0, speed=1_000_000.0)
pytestmark = FAST


class PartitionArgs(TypedDict):
    merchant_id: str
    campaign_id: str
    variant_id: str


PARTITION = PartitionArgs(
    merchant_id=DEFAULT_MERCHANT_ID, campaign_id=DEFAULT_CAMPAIGN_ID, variant_id=DEFAULT_VARIANT_ID
)
#: Every (campaign, variant) the emulator seeds for the default merchant.
SEEDED = [
    ("camp_welcome", "var_welcome_treat"),
    ("camp_welcome", "var_welcome_discount"),
    ("camp_birthday", "var_birthday_dessert"),
    ("camp_birthday", "var_birthday_drink"),
    ("camp_winback", "var_winback_5_off"),
]


@pytest.fixture
async def batcher(thanx_client: ta.ThanxClient) -> AsyncIterator[ta.RewardBatcher]:
    """A batcher on the default partition with a short max_wait."""
    async with ta.RewardBatcher(thanx_client, max_wait=0.05, **PARTITION) as b:
        yield b


def posted_bodies(emu: ThanxEmulator) -> list[dict[str, object]]:
    return [orjson.loads(r.body) for r in emu.state.requests_for("issue") if r.status == 202]


def sent_values(emu: ThanxEmulator) -> list[list[str]]:
    return [[i["value"] for i in b["identifiers"]] for b in posted_bodies(emu)]  # type: ignore[attr-defined]


def sdk_tasks(tasks: set[asyncio.Task[object]]) -> list[asyncio.Task[object]]:
    """Tasks running SDK code (the emulator's own server tasks are not ours)."""
    package = Path(ta.__file__).parent
    return [
        t
        for t in tasks
        if (code := getattr(t.get_coro(), "cr_code", None)) is not None
        and Path(code.co_filename).is_relative_to(package)
        and not Path(code.co_filename).is_relative_to(package / "testing")
    ]


def email(i: int) -> str:
    return f"user{i}@example.com"


async def test_issue_returns_the_outcome(
    batcher: ta.RewardBatcher, thanx_emulator: ThanxEmulator
) -> None:
    """issue() resolves with ISSUED, the normalised identifier and the job."""
    outcome = await batcher.issue("  Jane@Example.com ")
    assert outcome.status is ta.OutcomeStatus.ISSUED
    assert outcome.issued
    assert outcome.identifier == ta.Identifier("email", "jane@example.com")
    assert outcome.job is not None
    assert outcome.job.state is ta.JobState.COMPLETED
    assert outcome.job_id == outcome.job.id
    assert thanx_emulator.state.issued_count("email", "jane@example.com") == 1


@pytest.mark.thanx_emulator(rate_limit_per_second=None, rate_limit_per_window=None)
async def test_hundred_thousand_across_partitions(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator
) -> None:
    """100,000 identifiers over five partitions all resolve; not-found ones FAIL with the text."""
    async with ta.RewardBatcher(thanx_client, merchant_id=DEFAULT_MERCHANT_ID) as batcher:
        futures = []
        for i in range(100_000):
            campaign, variant = SEEDED[i % len(SEEDED)]
            value = f"unknown.{i}@example.com" if i % 997 == 0 else email(i)
            futures.append(await batcher.submit(value, campaign_id=campaign, variant_id=variant))
        outcomes = await asyncio.gather(*futures)
    statuses = collections.Counter(o.status for o in outcomes)
    unknown = sum(1 for i in range(100_000) if i % 997 == 0)
    assert statuses == {
        ta.OutcomeStatus.ISSUED: 100_000 - unknown,
        ta.OutcomeStatus.FAILED: unknown,
    }
    failed = [o for o in outcomes if o.status is ta.OutcomeStatus.FAILED]
    assert all(o.identifier.value.startswith("unknown.") for o in failed)
    assert {o.error for o in failed} == {"User not found"}
    assert all(len(b) <= 10_000 for b in sent_values(thanx_emulator))
    counts = thanx_emulator.state.issuance_counts()
    assert len(counts) == 100_000 - unknown
    assert set(counts.values()) == {1}
    stats = batcher.stats()
    assert (stats.issued, stats.failed, stats.pending) == (100_000 - unknown, unknown, 0)


async def test_batches_seal_at_size_in_submission_order(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator
) -> None:
    """With max_batch_size=3, seven identifiers go as 3, 3, 1 in the order submitted."""
    async with ta.RewardBatcher(thanx_client, max_batch_size=3, max_wait=0.05, **PARTITION) as b:
        futures = [await b.submit(email(i)) for i in range(7)]
        await asyncio.gather(*futures)
    assert sent_values(thanx_emulator) == [
        [email(0), email(1), email(2)],
        [email(3), email(4), email(5)],
        [email(6)],
    ]


def test_batch_size_above_the_api_limit_is_refused() -> None:
    """max_batch_size above 10,000 is a ValueError at construction."""
    client = ta.ThanxClient(client_id="c", access_token="t")
    with pytest.raises(ValueError, match="max_batch_size"):
        ta.RewardBatcher(client, max_batch_size=10_001)


async def test_quiet_partition_is_sent_within_max_wait(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator
) -> None:
    """The first identifier of a quiet partition is POSTed within max_wait + 50 ms."""
    async with ta.RewardBatcher(thanx_client, max_wait=0.2, **PARTITION) as b:
        submitted_at = asyncio.get_running_loop().time()
        future = await b.submit(email(1))
        await future
    (request,) = thanx_emulator.state.requests_for("issue")
    assert request.at - submitted_at <= 0.2 + 0.05


async def test_missing_partition_part_is_a_clear_error(thanx_client: ta.ThanxClient) -> None:
    """A submission with no variant anywhere raises ValueError naming what is missing."""
    async with ta.RewardBatcher(thanx_client, merchant_id="m", campaign_id="c") as b:
        with pytest.raises(ValueError, match="variant_id"):
            await b.submit(email(1))
        assert b.stats().pending == 0


async def test_invalid_identifier_is_refused_at_submit(
    batcher: ta.RewardBatcher, thanx_emulator: ThanxEmulator
) -> None:
    """An invalid identifier raises at submit, queues nothing, and never poisons the batch."""
    good = await batcher.submit(email(1))
    with pytest.raises(ta.InvalidIdentifierError):
        await batcher.submit("not-an-identifier")
    assert batcher.stats().pending == 1
    assert (await good).issued
    assert sent_values(thanx_emulator) == [[email(1)]]


async def test_duplicates_are_coalesced_while_unresolved(
    batcher: ta.RewardBatcher, thanx_emulator: ThanxEmulator
) -> None:
    """The same identifier submitted twice is sent once and both callers get the outcome."""
    first = await batcher.submit(email(1))
    second = await batcher.submit(email(1).upper())
    assert first is not second
    assert await first == await second
    assert sent_values(thanx_emulator) == [[email(1)]]


async def test_distinct_dedupe_keys_are_distinct_issuances(
    batcher: ta.RewardBatcher, thanx_emulator: ThanxEmulator
) -> None:
    """The same person with two dedupe keys is two issuances (batched apart on the server)."""
    a = await batcher.submit(email(1), dedupe_key="evt-1")
    b = await batcher.submit(email(1), dedupe_key="evt-2")
    assert (await a).issued
    assert (await b).issued
    assert a.result().dedupe_key == "evt-1"
    assert sum(v.count(email(1)) for v in sent_values(thanx_emulator)) == 2


async def test_cancel_before_seal_removes_the_identifier(
    batcher: ta.RewardBatcher, thanx_emulator: ThanxEmulator
) -> None:
    """A future cancelled before its batch is sealed takes the identifier out of the batch."""
    keep = await batcher.submit(email(1))
    drop = await batcher.submit(email(2))
    drop.cancel()
    await keep
    assert sent_values(thanx_emulator) == [[email(1)]]
    assert batcher.stats().pending == 0


async def test_cancelling_one_caller_keeps_the_other(
    batcher: ta.RewardBatcher, thanx_emulator: ThanxEmulator
) -> None:
    """When one of two callers of an identifier cancels, the other still gets its outcome."""
    first = await batcher.submit(email(1))
    second = await batcher.submit(email(1))
    first.cancel()
    assert (await second).issued
    assert sent_values(thanx_emulator) == [[email(1)]]


async def test_each_caller_holds_its_own_future(
    batcher: ta.RewardBatcher, thanx_emulator: ThanxEmulator
) -> None:
    """Coalesced callers get distinct asyncio futures; cancelling a later one keeps the first."""
    first = await batcher.submit(email(1))
    second = await batcher.submit(email(1))
    assert isinstance(first, asyncio.Future)
    assert isinstance(second, asyncio.Future)
    assert first is not second
    second.cancel()
    assert (await first).issued
    assert thanx_emulator.state.issued_count("email", email(1)) == 1


async def test_cancel_after_seal_only_stops_waiting(
    batcher: ta.RewardBatcher, thanx_emulator: ThanxEmulator
) -> None:
    """A future cancelled after the seal does not unsend: the identifier is still issued."""
    future = await batcher.submit(email(1))
    await batcher.flush()
    future.cancel()
    other = await batcher.issue(email(2))
    assert other.issued
    await batcher.flush()
    for _ in range(100):
        if thanx_emulator.state.issued_count("email", email(1)):
            break
        await asyncio.sleep(0.01)
    assert thanx_emulator.state.issued_count("email", email(1)) == 1


async def test_back_pressure_waits_fifo_and_never_drops(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator
) -> None:
    """With max_pending=2, later submitters wait in order and every identifier is issued."""
    order: list[int] = []
    async with ta.RewardBatcher(thanx_client, max_pending=2, max_wait=0.01, **PARTITION) as b:

        async def submit(i: int) -> ta.IssuanceOutcome:
            future = await b.submit(email(i))
            order.append(i)
            return await future

        tasks = [asyncio.create_task(submit(i)) for i in range(6)]
        await asyncio.sleep(0)
        assert b.stats().pending <= 2
        outcomes = await asyncio.gather(*tasks)
    assert order == list(range(6))
    assert all(o.issued for o in outcomes)
    assert sum(len(v) for v in sent_values(thanx_emulator)) == 6


async def test_not_found_users_fail_with_the_server_text(
    batcher: ta.RewardBatcher, thanx_emulator: ThanxEmulator
) -> None:
    """Identifiers the job lists as failed come back FAILED with the server's error."""
    ok, missing = await batcher.submit(email(1)), await batcher.submit("+14155550000")
    assert (await ok).issued
    outcome = await missing
    assert outcome.status is ta.OutcomeStatus.FAILED
    assert outcome.error == "User not found"
    assert outcome.job_id is not None


async def test_identifier_level_400_is_bisected(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator
) -> None:
    """A batch refused over one identifier is split until it is isolated; the rest are issued."""
    thanx_emulator.state.server_rejected.add(("email", email(5)))
    async with ta.RewardBatcher(thanx_client, max_wait=0.05, **PARTITION) as b:
        futures = [await b.submit(email(i)) for i in range(8)]
        outcomes = await asyncio.gather(*futures)
    bad = outcomes[5]
    assert bad.status is ta.OutcomeStatus.FAILED
    assert bad.job_id is None
    assert bad.error
    assert email(5) in bad.error
    assert all(o.issued for i, o in enumerate(outcomes) if i != 5)
    assert thanx_emulator.state.issued_count("email", email(5)) == 0
    assert sum(thanx_emulator.state.issuance_counts().values()) == 7


async def test_batch_wide_400_fails_the_batch_at_once(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator
) -> None:
    """A 400 that is not identifier-level fails every future with BadRequestError, unsplit."""
    foreign_variant: PartitionArgs = {**PARTITION, "variant_id": "var_birthday_drink"}
    async with ta.RewardBatcher(thanx_client, **foreign_variant, max_wait=0.01) as b:
        futures = [await b.submit(email(i)) for i in range(4)]
        results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(r, ta.BadRequestError) for r in results)
    assert len(thanx_emulator.state.requests_for("issue")) == 1


async def test_unknown_campaign_fails_with_not_found(thanx_client: ta.ThanxClient) -> None:
    """A rejected batch (404) fails every future with the typed APIError."""
    unknown_campaign: PartitionArgs = {**PARTITION, "campaign_id": "camp_nope"}
    async with ta.RewardBatcher(thanx_client, **unknown_campaign, max_wait=0.01) as b:
        with pytest.raises(ta.NotFoundError):
            await b.issue(email(1))


async def test_failed_job_raises_job_failed_error(
    batcher: ta.RewardBatcher, thanx_emulator: ThanxEmulator
) -> None:
    """A job ending 'failed' makes every future of its batch raise JobFailedError."""
    thanx_emulator.state.fail_next_jobs(1)
    futures = [await batcher.submit(email(i)) for i in range(3)]
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(r, ta.JobFailedError) for r in results)
    assert isinstance(results[0], ta.JobFailedError)
    assert results[0].job.state is ta.JobState.FAILED


@pytest.mark.parametrize(
    "fault",
    [
        {"drop": "after"},
        {"status": 503, "times": 2},
        {"drop": "before"},
        {"malformed": "truncated"},
    ],
)
async def test_faults_leave_one_job_per_batch_and_one_reward_each(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator, fault: dict[str, object]
) -> None:
    """Lost responses and 5xx are retried with the same key: one job, one reward per person."""
    thanx_emulator.state.faults.add("issue", **fault)  # type: ignore[arg-type]
    async with ta.RewardBatcher(thanx_client, max_wait=0.01, **PARTITION) as b:
        futures = [await b.submit(email(i)) for i in range(50)]
        outcomes = await asyncio.gather(*futures)
    assert all(o.issued for o in outcomes)
    assert len(thanx_emulator.state.jobs) == 1
    assert len({o.job_id for o in outcomes}) == 1
    counts = thanx_emulator.state.issuance_counts()
    assert len(counts) == 50
    assert set(counts.values()) == {1}
    keys = {r.headers["X-Idempotency-Key"] for r in thanx_emulator.state.requests_for("issue")}
    assert len(keys) == 1


async def test_outcomes_are_ordinary_frozen_outcomes(
    batcher: ta.RewardBatcher, thanx_emulator: ThanxEmulator
) -> None:
    """The fast-built outcome equals, hashes and prints like one built by keyword, and is frozen."""
    outcome = await batcher.issue(email(7), dedupe_key="order-1")
    assert type(outcome) is ta.IssuanceOutcome
    built = ta.IssuanceOutcome(
        identifier=ta.Identifier("email", email(7)),
        status=ta.OutcomeStatus.ISSUED,
        job_id=outcome.job_id,
        job=outcome.job,
        dedupe_key="order-1",
    )
    assert outcome == built
    assert hash(outcome) == hash(built)
    assert repr(outcome) == repr(built)
    assert hash(outcome.identifier) == hash(built.identifier)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        outcome.status = ta.OutcomeStatus.FAILED  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        outcome.identifier.value = "x"  # type: ignore[misc]


async def test_hand_built_identifier_is_escaped_in_the_body(
    batcher: ta.RewardBatcher, thanx_emulator: ThanxEmulator
) -> None:
    """An Identifier built by hand (no validation) still makes valid JSON; the server judges it."""
    odd = ta.Identifier("email", 'a"b\\c@example.com')
    outcome = await batcher.issue(odd)  # an invalid JSON body would fail the batch
    assert outcome.identifier == odd
    (request,) = thanx_emulator.state.requests_for("issue")
    body = orjson.loads(request.body)
    assert body["identifiers"] == [{"type": "email", "value": 'a"b\\c@example.com'}]


async def test_idempotency_key_is_the_documented_function_of_content(
    batcher: ta.RewardBatcher, thanx_emulator: ThanxEmulator
) -> None:
    """The key sent is idempotency_key() of the batch's exact content."""
    await asyncio.gather(*[await batcher.submit(email(i)) for i in range(3)])
    (request,) = thanx_emulator.state.requests_for("issue")
    expected = ta.idempotency_key(**PARTITION, identifiers=[email(i) for i in range(3)])
    assert request.headers["X-Idempotency-Key"] == expected


async def test_resubmission_after_finish_returns_the_original_job(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator
) -> None:
    """Same content after the batch finished, nothing remembered: same key, original job."""
    async with ta.RewardBatcher(
        thanx_client, max_wait=0.05, recent_results=0, **PARTITION
    ) as batcher:
        first = await batcher.issue(email(1))
        again = await batcher.issue(email(1))
    assert again.job_id == first.job_id
    assert thanx_emulator.state.issued_count("email", email(1)) == 1
    assert len(thanx_emulator.state.jobs) == 1


@pytest.mark.thanx_emulator(start_delay=5.0, speed=1.0)
async def test_job_timeout_carries_the_job_id(thanx_client: ta.ThanxClient) -> None:
    """A job outliving job_timeout fails its futures with JobTimeoutError naming the job."""
    async with ta.RewardBatcher(
        thanx_client, job_timeout=0.3, max_wait=0.01, close_timeout=0.1, **PARTITION
    ) as b:
        with pytest.raises(ta.JobTimeoutError) as info:
            await b.issue(email(1))
    assert info.value.job_id is not None
    assert info.value.job_id.startswith("job_")


@pytest.mark.thanx_emulator(start_delay=5.0, speed=1.0)
async def test_close_timeout_fails_what_is_left(thanx_client: ta.ThanxClient) -> None:
    """aclose() sends open batches, waits close_timeout, then fails the rest with a typed error."""
    b = ta.RewardBatcher(thanx_client, max_wait=10.0, close_timeout=0.2, **PARTITION)
    future = await b.submit(email(1))
    await b.aclose()
    with pytest.raises(ta.BatcherClosedError):
        await future
    assert b.stats().posts == 1


async def test_use_after_close_raises(batcher: ta.RewardBatcher) -> None:
    """submit() after aclose() raises BatcherClosedError."""
    await batcher.aclose()
    with pytest.raises(ta.BatcherClosedError):
        await batcher.submit(email(1))


async def test_aclose_sends_open_batches_and_leaves_no_task(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator
) -> None:
    """aclose() seals and sends what is open, resolves it, and no batcher task survives."""
    before = asyncio.all_tasks()
    b = ta.RewardBatcher(thanx_client, max_wait=60.0, **PARTITION)
    futures = [await b.submit(email(i)) for i in range(5)]
    await b.aclose()
    assert all(f.result().issued for f in futures)
    assert sdk_tasks(asyncio.all_tasks() - before) == []
    assert sent_values(thanx_emulator) == [[email(i) for i in range(5)]]


async def test_flush_waits_until_sent(
    batcher: ta.RewardBatcher, thanx_emulator: ThanxEmulator
) -> None:
    """flush() returns once every open batch has been POSTed and accepted."""
    await batcher.submit(email(1))
    await batcher.flush()
    assert len(thanx_emulator.state.jobs) == 1
    assert batcher.stats().sealed_batches == 1


async def test_stats_count_the_work(batcher: ta.RewardBatcher) -> None:
    """stats() counts submissions, batches, POSTs, polls and outcomes."""
    futures = [await batcher.submit(email(i)) for i in range(3)]
    futures.append(await batcher.submit("unknown.1@example.com"))
    await asyncio.gather(*futures)
    stats = batcher.stats()
    assert (stats.submitted, stats.sealed_batches, stats.posts) == (4, 1, 1)
    assert stats.polls >= 1
    assert (stats.issued, stats.failed, stats.unknown, stats.pending) == (3, 1, 0, 0)


@pytest.mark.thanx_emulator(start_delay=0.0, speed=0.1)
async def test_job_finished_hint_polls_at_once(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator
) -> None:
    """job_finished() polls at once (the webhook seam), long before the scheduled poll."""
    async with ta.RewardBatcher(thanx_client, max_wait=0.01, **PARTITION) as b:
        future = await b.submit(email(1))
        await b.flush()
        (job_id,) = thanx_emulator.state.jobs
        assert not b.job_finished("job_unknown")
        thanx_emulator.state.fail_job(job_id, immediately=True)
        assert b.job_finished(job_id)
        # The tracker's own first poll is 0.2 s away; only the hint can resolve this in time.
        with pytest.raises(ta.JobFailedError):
            await asyncio.wait_for(future, 0.15)
    assert b.stats().polls == 1


@pytest.mark.slow
@pytest.mark.thanx_emulator(start_delay=0.5, speed=3_000.0)
async def test_predictive_polling_needs_few_polls(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator
) -> None:
    """Jobs of 2-4 s are followed with at most 3 polls each on average, outcomes within ~1 s."""
    loop = asyncio.get_running_loop()
    async with ta.RewardBatcher(thanx_client, max_wait=0.01, **PARTITION) as b:
        lateness = []
        for round_ in range(4):
            size = 6_000 + 1_500 * round_
            futures = [await b.submit(email(round_ * 100_000 + i)) for i in range(size)]
            await b.flush()
            first = await futures[0]
            resolved_at = loop.time()
            assert first.job is not None
            job = thanx_emulator.state.jobs[first.job.id]
            lateness.append(resolved_at - job.finished)
            await asyncio.gather(*futures)
    stats = b.stats()
    assert stats.polls / stats.sealed_batches <= 3
    assert max(lateness) <= 1.0


@pytest.mark.thanx_emulator(start_delay=5.0, speed=1.0)
async def test_close_leaves_no_unretrieved_exceptions(thanx_client: ta.ThanxClient) -> None:
    """Closing with jobs still followed leaves no 'exception was never retrieved' behind."""
    import gc

    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    b = ta.RewardBatcher(thanx_client, max_wait=0.01, close_timeout=0.2, **PARTITION)
    futures = [await b.submit(email(i)) for i in range(3)]
    await b.flush()
    await b.aclose()
    for future in futures:
        assert isinstance(future.exception(), ta.BatcherClosedError)
    gc.collect()
    await asyncio.sleep(0)
    assert reported == []
    assert b.stats().failed == 0  # closed before an outcome is not a failure


async def test_a_submit_loop_shares_the_event_loop(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator
) -> None:
    """A plain `for ...: await submit()` lets other tasks run and POSTs batches as they seal."""
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    beating = asyncio.ensure_future(heartbeat())
    await asyncio.sleep(0)
    async with ta.RewardBatcher(thanx_client, max_batch_size=5_000, **PARTITION) as b:
        futures = []
        posted_during_loop = ticks_during_loop = 0
        for i in range(30_000):
            futures.append(await b.submit(email(i)))
            if i == 24_999:  # four batches sealed by now; the fifth is filling
                posted_during_loop = len(thanx_emulator.state.requests_for("issue"))
                ticks_during_loop = ticks
        await asyncio.gather(*futures)
    beating.cancel()
    assert ticks_during_loop > 1, "the submit loop never let another task run"
    assert posted_during_loop >= 1, "sealed batches waited for the submit loop to end"
