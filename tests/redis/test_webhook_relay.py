"""WebhookRelay: a delivery received by one process finishes the batch waiting in another.

Every test runs real redis-servers; "processes" are relays with connections
of their own, and one test runs process B as a real subprocess. The emulator
delivers its signed webhooks to a real aiohttp receiver (process A).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio
from aiohttp import web

import thanx_async as ta
from tests.redis.relay_child import person
from tests.redis_support import RedisServer
from tests.webhooks.conftest import COMPLETED_DATA, RecordingSink, envelope
from thanx_async.redis import WebhookRelay
from thanx_async.testing import (
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
    DEFAULT_WEBHOOK_SECRET,
    ThanxEmulator,
)
from thanx_async.webhooks import RewardBatchCompleted, WebhookReceiver, parse_event
from thanx_async.webhooks import compute_signature as sign

CHILD = Path(__file__).with_name("relay_child.py")
PATH = "/webhooks/thanx"
#: Jobs of about half a second (start delay plus 1,000 identifiers at 5,000/s).
JOBS = {"start_delay": 0.3, "speed": 5_000.0}


def channel() -> str:
    """A channel of the test's own, on the session's shared redis-server."""
    return f"test:webhooks:{uuid.uuid4().hex}"


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``check()`` holds (fail after ``timeout`` s)."""
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 - polling what other tasks and processes change
            await asyncio.sleep(0.01)


def completed(job_id: str) -> RewardBatchCompleted:
    """A verified reward_batch.completed for ``job_id`` (THANX_API.md's example shape)."""
    body = envelope("reward_batch.completed", {**COMPLETED_DATA, "issuance_job_id": job_id})
    event = parse_event(body, sign(body, "s"), "s")
    assert isinstance(event, RewardBatchCompleted)
    return event


@pytest.fixture
async def receiver(thanx_emulator: ThanxEmulator) -> AsyncIterator[WebhookReceiver]:
    """A receiver (no sinks yet) on a loopback port; the emulator delivers to it."""
    receiver = WebhookReceiver(secret=DEFAULT_WEBHOOK_SECRET)
    app = web.Application()
    app.router.add_post(PATH, receiver.aiohttp_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    thanx_emulator.state.webhooks.url = f"http://127.0.0.1:{runner.addresses[0][1]}{PATH}"
    try:
        yield receiver
    finally:
        await runner.cleanup()


def batcher_for(client: ta.ThanxClient) -> ta.RewardBatcher:
    return ta.RewardBatcher(
        client,
        merchant_id=DEFAULT_MERCHANT_ID,
        campaign_id=DEFAULT_CAMPAIGN_ID,
        variant_id=DEFAULT_VARIANT_ID,
        max_batch_size=1_000,
        max_wait=0.05,
    )


def polls(emu: ThanxEmulator) -> int:
    return len(emu.state.requests_for("get_job"))


def check(outcomes: list[ta.IssuanceOutcome]) -> None:
    for i, outcome in enumerate(outcomes):
        assert outcome.issued == (i % 50 != 0), (i, outcome)


def jobs(outcomes: list[ta.IssuanceOutcome]) -> int:
    """How many jobs carried ``outcomes`` (a batch may be sealed early on a busy machine)."""
    return len({o.job_id for o in outcomes})


async def issue(batcher: ta.RewardBatcher, people: range) -> list[ta.IssuanceOutcome]:
    futures = [await batcher.submit(person(i)) for i in people]
    return list(await asyncio.gather(*futures))


@pytest.mark.thanx_emulator(**JOBS)
async def test_a_delivery_to_process_a_finishes_the_batch_waiting_in_process_b(
    thanx_client: ta.ThanxClient,
    thanx_emulator: ThanxEmulator,
    receiver: WebhookReceiver,
    redis_server: RedisServer,
) -> None:
    """Deliveries land in A only; B's batcher (attached to B's relay alone) resolves, 0 polls."""
    name = channel()
    batcher = batcher_for(thanx_client)
    async with (
        WebhookRelay(redis_server.url, channel=name) as relay_a,
        WebhookRelay(redis_server.url, channel=name, batchers=[batcher]) as relay_b,
    ):
        receiver.add_sink(relay_a)
        async with batcher:
            outcomes = await issue(batcher, range(3_000))
    check(outcomes)
    assert jobs(outcomes) >= 3
    assert polls(thanx_emulator) == 0
    assert batcher.stats().polls == 0
    # reward_batch.completed only; the reward.issued stay in A.
    assert relay_a.published == relay_b.relayed == jobs(outcomes)
    assert (relay_a.lost, relay_b.lost, relay_a.malformed, relay_b.malformed) == (0, 0, 0, 0)
    assert receiver.stats.claimed == jobs(outcomes)  # the relay takes completions to publish


@pytest.mark.slow
@pytest.mark.thanx_emulator(**JOBS)
async def test_a_delivery_reaches_a_batcher_in_another_os_process(
    thanx_emulator: ThanxEmulator, receiver: WebhookReceiver, redis_server: RedisServer
) -> None:
    """B is a real subprocess with no webhook URL: its 2,000 identifiers resolve with 0 polls."""
    name = channel()
    async with WebhookRelay(redis_server.url, channel=name) as relay_a:
        receiver.add_sink(relay_a)
        child = await asyncio.create_subprocess_exec(
            sys.executable, str(CHILD), thanx_emulator.url, redis_server.url, name, "2000",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert child.stdin is not None
        assert child.stdout is not None
        try:
            async with asyncio.timeout(30):
                ready = await child.stdout.readline()
            assert ready == b"READY\n", ready
            child.stdin.write(b"go\n")
            await child.stdin.drain()
            async with asyncio.timeout(60):
                out, err = await child.communicate()
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
    assert child.returncode == 0, err.decode()
    line = next(line for line in out.decode().splitlines() if line.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    assert result["as_expected"], result
    assert result["outcomes"] == {"issued": 1960, "failed": 40}
    assert result["jobs"] >= 2
    assert result["polls"] == 0
    assert result["relayed"] == relay_a.published == result["jobs"]
    assert polls(thanx_emulator) == 0


async def test_a_process_gets_its_own_events_once_and_every_other_process_gets_them(
    redis_server: RedisServer,
) -> None:
    """A's sinks get A's event directly, never again from Redis; B's and C's get it relayed."""
    name = channel()
    sinks = {key: RecordingSink() for key in "abc"}
    relays = {
        key: WebhookRelay(redis_server.url, channel=name, batchers=[sink])
        for key, sink in sinks.items()
    }
    try:
        for relay in relays.values():
            assert await relay.start()
        first, second = completed("job_first"), completed("job_second")
        assert relays["a"].receive_webhook(first)
        await eventually(lambda: len(sinks["b"].events) == len(sinks["c"].events) == 1)
        # C's event reaches A after A's own (one connection reads in publishing
        # order): once A has C's event, A would have seen its own come back.
        assert relays["c"].receive_webhook(second)
        await eventually(lambda: len(sinks["a"].events) == 2)
        await asyncio.sleep(0.05)
    finally:
        for relay in relays.values():
            await relay.aclose()
    ids = {key: [getattr(e, "issuance_job_id", None) for e in s.events] for key, s in sinks.items()}
    assert ids == {key: ["job_first", "job_second"] for key in "abc"}
    relayed = sinks["b"].events[0]
    assert relayed == first  # the same event, field for field
    assert relayed.data == first.data
    assert [relays[k].published for k in "abc"] == [1, 0, 1]
    assert [relays[k].relayed for k in "abc"] == [1, 2, 1]


async def test_only_the_chosen_events_are_published_but_all_reach_local_sinks(
    redis_server: RedisServer,
) -> None:
    """By default a reward.issued stays local (no message); events=None relays it too."""
    name = channel()
    issued_body = envelope("reward.issued", {"issuance_job_id": "job_1", "reward_id": "r1"})
    issued = parse_event(issued_body, sign(issued_body, "s"), "s")
    local, far, far_all = RecordingSink(), RecordingSink(), RecordingSink()
    async with (
        WebhookRelay(redis_server.url, channel=name, batchers=[local]) as relay,
        WebhookRelay(redis_server.url, channel=name, batchers=[far]),
        WebhookRelay(redis_server.url, channel=name, batchers=[far_all], events=None) as every,
    ):
        assert not relay.receive_webhook(issued)
        assert every.receive_webhook(issued)
        # local: from its relay, then from `every` through Redis; far: only the latter.
        await eventually(lambda: len(local.events) == 2 and len(far.events) == 1)
    assert far.events == [issued]
    assert far_all.events == [issued]  # its own publication never comes back to it
    assert relay.published == 0


async def test_attach_tells_the_batcher_that_webhooks_are_coming(redis_server: RedisServer) -> None:
    """attach() (and batchers=) call expect_webhooks(): a process without a receiver polls late."""

    class Expecting(RecordingSink):
        def __init__(self) -> None:
            super().__init__()
            self.expected = 0

        def expect_webhooks(self) -> None:
            self.expected += 1

    one, two = Expecting(), Expecting()
    relay = WebhookRelay(redis_server.url, batchers=[one])
    relay.attach(two)
    assert (one.expected, two.expected) == (1, 1)
    assert list(relay.sinks) == [one, two]
    relay.detach(one)
    relay.detach(one)  # no-op
    assert list(relay.sinks) == [two]
    with pytest.raises(TypeError, match="cannot receive webhooks"):
        relay.attach(object())  # type: ignore[arg-type]
    await relay.aclose()


async def test_junk_on_the_channel_is_ignored_and_the_relay_goes_on(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Messages that are not relayed events are counted, logged once, and change nothing."""
    name = channel()
    sink = RecordingSink()
    other = redis.asyncio.Redis.from_url(redis_server.url)
    async with WebhookRelay(redis_server.url, channel=name, batchers=[sink]) as relay:
        with caplog.at_level(logging.WARNING, "thanx_async.redis"):
            await other.publish(name, b"hello")
            await other.publish(name, b"thanx_async/1 someone\n{not json")
            await other.publish(name, b"thanx_async/1 someone\n" + envelope("x", None)[:-1])
            await other.publish(name, b"thanx_async/1 someone\n" + envelope("custom.event", [1]))
            await eventually(lambda: len(sink.events) == 1)
    await other.aclose()
    assert relay.malformed == 3
    assert sink.events[0].event == "custom.event"  # an unknown event is relayed as it came
    assert len([r for r in caplog.records if "unreadable" in r.message]) == 1


@pytest.mark.slow
@pytest.mark.thanx_emulator(**JOBS)
async def test_a_redis_restart_loses_only_what_was_published_meanwhile_and_polling_covers_it(
    thanx_client: ta.ThanxClient,
    thanx_emulator: ThanxEmulator,
    receiver: WebhookReceiver,
    own_redis_server: RedisServer,
) -> None:
    """Redis up: 0 polls. Redis down: B's batch resolves by polling. Back: 0 polls again."""
    url = own_redis_server.url
    batcher = batcher_for(thanx_client)
    async with (
        WebhookRelay(url) as relay_a,
        WebhookRelay(url, batchers=[batcher]) as relay_b,
        batcher,
    ):
        receiver.add_sink(relay_a)
        first = await issue(batcher, range(1_000))  # teaches the batcher the jobs' pace
        assert polls(thanx_emulator) == 0
        own_redis_server.stop()
        await eventually(lambda: not relay_b.subscribed)
        second = await issue(batcher, range(1_000, 2_000))
        assert polls(thanx_emulator) >= 1  # the safety net, after the job's end plus the grace
        assert relay_b.relayed == jobs(first)
        own_redis_server.start()
        await eventually(lambda: relay_a.subscribed and relay_b.subscribed)
        before = polls(thanx_emulator)
        third = await issue(batcher, range(2_000, 3_000))
        assert polls(thanx_emulator) == before
    for outcomes in (first, second, third):
        check(outcomes)
    assert relay_b.reconnects == relay_a.reconnects == 1
    # The events of the jobs that ended while Redis was down were published once Redis
    # was back (perhaps before B subscribed again), or given up after 10 s.
    assert relay_a.published + relay_a.lost == jobs(first) + jobs(second) + jobs(third)


async def test_a_client_given_to_the_relay_is_not_closed(redis_server: RedisServer) -> None:
    """aclose() closes the relay's own connection only; a second aclose() is harmless."""
    client = redis.asyncio.Redis.from_url(redis_server.url)
    relay = WebhookRelay(client, channel=channel())
    assert await relay.start()
    assert "redis://" not in repr(relay)
    assert "subscribed" in repr(relay)
    await relay.aclose()
    await relay.aclose()
    assert await client.ping()
    assert not relay.receive_webhook(completed("job_late"))  # closed: nothing published
    with pytest.raises(RuntimeError, match="closed"):
        await relay.start()
    await client.aclose()


async def test_bad_arguments_fail_at_once() -> None:
    """A wrong type, an empty channel or a malformed URL is refused when the relay is built."""
    with pytest.raises(TypeError, match=r"Redis URL or a redis\.asyncio\.Redis"):
        WebhookRelay(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="channel"):
        WebhookRelay("redis://127.0.0.1:1/0", channel="")
    with pytest.raises(ValueError, match="scheme"):
        WebhookRelay("nope://127.0.0.1")


async def test_an_unreachable_redis_at_start_is_retried_in_the_background(
    own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """start() returns False (with a warning) while Redis is down, and subscribes once it is up."""
    own_redis_server.stop()
    relay = WebhookRelay(own_redis_server.url)
    with caplog.at_level(logging.WARNING, "thanx_async.redis"):
        assert not await relay.start(timeout=0.2)
    assert any("could not subscribe" in r.message for r in caplog.records)
    own_redis_server.start()
    await eventually(lambda: relay.subscribed)
    assert relay.reconnects == 0  # a first subscription, not a re-subscription
    await relay.aclose()
