"""RedisJournal across processes: one issuance per key, and watching another process's items.

"Processes" are RedisJournal objects with their own connections (and, in the
last tests, real child processes); they share one real redis-server.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio

import thanx_async as ta
from tests.redis.journal_helpers import (
    JOB,
    PART,
    Proxy,
    admit_new,
    item,
    unique_name,
)
from tests.redis_support import RedisServer
from thanx_async._journal_format import Existing, Recorded
from thanx_async.redis import RedisJournal

CHILD = Path(__file__).with_name("journal_child.py")


@pytest.fixture
async def pair(redis_server: RedisServer) -> AsyncIterator[tuple[RedisJournal, RedisJournal]]:
    """Two open journals on one ledger, each with its own connection, as two processes."""
    name = unique_name()
    a = RedisJournal(redis_server.url, name=name)
    b = RedisJournal(redis_server.url, name=name)
    await a.open()
    await b.open()
    yield a, b
    await a.aclose()
    await b.aclose()


async def test_a_key_admitted_by_one_process_is_existing_in_another(
    pair: tuple[RedisJournal, RedisJournal],
) -> None:
    """A key unfinished in one process answers Existing(its id) in the other, sealed or not."""
    a, b = pair
    (x, y) = await admit_new(a, [item("x@example.com"), item("y@example.com")])
    assert await b.admit_many([item("x@example.com")]) == [Existing(x)]
    await a.seal(PART, "key-1", b"body", [y])
    y_again, z = await b.admit_many([item("y@example.com"), item("z@example.com")])
    assert y_again == Existing(y)
    assert isinstance(z, int)
    assert z > y  # ids are fleet-wide
    assert await a.admit_many([item("z@example.com")]) == [Existing(z)]


async def test_concurrent_admissions_of_the_same_keys_issue_each_once(
    pair: tuple[RedisJournal, RedisJournal],
) -> None:
    """Two processes admitting the same 300 keys at once: one new id per key, Existing elsewhere."""
    a, b = pair
    keys = [item(f"{n}@example.com") for n in range(300)]
    answers_a, answers_b = await asyncio.gather(
        *(
            asyncio.gather(*(j.admit_many(keys[i : i + 10]) for i in range(0, 300, 10)))
            for j in (a, b)
        )
    )
    flat_a = [x for group in answers_a for x in group]
    flat_b = [x for group in answers_b for x in group]
    for got_a, got_b in zip(flat_a, flat_b, strict=True):
        new = [x for x in (got_a, got_b) if isinstance(x, int)]
        assert len(new) == 1, (got_a, got_b)
        assert Existing(new[0]) in (got_a, got_b)


async def test_a_result_recorded_by_one_process_answers_in_another(
    pair: tuple[RedisJournal, RedisJournal],
) -> None:
    """After one process finished a batch, the other gets Recorded for its keys."""
    a, b = pair
    ids = await admit_new(a, [item(f"{n}@example.com") for n in range(3)])
    batch = await a.seal(PART, "key-1", b"body", ids)
    await a.finished(batch, JOB)
    assert await b.admit_many([item("1@example.com")]) == [Recorded(batch, JOB, 1, 3)]


async def test_watch_resolves_when_another_process_finishes(
    pair: tuple[RedisJournal, RedisJournal],
) -> None:
    """watch() in one process resolves to Recorded when the owner finishes the batch."""
    a, b = pair
    ids = await admit_new(a, [item(f"{n}@example.com") for n in range(3)])
    watched = b.watch(ids[2])
    batch = await a.seal(PART, "key-1", b"body", ids)
    await asyncio.sleep(0.05)
    assert not watched.done()
    await a.accepted(batch, "job-1")
    await a.finished(batch, JOB)
    assert await asyncio.wait_for(watched, 2) == Recorded(batch, JOB, 2, 3)


async def test_watch_resolves_none_when_the_item_is_forgotten(
    pair: tuple[RedisJournal, RedisJournal],
) -> None:
    """watch() resolves to None when the owner forgets the item, or drops it in a split."""
    a, b = pair
    ids = await admit_new(a, [item(f"{n}@example.com") for n in range(4)])
    forgotten, dropped = b.watch(ids[0]), b.watch(ids[3])
    kept = b.watch(ids[1])
    await a.forget(ids[:1])
    assert await asyncio.wait_for(forgotten, 2) is None
    batch = await a.seal(PART, "key-1", b"body", ids[1:])
    (part,) = await a.split(batch, PART, [("key-2", b"part", ids[1:3])], dropped=ids[3:])
    assert await asyncio.wait_for(dropped, 2) is None
    assert not kept.done()
    await a.finished(part, JOB)
    assert await asyncio.wait_for(kept, 2) == Recorded(part, JOB, 0, 2)


async def test_watch_resolves_at_once_when_the_item_already_ended(
    pair: tuple[RedisJournal, RedisJournal],
) -> None:
    """A finished, a forgotten and an unknown item: watch() resolves after one round trip."""
    a, b = pair
    ids = await admit_new(a, [item("done@example.com"), item("gone@example.com")])
    batch = await a.seal(PART, "key-1", b"body", ids[:1])
    await a.finished(batch, JOB)
    await a.forget(ids[1:])
    results = await asyncio.wait_for(
        asyncio.gather(b.watch(ids[0]), b.watch(ids[1]), b.watch(10**9)), 1
    )
    assert list(results) == [Recorded(batch, JOB, 0, 1), None, None]


async def test_thousands_of_watchers_share_one_subscription(
    pair: tuple[RedisJournal, RedisJournal], redis_server: RedisServer
) -> None:
    """5,000 watched items across 5 batches all resolve right; each process subscribes once."""
    a, b = pair
    batches = []
    for n in range(5):
        ids = await admit_new(a, [item(f"{n}-{i}@example.com") for i in range(1000)])
        batches.append((await a.seal(PART, f"key-{n}", b"body", ids), ids))
    watched = {i: b.watch(i) for _, ids in batches for i in ids}
    admin = redis.asyncio.Redis.from_url(redis_server.url)
    ((_, subscribers),) = await admin.pubsub_numsub(f"thanx_async:journal:{{{a.name}}}:events")
    await admin.aclose()
    assert subscribers == 2  # a and b, whatever they watch
    for batch, _ in batches:
        await a.finished(batch, JOB)
    await asyncio.wait_for(asyncio.gather(*watched.values()), 5)
    for batch, ids in batches:
        for position, item_id in enumerate(ids):
            assert watched[item_id].result() == Recorded(batch, JOB, position, 1000)
    assert len(b._watchers) == 0  # nothing left behind


async def test_a_cancelled_watch_leaves_nothing_behind(
    pair: tuple[RedisJournal, RedisJournal],
) -> None:
    """Cancelling a watch drops its registration; another watcher of the item still resolves."""
    a, b = pair
    (x,) = await admit_new(a, [item("x@example.com")])
    first, second = b.watch(x), b.watch(x)
    first.cancel()
    await asyncio.sleep(0)
    batch = await a.seal(PART, "key-1", b"body", [x])
    await a.finished(batch, JOB)
    assert await asyncio.wait_for(second, 2) == Recorded(batch, JOB, 0, 1)
    assert len(b._watchers) == 0


async def test_watch_survives_a_lost_connection(redis_server: RedisServer) -> None:
    """An end published while the watcher's connection was down is still seen once it is back."""
    proxy = Proxy(redis_server.port)
    await proxy.start()
    name = unique_name()
    owner = RedisJournal(redis_server.url, name=name)
    watcher = RedisJournal(proxy.url, name=name)
    await owner.open()
    await watcher.open()
    try:
        (x,) = await admit_new(owner, [item("x@example.com")])
        watched = watcher.watch(x)
        batch = await owner.seal(PART, "key-1", b"body", [x])
        await asyncio.sleep(0.05)  # the watch's first check found it unfinished
        assert not watched.done()
        proxy.cut()
        await asyncio.sleep(0.2)
        await owner.finished(batch, JOB)  # published while the watcher cannot hear it
        await asyncio.sleep(0.2)
        assert not watched.done()
        proxy.restore()
        assert await asyncio.wait_for(watched, 5) == Recorded(batch, JOB, 0, 1)
    finally:
        await owner.aclose()
        await watcher.aclose()
        await proxy.aclose()


async def test_watchers_fail_typed_when_the_journal_closes(
    pair: tuple[RedisJournal, RedisJournal],
) -> None:
    """A watch still waiting when its journal closes raises JournalError; none stays pending."""
    a, b = pair
    (x,) = await admit_new(a, [item("x@example.com")])
    watched = b.watch(x)
    await b.aclose()
    with pytest.raises(ta.JournalError, match="closed while the item was watched"):
        await watched
    with pytest.raises(RuntimeError, match="not open"):
        b.watch(x)


# -- real processes -------------------------------------------------------------


def spawn(url: str, name: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), url, name, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def ask(child: subprocess.Popen[str], command: object) -> object:
    """Send one command line to a child; its one-line JSON answer."""
    assert child.stdin is not None
    assert child.stdout is not None
    child.stdin.write(json.dumps(command) + "\n")
    child.stdin.flush()
    line = child.stdout.readline()
    assert line, child.stderr.read() if child.stderr else "no answer"
    return json.loads(line)


@pytest.mark.slow
def test_processes_admitting_the_same_keys_issue_each_once(redis_server: RedisServer) -> None:
    """Three real processes admit the same 500 keys at once: each key is new in exactly one."""
    name = unique_name()
    children = [spawn(redis_server.url, name, "15") for _ in range(3)]
    try:
        for child in children:
            assert ask(child, {"ping": True}) == "ready"
        keys = [f"{n}@example.com" for n in range(500)]
        assert children[0].stdin is not None
        for child in children:  # all three start before any answers
            assert child.stdin is not None
            child.stdin.write(json.dumps({"admit_each": keys}) + "\n")
            child.stdin.flush()
        results = []
        for child in children:
            assert child.stdout is not None
            results.append(json.loads(child.stdout.readline()))
    finally:
        for child in children:
            child.kill()
            child.communicate()
    for answers in zip(*results, strict=True):
        new = [a["new"] for a in answers if "new" in a]
        assert len(new) == 1, answers
        assert all(a == {"new": new[0]} or a == {"existing": new[0]} for a in answers)


@pytest.mark.slow
async def test_the_work_of_a_killed_process_is_adopted_after_its_lease(
    redis_server: RedisServer,
) -> None:
    """SIGKILLed with items and a sealed batch: kept until its lease ends, then adopted exactly."""
    name = unique_name()
    child = spawn(redis_server.url, name, "1.0")
    try:
        assert ask(child, {"ping": True}) == "ready"
        answer = ask(child, {"admit": ["a@example.com", "b@example.com", "c@example.com"]})
        assert isinstance(answer, list)
        ids: list[int] = answer
        body = "caf\u00e9 \u2603"
        batch = ask(child, {"seal": {"ids": ids[1:], "key": "key-1", "body": body}})
        assert isinstance(batch, int)
        ask(child, {"accepted": {"batch": batch, "job": "job-9"}})
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        child.kill()
        child.communicate()
    survivor = RedisJournal(redis_server.url, name=name)
    early = await survivor.open()
    assert (early.unsealed, early.batches) == ([], [])  # its lease still runs
    # Its keys are Existing for the survivor meanwhile: nobody issues them twice.
    assert await survivor.admit_many([item("a@example.com")]) == [Existing(ids[0])]
    await asyncio.sleep(1.1)
    adopted = await survivor.adopt()
    assert [i.row_id for i in adopted.unsealed] == ids[:1]
    (recovered,) = adopted.batches
    assert (recovered.batch_id, recovered.key, recovered.job_id) == (batch, "key-1", "job-9")
    assert recovered.body == body.encode()
    assert [i.row_id for i in recovered.items] == ids[1:]
    assert [i.value for i in recovered.items] == ["b@example.com", "c@example.com"]
    assert (await survivor.adopt()).batches == []  # adopted once
    # Now the survivor's own: it can seal the adopted item.
    assert await survivor.seal(PART, "key-2", b"b", ids[:1]) > batch
    await survivor.aclose()
