"""WebhookReceiver.handle: verify, deduplicate, refuse replays, hand on events after answering."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tests.webhooks.conftest import (
    COMPLETED_DATA,
    ISSUED_DATA,
    OTHER_SECRET,
    SECRET,
    BrokenSink,
    RecordingSink,
    envelope,
    signed,
)
from thanx_async.webhooks import (
    RewardBatchCompleted,
    RewardIssued,
    WebhookEvent,
    WebhookReceiver,
    WebhookSink,
    WebhookStats,
    compute_signature,
)
from thanx_async.webhooks._memory import ReplayMemory

#: 2025-06-15T10:30:15Z, the documented examples' timestamp.
DOCS_TIME = 1749983415.0


def receiver(*sinks: Any, **options: Any) -> WebhookReceiver:
    options.setdefault("clock", lambda: DOCS_TIME + 1.0)
    return WebhookReceiver(secret=options.pop("secret", SECRET), batchers=sinks, **options)


def completed(**changes: Any) -> bytes:
    return envelope("reward_batch.completed", {**COMPLETED_DATA, **changes})


def issued(timestamp: str = "2025-06-15T10:30:10Z", **changes: Any) -> bytes:
    return envelope("reward.issued", {**ISSUED_DATA, **changes}, timestamp)


async def turn() -> None:
    """Let the loop run the callbacks the receiver scheduled."""
    await asyncio.sleep(0)


async def test_accepts_and_hands_off_after_answering() -> None:
    """A verified event is answered 200 first; sinks get it on the next loop turn."""
    sink = RecordingSink()
    hook = receiver(sink)
    status, body = hook.handle(*signed(completed()))
    assert (status, body) == (200, b'{"status":"accepted"}')
    assert sink.events == []  # not called inside the request
    await turn()
    assert len(sink.events) == 1
    event = sink.events[0]
    assert isinstance(event, RewardBatchCompleted)
    assert event.issuance_job_id == "job_xyz789"
    assert hook.stats == WebhookStats(received=1, accepted=1, claimed=1)


async def test_every_sink_gets_every_event() -> None:
    """Each sink is called once per event, in order; claimed counts events some sink owned."""
    mine, other = RecordingSink(), RecordingSink(jobs=frozenset())
    hook = receiver(mine, other)
    hook.handle(*signed(completed()))
    hook.handle(*signed(completed(issuance_job_id="job_nobody")))
    await turn()
    assert [e.issuance_job_id for e in mine.events] == ["job_xyz789", "job_nobody"]  # type: ignore[union-attr]
    assert len(other.events) == 2
    assert hook.stats.claimed == 1


@pytest.mark.parametrize("signature", [None, "", "0" * 64, "not-hex"])
async def test_bad_signature_is_401_and_nothing_acted_on(signature: str | None) -> None:
    """Missing or wrong signatures get 401; no sink is called and nothing is remembered."""
    sink = RecordingSink()
    hook = receiver(sink)
    body = completed()
    assert hook.handle(body, signature)[0] == 401
    assert hook.handle(body, compute_signature(body, "wrong-secret"))[0] == 401
    await turn()
    assert sink.events == []
    assert hook.stats.unauthorized == 2
    assert hook.handle(*signed(body))[0] == 200  # the forgery did not poison the memory


async def test_forged_body_is_not_parsed() -> None:
    """An unsigned garbage body is a 401, not a 400: nothing is read before verification."""
    hook = receiver()
    assert hook.handle(b"\xff\xfe garbage", "0" * 64)[0] == 401
    assert hook.stats.malformed == 0


async def test_exact_duplicate_is_acknowledged_once() -> None:
    """The same bytes delivered twice are answered 200 both times but handed on once."""
    sink = RecordingSink()
    hook = receiver(sink)
    delivery = signed(completed())
    assert hook.handle(*delivery)[0] == 200
    assert hook.handle(*delivery) == (200, b'{"status":"duplicate"}')
    unknown = signed(envelope("purchase.created", {"id": 1}))  # no job: only its bytes say it
    assert hook.handle(*unknown)[1] == b'{"status":"accepted"}'
    assert hook.handle(*unknown)[1] == b'{"status":"duplicate"}'
    await turn()
    assert len(sink.events) == 2
    assert hook.stats.duplicates == 2


async def test_same_event_reworded_is_a_duplicate() -> None:
    """A second completion of the same job, or issue of the same reward, is a duplicate."""
    sink = RecordingSink()
    hook = receiver(sink)
    assert hook.handle(*signed(completed()))[0] == 200
    later = envelope("reward_batch.completed", COMPLETED_DATA, "2025-06-15T10:30:16Z")
    assert hook.handle(*signed(later))[1] == b'{"status":"duplicate"}'
    assert hook.handle(*signed(issued()))[0] == 200
    assert hook.handle(*signed(issued("2025-06-15T10:30:11Z")))[1] == b'{"status":"duplicate"}'
    assert hook.handle(*signed(issued(reward_id="rwd_2")))[1] == b'{"status":"accepted"}'
    no_reward_id = {**ISSUED_DATA, "reward_id": None, "identifier": {"type": "email", "index": 7}}
    assert hook.handle(*signed(envelope("reward.issued", no_reward_id)))[0] == 200
    other_stamp = envelope("reward.issued", no_reward_id, "2025-06-15T10:30:12Z")
    assert hook.handle(*signed(other_stamp))[1] == b'{"status":"duplicate"}'
    await turn()
    assert [type(e) for e in sink.events] == [
        RewardBatchCompleted,
        RewardIssued,
        RewardIssued,
        RewardIssued,
    ]


async def test_reward_id_and_index_keys_do_not_collide() -> None:
    """A reward named "5" and an unnamed reward at index 5 of the same job are two events."""
    hook = receiver()
    by_id = {**ISSUED_DATA, "reward_id": "5", "identifier": {"type": "email", "index": 0}}
    by_index = {**ISSUED_DATA, "reward_id": None, "identifier": {"type": "email", "index": 5}}
    assert hook.handle(*signed(envelope("reward.issued", by_id)))[0] == 200
    assert hook.handle(*signed(envelope("reward.issued", by_index)))[1] == b'{"status":"accepted"}'


async def test_stale_delivery_is_refused_as_a_replay() -> None:
    """A delivery older than the tolerance is answered 400 and not handed on."""
    sink = RecordingSink()
    hook = receiver(sink, tolerance=300.0, clock=lambda: DOCS_TIME + 301.0)
    assert hook.handle(*signed(completed())) == (400, b'{"error":"stale delivery"}')
    fresh = receiver(sink, tolerance=300.0, clock=lambda: DOCS_TIME + 299.0)
    assert fresh.handle(*signed(completed()))[0] == 200
    await turn()
    assert len(sink.events) == 1
    assert hook.stats.stale == 1


async def test_tolerance_none_and_missing_timestamps_accept_any_age() -> None:
    """tolerance=None disables the age check; a delivery without a timestamp is not judged."""
    ancient = receiver(tolerance=None, clock=lambda: DOCS_TIME + 10**8)
    assert ancient.handle(*signed(completed()))[0] == 200
    strict = receiver(clock=lambda: DOCS_TIME + 10**8)
    no_stamp = envelope("reward_batch.completed", COMPLETED_DATA, None)
    assert strict.handle(*signed(no_stamp))[0] == 200


async def test_future_timestamp_is_accepted() -> None:
    """Only age is judged: a sender clock ahead of ours is not a replay."""
    hook = receiver(clock=lambda: DOCS_TIME - 3600.0)
    assert hook.handle(*signed(completed()))[0] == 200


async def test_malformed_signed_body_is_400() -> None:
    """A correctly signed but unreadable body is answered 400 and handed to nobody."""
    sink = RecordingSink()
    hook = receiver(sink)
    status, body = hook.handle(*signed(completed(failures="everyone")))
    assert (status, body) == (400, b'{"error":"malformed payload"}')
    await turn()
    assert sink.events == []
    assert hook.stats.malformed == 1


async def test_oversized_body_is_413_unverified() -> None:
    """A body over max_body_size is refused before any HMAC is computed."""
    hook = receiver(max_body_size=100)
    body = completed()
    assert len(body) > 100
    assert hook.handle(*signed(body)) == (413, b'{"error":"body too large"}')
    assert hook.stats == WebhookStats(received=1, too_large=1)


async def test_unknown_events_reach_the_sinks() -> None:
    """An unknown event is accepted and handed on raw (sinks decide to ignore it)."""
    sink = RecordingSink()
    hook = receiver(sink)
    assert hook.handle(*signed(envelope("purchase.created", {"id": 1})))[0] == 200
    await turn()
    assert sink.events[0].event == "purchase.created"


async def test_secret_rotation() -> None:
    """With two secrets, deliveries signed by either are accepted."""
    hook = receiver(secret=[SECRET, OTHER_SECRET])
    assert hook.handle(*signed(completed(), OTHER_SECRET))[0] == 200
    assert hook.handle(*signed(completed(issuance_job_id="job_2"), SECRET))[0] == 200


async def test_failing_sink_is_logged_and_others_still_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A raising sink is logged (job id, no secret); the receiver and other sinks carry on."""
    broken, sink = BrokenSink(), RecordingSink()
    hook = receiver(broken, sink)
    body, signature = signed(completed())
    with caplog.at_level(logging.ERROR, "thanx_async.webhooks"):
        assert hook.handle(body, signature)[0] == 200
        await turn()
        assert hook.handle(*signed(completed(issuance_job_id="job_2")))[0] == 200
        await turn()
    assert broken.calls == 2
    assert len(sink.events) == 2
    assert hook.stats.sink_errors == 2
    assert "BrokenSink failed on reward_batch.completed for job job_xyz789" in caplog.text
    assert "sink bug" in caplog.text  # the traceback is there
    assert SECRET not in caplog.text
    assert signature not in caplog.text
    assert "+14155551234" not in caplog.text  # nor the people in the event


async def test_async_sink_is_run_as_a_task() -> None:
    """An async receive_webhook is awaited; its result counts and its errors are logged."""
    seen: list[WebhookEvent] = []

    class AsyncSink:
        async def receive_webhook(self, event: WebhookEvent) -> bool:
            await asyncio.sleep(0)
            seen.append(event)
            return True

    class AsyncBroken:
        async def receive_webhook(self, event: WebhookEvent) -> bool:
            raise RuntimeError("async sink bug")

    hook = receiver(AsyncSink(), AsyncBroken())
    assert hook.handle(*signed(completed()))[0] == 200
    for _ in range(5):
        await turn()
    assert len(seen) == 1
    assert hook.stats.claimed == 1
    assert hook.stats.sink_errors == 1


async def test_sinks_can_be_added_and_removed() -> None:
    """add_sink/remove_sink change who gets later events; a non-sink is refused."""
    first, second = RecordingSink(), RecordingSink()
    hook = receiver(first)
    hook.add_sink(second)
    assert hook.sinks == (first, second)
    assert isinstance(second, WebhookSink)
    hook.remove_sink(first)
    hook.remove_sink(first)  # no-op
    hook.handle(*signed(completed()))
    await turn()
    assert (len(first.events), len(second.events)) == (0, 1)
    with pytest.raises(TypeError, match="receive_webhook"):
        hook.add_sink(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="receive_webhook"):
        WebhookReceiver(secret=SECRET, batchers=[object()])  # type: ignore[list-item]


async def test_bad_signatures_are_logged_sparingly(caplog: pytest.LogCaptureFixture) -> None:
    """A flood of forgeries gives one warning line (without the signature), not one per request."""
    hook = receiver()
    with caplog.at_level(logging.WARNING, "thanx_async.webhooks"):
        for n in range(200):
            hook.handle(completed(), f"{n:064x}")
    lines = [r for r in caplog.records if r.name == "thanx_async.webhooks"]
    assert len(lines) == 1
    assert "401" in lines[0].getMessage()
    assert f"{5:064x}" not in caplog.text
    assert hook.stats.unauthorized == 200


def test_configuration_errors() -> None:
    """Empty secrets and out-of-range limits are refused at construction; repr hides the secret."""
    with pytest.raises(ValueError, match="empty"):
        WebhookReceiver(secret="")
    with pytest.raises(ValueError, match="tolerance"):
        WebhookReceiver(secret=SECRET, tolerance=0)
    with pytest.raises(ValueError, match="max_body_size"):
        WebhookReceiver(secret=SECRET, max_body_size=0)
    with pytest.raises(ValueError, match="ttl"):
        WebhookReceiver(secret=SECRET, dedupe_ttl=0)
    with pytest.raises(ValueError, match="dedupe_max"):
        WebhookReceiver(secret=SECRET, dedupe_max=0)
    assert SECRET not in repr(WebhookReceiver(secret=SECRET))


def test_handle_needs_a_running_loop() -> None:
    """Outside an event loop an accepted delivery raises instead of being lost."""
    hook = receiver()
    with pytest.raises(RuntimeError):
        hook.handle(*signed(completed()))
    assert hook.stats.accepted == 0


async def test_memory_is_bounded() -> None:
    """Past dedupe_max keys the oldest are forgotten (a very old duplicate passes again)."""
    sink = RecordingSink()
    hook = receiver(sink, dedupe_max=2)
    first = signed(completed(issuance_job_id="job_1"))
    hook.handle(*first)
    hook.handle(*signed(completed(issuance_job_id="job_2")))
    assert hook.handle(*first)[1] == b'{"status":"duplicate"}'
    hook.handle(*signed(completed(issuance_job_id="job_3")))
    assert hook.handle(*first)[1] == b'{"status":"accepted"}'


async def test_reward_issued_flood_does_not_evict_completions() -> None:
    """reward.issued deliveries are remembered apart: a flood leaves completions remembered."""
    hook = receiver(dedupe_max=10)
    done = signed(completed())
    assert hook.handle(*done)[1] == b'{"status":"accepted"}'
    for n in range(100):
        assert hook.handle(*signed(issued(reward_id=f"rwd_{n}")))[1] == b'{"status":"accepted"}'
    assert hook.handle(*done)[1] == b'{"status":"duplicate"}'
    assert hook.handle(*signed(issued(reward_id="rwd_0")))[1] == b'{"status":"accepted"}'


def test_replay_memory_forgets_after_its_ttl() -> None:
    """A remembered key is forgotten ttl seconds later, and the oldest go first past max_keys."""
    now = [0.0]
    memory = ReplayMemory(ttl=10.0, max_keys=3, clock=lambda: now[0])
    memory.add(b"a")
    now[0] = 5.0
    memory.add(b"b")
    assert b"a" in memory
    now[0] = 10.0
    assert b"a" not in memory
    assert b"b" in memory
    memory.add(b"c")  # expires "a" from storage too
    assert len(memory) == 2
    memory.add(b"d")
    memory.add(b"e")
    assert len(memory) == 3
    assert b"b" not in memory
    assert {b"c", b"d", b"e"} == {k for k in (b"b", b"c", b"d", b"e") if k in memory}
