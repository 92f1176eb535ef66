"""The emulator delivers signed webhooks when jobs end, to a real WebhookReceiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web

import thanx_async as ta
from tests.emulator.conftest import Api, identifiers
from tests.webhooks.conftest import RecordingSink
from thanx_async.testing import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
    DEFAULT_WEBHOOK_SECRET,
    EmulatorState,
    ManualClock,
    ThanxEmulator,
    WebhookFaults,
)
from thanx_async.webhooks import (
    RewardBatchCompleted,
    RewardIssued,
    WebhookReceiver,
    verify_signature,
)

PATH = "/webhooks/thanx"
UNKNOWN = "unknown.7@example.com"  # the emulator's default rule: not a Thanx user


@attrs.frozen
class Receiving:
    """A WebhookReceiver served on a loopback port, with a sink recording what it hands on."""

    url: str
    receiver: WebhookReceiver
    sink: RecordingSink

    def completed(self) -> list[RewardBatchCompleted]:
        return [e for e in self.sink.events if isinstance(e, RewardBatchCompleted)]

    def issued(self) -> list[RewardIssued]:
        return [e for e in self.sink.events if isinstance(e, RewardIssued)]


@pytest.fixture
async def receiving() -> AsyncIterator[Receiving]:
    """A receiver for the emulator's default webhook secret, served on 127.0.0.1."""
    sink = RecordingSink(jobs=frozenset())
    # Default options, age check included: the emulator's stamps are wall-clock UTC
    # (a ManualClock only moves them ahead, which is never stale).
    receiver = WebhookReceiver(secret=DEFAULT_WEBHOOK_SECRET, batchers=[sink])
    app = web.Application()
    app.router.add_post(PATH, receiver.aiohttp_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield Receiving(f"http://127.0.0.1:{runner.addresses[0][1]}{PATH}", receiver, sink)
    finally:
        await runner.cleanup()


@pytest.fixture
def clock() -> ManualClock:
    """A clock that moves only when the test advances it."""
    return ManualClock()


def manual_state(clock: ManualClock, url: str | None, **options: Any) -> EmulatorState:
    settings: dict[str, Any] = {"start_delay": 1.0, "speed": 2.0, **options}
    return EmulatorState(
        clock=clock,
        rate_limit_per_second=None,
        rate_limit_per_window=None,
        webhook_url=url,
        **settings,
    )


async def issue(emulator: ThanxEmulator, items: list[dict[str, str]]) -> str:
    async with aiohttp.ClientSession() as session:
        answer = await Api(session, emulator.url).issue(items)
    assert answer.status == 202, answer.raw
    job_id: str = answer.job["id"]
    return job_id


FOUR = [
    {"type": "email", "value": "a@example.com"},
    {"type": "phone", "value": "+14155550101"},
    {"type": "email", "value": UNKNOWN},
    {"type": "email", "value": "d@example.com"},
]


async def test_job_end_delivers_documented_events(clock: ManualClock, receiving: Receiving) -> None:
    """At a job's end: one signed reward.issued per reward and one reward_batch.completed."""
    state = manual_state(clock, receiving.url)
    async with ThanxEmulator(state) as emulator:
        job_id = await issue(emulator, FOUR)
        clock.advance(2.9)  # 1 s start delay + 4 identifiers at 2/s = 3 s
        await emulator.deliver_webhooks()
        assert state.webhooks.deliveries == []
        clock.advance(0.1)
        await emulator.deliver_webhooks()
        polled = state.job_json(job_id)
    deliveries = state.webhooks.deliveries
    assert sorted(d.event for d in deliveries) == ["reward.issued"] * 3 + ["reward_batch.completed"]
    for delivery in deliveries:
        assert delivery.status == 200
        assert delivery.sent_at == clock()
        assert delivery.due_at == clock()
        assert delivery.url == receiving.url
        verify_signature(delivery.body, delivery.signature, DEFAULT_WEBHOOK_SECRET)
        assert list(delivery.payload) == ["event", "timestamp", "data"]
    (completed,) = receiving.completed()
    assert completed.issuance_job_id == job_id
    assert completed.merchant_id == DEFAULT_MERCHANT_ID
    assert completed.state is ta.JobState.COMPLETED
    assert (completed.total_count, completed.issued_count, completed.failed_count) == (4, 3, 1)
    assert [(f.user_identifier, f.reason) for f in completed.failures] == [
        (UNKNOWN, "User not found")
    ]
    assert completed.data["issued_count"] == polled["success_count"]
    assert completed.timestamp == datetime.fromisoformat(polled["completed_at"])
    issued = sorted(receiving.issued(), key=lambda e: e.identifier_index or 0)
    assert [(e.identifier_index, e.identifier_type) for e in issued] == [
        (0, "email"), (1, "phone"), (3, "email")
    ]  # fmt: skip
    started = datetime.fromisoformat(polled["started_at"])
    for event in issued:
        assert event.issuance_job_id == job_id
        assert event.merchant_id == DEFAULT_MERCHANT_ID
        assert event.state == "active"
        assert event.reward_id is not None
        assert event.user_id is not None
        assert event.timestamp is not None
        # <= on both sides: stamps may be whole seconds.
        assert started <= event.timestamp <= completed.timestamp
        assert event.campaign is not None
        assert event.campaign.id == DEFAULT_CAMPAIGN_ID
        assert event.variant is not None
        assert event.variant.id == DEFAULT_VARIANT_ID
    assert len({e.reward_id for e in issued}) == 3
    assert receiving.receiver.stats.accepted == 4


async def test_failed_job_sends_only_its_completion(
    clock: ManualClock, receiving: Receiving
) -> None:
    """A job that ends failed issued nothing: no reward.issued, a 'failed' completion."""
    state = manual_state(clock, receiving.url)
    state.fail_next_jobs(1)
    async with ThanxEmulator(state) as emulator:
        job_id = await issue(emulator, FOUR)
        clock.advance(10)
        await emulator.deliver_webhooks()
    assert [d.event for d in state.webhooks.deliveries] == ["reward_batch.completed"]
    (completed,) = receiving.completed()
    assert completed.issuance_job_id == job_id
    assert completed.state is ta.JobState.FAILED
    assert (completed.issued_count, completed.failed_count, completed.failures) == (0, 4, ())


async def test_event_selection(clock: ManualClock, receiving: Receiving) -> None:
    """webhook_events limits what is sent."""
    state = manual_state(clock, receiving.url, webhook_events=["reward_batch.completed"])
    async with ThanxEmulator(state) as emulator:
        await issue(emulator, FOUR)
        clock.advance(10)
        await emulator.deliver_webhooks()
    assert [d.event for d in state.webhooks.deliveries] == ["reward_batch.completed"]


async def test_url_set_later(clock: ManualClock, receiving: Receiving) -> None:
    """Without a URL nothing is sent; jobs that end after one is set are delivered."""
    state = manual_state(clock, None)
    async with ThanxEmulator(state) as emulator:
        await issue(emulator, FOUR[:1])
        clock.advance(10)
        await emulator.deliver_webhooks()
        running = await issue(emulator, FOUR[:1])
        state.webhooks.url = receiving.url
        clock.advance(10)
        await emulator.deliver_webhooks()
    assert {d.job_id for d in state.webhooks.deliveries} == {running}
    assert len(receiving.completed()) == 1


async def test_dropped_delivery_is_recorded_not_sent(
    clock: ManualClock, receiving: Receiving
) -> None:
    """A drop fault loses exactly the scripted delivery; it is recorded without a status."""
    state = manual_state(clock, receiving.url, webhook_events=["reward_batch.completed"])
    state.webhooks.faults.add("reward_batch.completed", drop=True)
    async with ThanxEmulator(state) as emulator:
        lost = await issue(emulator, FOUR)
        kept = await issue(emulator, FOUR)
        clock.advance(10)
        await emulator.deliver_webhooks()
    (dropped,) = state.webhooks.for_job(lost)
    assert dropped.dropped
    assert (dropped.faults, dropped.sent_at, dropped.status) == (("drop",), None, None)
    assert [e.issuance_job_id for e in receiving.completed()] == [kept]
    assert state.webhooks.faults.pending == []


async def test_duplicate_delivery_is_sent_twice_and_deduplicated(
    clock: ManualClock, receiving: Receiving
) -> None:
    """A duplicate fault posts the same bytes and signature twice; the receiver hands on one."""
    state = manual_state(clock, receiving.url, webhook_events=["reward_batch.completed"])
    state.webhooks.faults.add("*", duplicate=True)
    async with ThanxEmulator(state) as emulator:
        job_id = await issue(emulator, FOUR)
        clock.advance(10)
        await emulator.deliver_webhooks()
    original, copy = state.webhooks.for_job(job_id)
    assert (original.faults, copy.faults) == ((), ("duplicate",))
    assert (original.body, original.signature) == (copy.body, copy.signature)
    assert (original.status, copy.status) == (200, 200)
    assert len(receiving.completed()) == 1
    assert receiving.receiver.stats.duplicates == 1


async def test_bad_signature_is_refused_by_the_receiver(
    clock: ManualClock, receiving: Receiving
) -> None:
    """A bad_signature fault is answered 401 and reaches no sink."""
    state = manual_state(clock, receiving.url, webhook_events=["reward_batch.completed"])
    state.webhooks.faults.add("reward_batch.completed", bad_signature=True)
    async with ThanxEmulator(state) as emulator:
        await issue(emulator, FOUR)
        clock.advance(10)
        await emulator.deliver_webhooks()
    (delivery,) = state.webhooks.deliveries
    assert (delivery.faults, delivery.status, delivery.delivered) == (
        ("bad_signature",),
        401,
        False,
    )
    assert receiving.completed() == []


async def test_delayed_delivery_waits_on_the_clock(
    clock: ManualClock, receiving: Receiving
) -> None:
    """A delay fault makes a delivery due that many clock seconds after the job's end."""
    state = manual_state(clock, receiving.url, webhook_events=["reward_batch.completed"])
    state.webhooks.faults.add("reward_batch.completed", delay=30.0)
    async with ThanxEmulator(state) as emulator:
        await issue(emulator, FOUR)
        clock.advance(3)
        await emulator.deliver_webhooks()
        (delivery,) = state.webhooks.deliveries
        assert (delivery.faults, delivery.status, state.webhooks.waiting) == (("delay",), None, 1)
        clock.advance(29.9)
        await emulator.deliver_webhooks()
        assert delivery.status is None
        clock.advance(0.1)
        await emulator.deliver_webhooks()
    assert state.webhooks.deliveries[0].status == 200
    assert delivery.sent_at == delivery.due_at == clock()
    assert len(receiving.completed()) == 1


def test_probabilistic_faults_are_repeatable() -> None:
    """Faults with a probability draw from a seeded generator: the same seed, the same choices."""

    def draws(seed: int) -> list[bool]:
        faults = WebhookFaults(seed)
        faults.add("reward.issued", drop=True, probability=0.3, times=None)
        return [faults.take("reward.issued") is not None for _ in range(1000)]

    first = draws(0)
    assert first == draws(0)
    assert first != draws(1)
    assert 200 < sum(first) < 400
    assert WebhookFaults().take("reward_batch.completed") is None


def test_fault_validation() -> None:
    """Impossible or empty faults are refused with ValueError."""
    faults = WebhookFaults()
    for bad in (
        {"event": "reward.revoked", "drop": True},
        {},
        {"drop": True, "duplicate": True},
        {"delay": -1.0},
        {"drop": True, "probability": 0.0},
        {"drop": True, "times": 0},
    ):
        with pytest.raises(ValueError):
            faults.add(**bad)
    with pytest.raises(ValueError, match="unknown webhook events"):
        EmulatorState(webhook_events=["reward.revoked"])
    with pytest.raises(ValueError, match="empty"):
        EmulatorState(webhook_secret="")


async def test_completion_jumps_the_issued_queue(clock: ManualClock, receiving: Receiving) -> None:
    """With 2,000 reward.issued due at once, the job's completion is among the first posts."""
    state = manual_state(clock, receiving.url, speed=float("inf"))
    async with ThanxEmulator(state) as emulator:
        await issue(emulator, identifiers(2000))
        clock.advance(2)
        await emulator.deliver_webhooks()
    assert len(receiving.sink.events) == 2001
    position = next(
        i for i, e in enumerate(receiving.sink.events) if isinstance(e, RewardBatchCompleted)
    )
    assert position < 16  # the senders' concurrency
    assert all(d.status == 200 for d in state.webhooks.deliveries)


async def test_big_completion_body(clock: ManualClock, receiving: Receiving) -> None:
    """A completion listing 10,000 failures (a body of ~0.5 MB) is delivered whole."""
    state = manual_state(clock, receiving.url, speed=float("inf"))
    everyone_unknown = [
        {"type": "email", "value": f"unknown.{i}@example.com"} for i in range(10_000)
    ]
    async with ThanxEmulator(state) as emulator:
        await issue(emulator, everyone_unknown)
        clock.advance(2)
        await emulator.deliver_webhooks()
    (delivery,) = state.webhooks.deliveries
    assert len(delivery.body) > 512 * 1024
    assert delivery.status == 200
    (completed,) = receiving.completed()
    assert len(completed.failures) == 10_000


async def test_unreachable_receiver_is_recorded(clock: ManualClock) -> None:
    """A refused connection is recorded as an error; the sender keeps going."""
    async with ThanxEmulator(manual_state(clock, "http://127.0.0.1:9/hook")) as emulator:
        await issue(emulator, FOUR[:1])
        clock.advance(10)
        await emulator.deliver_webhooks()
        deliveries = emulator.state.webhooks.deliveries
        assert len(deliveries) == 2
        for delivery in deliveries:
            assert (delivery.status, delivery.delivered) == (None, False)
            assert delivery.error is not None
            assert "Connect" in delivery.error
        await issue(emulator, FOUR[:1])
        clock.advance(10)
        await emulator.deliver_webhooks()
        assert len(deliveries) == 4


async def test_real_clock_delivers_without_being_asked(receiving: Receiving) -> None:
    """With the real clock the running emulator delivers on its own, right after the job ends."""
    async with (
        ThanxEmulator(
            start_delay=0.0, speed=float("inf"), rate_limit_per_second=None,
            webhook_url=receiving.url,
        ) as emulator,
        ta.ThanxClient(
            client_id=DEFAULT_CLIENT_ID, access_token=DEFAULT_ACCESS_TOKEN, base_url=emulator.url
        ) as client,
    ):  # fmt: skip
        job = await client.issue_rewards(
            merchant_id=DEFAULT_MERCHANT_ID,
            campaign_id=DEFAULT_CAMPAIGN_ID,
            variant_id=DEFAULT_VARIANT_ID,
            identifiers=["jane@example.com", UNKNOWN],
        )
        async with asyncio.timeout(5.0):
            while not receiving.completed():  # noqa: ASYNC110 - the sink is a plain recorder
                await asyncio.sleep(0.01)
    (completed,) = receiving.completed()
    assert completed.issuance_job_id == job.id
    assert [f.user_identifier for f in completed.failures] == [UNKNOWN]


async def test_deliver_webhooks_needs_a_running_emulator() -> None:
    """deliver_webhooks() on a stopped emulator is a RuntimeError."""
    with pytest.raises(RuntimeError, match="not running"):
        await ThanxEmulator().deliver_webhooks()


@pytest.mark.thanx_emulator(
    webhook_url="http://127.0.0.1:9/hook",
    webhook_secret="marker-secret",
    webhook_faults=[{"event": "reward.issued", "drop": True, "times": None}],
)
async def test_plugin_marker_configures_webhooks(thanx_emulator: ThanxEmulator) -> None:
    """The pytest marker passes webhook options through to the emulator's state."""
    webhooks = thanx_emulator.state.webhooks
    assert (webhooks.url, webhooks.secret) == ("http://127.0.0.1:9/hook", "marker-secret")
    (fault,) = webhooks.faults.pending
    assert (fault.event, fault.drop, fault.times) == ("reward.issued", True, None)


async def test_stopping_mid_delivery_records_it(clock: ManualClock) -> None:
    """A delivery cut off by the emulator stopping keeps sent_at and says why it has no answer."""
    arrived = asyncio.Event()
    release = asyncio.Event()

    async def stuck(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response()

    app = web.Application()
    app.router.add_post(PATH, stuck)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}{PATH}"
    try:
        state = manual_state(clock, url, webhook_events=["reward_batch.completed"])
        async with ThanxEmulator(state) as emulator:
            await issue(emulator, FOUR[:1])
            clock.advance(10)
            await asyncio.wait_for(arrived.wait(), 5.0)
        (delivery,) = state.webhooks.deliveries
        assert delivery.sent_at is not None
        assert (delivery.status, delivery.error) == (None, "cancelled: the emulator stopped")
    finally:
        release.set()
        await runner.cleanup()
