"""Webhooks finish jobs without a poll; polling stays the safety net; forgeries change nothing."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import ClientSession, web

import thanx_async as ta
from thanx_async.testing import (
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
    DEFAULT_WEBHOOK_SECRET,
    ThanxEmulator,
)
from thanx_async.webhooks import WebhookReceiver, compute_signature

PATH = "/webhooks/thanx"
#: Jobs of about half a second (start delay plus 1,000 identifiers at 5,000/s).
JOBS = {"start_delay": 0.3, "speed": 5_000.0}


def email(i: int) -> str:
    return f"unknown.{i}@example.com" if i % 50 == 0 else f"user{i}@example.com"


class Site:
    """A WebhookReceiver served on 127.0.0.1, and the emulator pointed at it."""

    def __init__(self, receiver: WebhookReceiver, url: str) -> None:
        self.receiver = receiver
        self.url = url


@pytest.fixture
async def site(thanx_emulator: ThanxEmulator) -> AsyncIterator[Site]:
    """A receiver (no batcher yet) on a loopback port, the emulator delivering to it."""
    receiver = WebhookReceiver(secret=DEFAULT_WEBHOOK_SECRET)
    app = web.Application()
    app.router.add_post(PATH, receiver.aiohttp_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}{PATH}"
    thanx_emulator.state.webhooks.url = url
    try:
        yield Site(receiver, url)
    finally:
        await runner.cleanup()


def batcher_for(client: ta.ThanxClient, **options: object) -> ta.RewardBatcher:
    defaults = {
        "merchant_id": DEFAULT_MERCHANT_ID,
        "campaign_id": DEFAULT_CAMPAIGN_ID,
        "variant_id": DEFAULT_VARIANT_ID,
        "max_batch_size": 1_000,
        "max_wait": 0.05,
    }
    return ta.RewardBatcher(client, **{**defaults, **options})  # type: ignore[arg-type]


def polls(emu: ThanxEmulator) -> int:
    return len(emu.state.requests_for("get_job"))


def check_outcomes(outcomes: list[ta.IssuanceOutcome], count: int) -> None:
    for i, outcome in enumerate(outcomes):
        expected = ta.OutcomeStatus.FAILED if i % 50 == 0 else ta.OutcomeStatus.ISSUED
        assert outcome.status is expected, (i, outcome)
    assert len(outcomes) == count


@pytest.mark.thanx_emulator(**JOBS)
async def test_delivered_webhooks_finish_every_job_without_a_poll(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator, site: Site
) -> None:
    """With deliveries arriving, 10,000 identifiers resolve with zero polls, soon after each job."""
    batcher = batcher_for(thanx_client, max_wait=30.0)  # sealed at size, however slow the feed
    site.receiver.add_sink(batcher)
    async with batcher:
        futures = [await batcher.submit(email(i)) for i in range(10_000)]
        ends: list[float] = []
        for future in futures:
            future.add_done_callback(lambda _: ends.append(time.monotonic()))
        outcomes = await asyncio.gather(*futures)
    check_outcomes(outcomes, 10_000)
    assert polls(thanx_emulator) == 0
    jobs = {o.job_id for o in outcomes}
    assert len(jobs) == 10
    assert batcher.stats().polls == 0


@pytest.mark.thanx_emulator(**JOBS)
async def test_lost_webhooks_are_caught_by_polling(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator, site: Site
) -> None:
    """Every reward_batch.completed dropped (Thanx never retries): all still resolve, by polls."""
    thanx_emulator.state.webhooks.faults.add("reward_batch.completed", drop=True, times=None)
    batcher = batcher_for(thanx_client, webhook_grace=0.2)
    site.receiver.add_sink(batcher)
    async with batcher:
        futures = [await batcher.submit(email(i)) for i in range(3_000)]
        outcomes = await asyncio.gather(*futures)
    check_outcomes(outcomes, 3_000)
    assert polls(thanx_emulator) >= 3


@pytest.mark.thanx_emulator(**JOBS)
async def test_duplicated_webhooks_change_nothing(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator, site: Site
) -> None:
    """Every delivery sent twice: the same outcomes, each person issued once."""
    thanx_emulator.state.webhooks.faults.add("*", duplicate=True, times=None)
    batcher = batcher_for(thanx_client)
    site.receiver.add_sink(batcher)
    async with batcher:
        futures = [await batcher.submit(email(i)) for i in range(2_000)]
        outcomes = await asyncio.gather(*futures)
    check_outcomes(outcomes, 2_000)
    counts = collections.Counter(e.identifier_value for e in thanx_emulator.state.ledger())
    assert set(counts.values()) == {1}


@pytest.mark.thanx_emulator(start_delay=1.0, speed=5_000.0)
async def test_forged_and_replayed_deliveries_change_no_outcome(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator, site: Site
) -> None:
    """A forged delivery (wrong secret) is refused; a replay of a real one is inert."""
    batcher = batcher_for(thanx_client)
    site.receiver.add_sink(batcher)
    async with batcher, ClientSession() as http:
        futures = [await batcher.submit(email(i)) for i in range(1, 4)]
        await batcher.flush()
        (job_id,) = list(batcher._runner._following)
        forged = {
            "event": "reward_batch.completed",
            "timestamp": "2030-01-01T00:00:00Z",
            "data": {
                "issuance_job_id": job_id,
                "merchant_id": DEFAULT_MERCHANT_ID,
                "state": "completed",
                "total_count": 3,
                "issued_count": 0,
                "failed_count": 3,
                "failures": [
                    {"user_identifier": email(i), "reason": "forged"} for i in range(1, 4)
                ],
            },
        }
        body = orjson.dumps(forged)
        bad = compute_signature(body, "not-the-secret")
        async with http.post(site.url, data=body, headers={"X-Thanx-Signature": bad}) as answer:
            assert answer.status == 401
        outcomes = await asyncio.gather(*futures)
        (real,) = [
            d
            for d in thanx_emulator.state.webhooks.deliveries
            if d.event == "reward_batch.completed"
        ]
        headers = {"X-Thanx-Signature": real.signature}
        async with http.post(site.url, data=real.body, headers=headers) as answer:
            assert answer.status == 200  # acknowledged as a duplicate, acted on once
    assert all(o.issued for o in outcomes)
    assert site.receiver.stats.unauthorized == 1
    assert site.receiver.stats.duplicates >= 1
    assert batcher.stats().polls == 0


@pytest.mark.thanx_emulator(**JOBS)
async def test_a_delivery_that_does_not_account_for_the_batch_makes_it_poll(
    thanx_client: ta.ThanxClient, site: Site
) -> None:
    """Counts that do not cover the batch are no evidence: the job is polled at once instead."""
    batcher = batcher_for(thanx_client, webhook_grace=30.0)
    async with batcher:
        futures = [await batcher.submit(email(i)) for i in range(1, 4)]
        await batcher.flush()
        (job_id,) = list(batcher._runner._following)
        from thanx_async.webhooks import RewardBatchCompleted

        wrong = RewardBatchCompleted(
            issuance_job_id=job_id,
            state=ta.JobState.COMPLETED,
            total_count=2,
            issued_count=2,
            failed_count=0,
        )
        assert batcher.receive_webhook(wrong)
        async with asyncio.timeout(5):  # far sooner than the 30 s grace: polled at once
            outcomes = await asyncio.gather(*futures)
    assert all(o.issued for o in outcomes)
    assert batcher.stats().polls >= 1


async def test_a_webhook_that_beats_the_posts_answer_still_counts() -> None:
    """A completion that arrives before the POST's 202 is processed resolves the batch, no poll."""
    from collections.abc import Mapping

    from tests.hostile import ScriptedTransport, completed, scripted_client
    from thanx_async._transport._http import Response
    from thanx_async.webhooks import RewardBatchCompleted

    batchers: list[ta.RewardBatcher] = []

    class Racing(ScriptedTransport):
        async def send(
            self,
            method: str,
            url: str,
            *,
            headers: Mapping[str, str],
            body: bytes | None,
            timeout: float,
        ) -> Response:
            response = await super().send(method, url, headers=headers, body=body, timeout=timeout)
            if method == "POST":  # the job ends, and its webhook lands, before we read the 202
                event = RewardBatchCompleted(
                    issuance_job_id="job_1",
                    state=ta.JobState.COMPLETED,
                    total_count=3,
                    issued_count=3,
                    failed_count=0,
                )
                assert not batchers[0].receive_webhook(event)  # not followed yet
            return response

    transport = Racing(completed)
    async with scripted_client(transport) as client:
        batcher = ta.RewardBatcher(
            client, merchant_id="m", campaign_id="c", variant_id="v", webhook_grace=30.0
        )
        batchers.append(batcher)
        async with batcher:
            outcomes = await asyncio.gather(*(batcher.issue(f"u{i}@example.com") for i in range(3)))
    assert all(o.issued for o in outcomes)
    assert transport.polls == 0
