"""RedisJournal when Redis fails: unreachable, a lost reply, a crash with AOF, a restart.

Each test has its own redis-server (or a proxy in front of one), which it
stops, kills or restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import thanx_async as ta
from tests.redis.journal_helpers import JOB, PART, Proxy, abandon, admit_new, item, unique_name
from tests.redis_support import AOF_ALWAYS, RedisServer
from thanx_async._journal_format import Existing, Recorded
from thanx_async.redis import RedisJournal


@pytest.fixture
def aof_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server that fsyncs every write to its AOF before answering."""
    server = RedisServer(tmp_path, extra_args=AOF_ALWAYS)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_an_unreachable_redis_fails_operations_typed_within_the_bound(
    own_redis_server: RedisServer,
) -> None:
    """Redis down: a write fails with JournalError naming the journal (no password) in time."""
    url = own_redis_server.url.replace("redis://", "redis://:s3cret-pw@")
    await _require_password(own_redis_server, "s3cret-pw")
    journal = RedisJournal(url, name="rewards", unreachable_timeout=0.5)
    await journal.open()
    (x,) = await admit_new(journal, [item("x@example.com")])
    own_redis_server.stop()
    started = time.monotonic()
    admit = journal.admit_many([item("y@example.com")])
    seal = journal.seal(PART, "key-1", b"body", [x])
    for future in (admit, seal):  # the whole group fails, each future with the error
        with pytest.raises(ta.JournalError, match=r"journal 'rewards' \(Redis\): unreachable") as e:
            await future
        assert "s3cret" not in str(e.value)
    assert time.monotonic() - started <= 0.5 + 1.0
    assert "s3cret" not in repr(journal)
    await journal.aclose()  # cannot release: logged, not raised


async def test_opening_against_an_unreachable_redis_fails_within_the_bound(
    own_redis_server: RedisServer,
) -> None:
    """open() with Redis down raises JournalError after unreachable_timeout; nothing stays open."""
    own_redis_server.stop()
    journal = RedisJournal(own_redis_server.url, name="rewards", unreachable_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(ta.JournalError, match="unreachable"):
        await journal.open()
    assert time.monotonic() - started <= 0.3 + 1.0
    with pytest.raises(RuntimeError, match="not open"):
        journal.admit_many([item("x@example.com")])


async def test_a_wrong_password_fails_at_once(own_redis_server: RedisServer) -> None:
    """Redis refusing the credentials is not waited out: JournalError at once, no password shown."""
    await _require_password(own_redis_server, "right-pw")
    url = own_redis_server.url.replace("redis://", "redis://:wrong-pw@")
    journal = RedisJournal(url, name="rewards", unreachable_timeout=30.0)
    started = time.monotonic()
    with pytest.raises(ta.JournalError, match="refused this client") as caught:
        await journal.open()
    assert time.monotonic() - started < 2.0
    assert "pw" not in str(caught.value)


async def test_a_retry_after_a_lost_reply_does_not_run_twice(redis_server: RedisServer) -> None:
    """Redis ran an admission and a seal, their replies were lost: retries get the same answers."""
    proxy = Proxy(redis_server.port)
    await proxy.start()
    name = unique_name()
    journal = RedisJournal(proxy.url, name=name)
    other = RedisJournal(redis_server.url, name=name)
    await journal.open()
    await other.open()
    try:
        proxy.swallow_next_reply()
        (x,) = await admit_new(journal, [item("x@example.com")])  # not Existing(its own item)
        assert proxy.swallowed.is_set()
        proxy.swallow_next_reply()
        batch = await journal.seal(PART, "key-1", b"body", [x])  # not LeaseLostError
        assert proxy.swallowed.is_set()
        assert await other.admit_many([item("x@example.com")]) == [Existing(x)]
        await journal.finished(batch, JOB)
        assert await other.admit_many([item("x@example.com")]) == [Recorded(batch, JOB, 0, 1)]
    finally:
        await journal.aclose()
        await other.aclose()
        await proxy.aclose()


async def test_redis_restarted_empty_is_used_again(own_redis_server: RedisServer) -> None:
    """After Redis lost everything (scripts too), operations work again; no id is given twice."""
    journal = RedisJournal(own_redis_server.url, name="rewards", unreachable_timeout=0.5)
    await journal.open()
    ids = await admit_new(journal, [item(f"{n}@example.com") for n in range(1000)])
    batch = await journal.seal(PART, "key-1", b"body", ids)
    own_redis_server.restart()  # no persistence: empty, no scripts loaded
    (again,) = await admit_new(journal, [item("0@example.com")])
    assert again > max(ids)
    assert await journal.seal(PART, "key-2", b"body", [again]) > batch
    await journal.aclose()


@pytest.mark.slow
async def test_redis_killed_with_appendfsync_always_loses_nothing_acknowledged(
    aof_redis_server: RedisServer,
) -> None:
    """SIGKILL Redis mid-stream: every acknowledged admission, seal and end survives the restart."""
    name = unique_name()
    journal = RedisJournal(
        aof_redis_server.url, name=name, instance="pod-0", unreachable_timeout=0.5
    )
    await journal.open()
    acked: list[int] = []
    sealed: dict[int, list[int]] = {}
    batch_names: dict[int, int] = {}
    finished: dict[int, tuple[int, int]] = {}  # item -> (batch, position)

    async def stream() -> None:
        for n in range(100_000):
            ids = await admit_new(journal, [item(f"{n}-{i}@example.com") for i in range(3)])
            acked.extend(ids)
            if n % 3 == 1:
                batch = await journal.seal(PART, f"key-{n}", f"body-{n}".encode(), ids)
                sealed[batch] = ids
                batch_names[batch] = n
                if n % 2:
                    await journal.finished(batch, JOB)
                    finished.update({i: (batch, p) for p, i in enumerate(ids)})
                    del sealed[batch]

    task = asyncio.create_task(stream())
    while len(acked) < 600:  # noqa: ASYNC110 - the stream has no event for it
        await asyncio.sleep(0.01)
    aof_redis_server.kill()
    with pytest.raises(ta.JournalError):
        await task
    aof_redis_server.start()  # reloads the AOF
    await abandon(journal)
    resumed = RedisJournal(aof_redis_server.url, name=name, instance="pod-0")
    recovered = await resumed.open()
    unsealed = {i.row_id for i in recovered.unsealed}
    in_batches = {b.batch_id: [i.row_id for i in b.items] for b in recovered.batches}
    bodies = {b.batch_id: b.body for b in recovered.batches}
    finals = {b.batch_id: b.final for b in recovered.batches}

    async def ended(item_id: int) -> Recorded | None:
        return await asyncio.wait_for(resumed.watch(item_id), 2)

    # Every acknowledged write is there. The write in flight at the kill may have
    # landed without its answer: then its items are one step further, never behind.
    for batch, ids in sealed.items():
        if batch in in_batches and finals[batch] is not None:
            # its end landed, unacknowledged: kept (unreported) with the final job
            assert in_batches[batch] == ids
            assert finals[batch] == JOB
        elif batch in in_batches:
            assert in_batches[batch] == ids
            assert bodies[batch] == f"body-{batch_names[batch]}".encode()
        else:  # its end landed, unacknowledged
            assert await ended(ids[0]) == Recorded(batch, JOB, 0, 3)
    for item_id, (batch, position) in finished.items():
        assert await ended(item_id) == Recorded(batch, JOB, position, 3)
    placed = unsealed | {i for ids in in_batches.values() for i in ids}
    for item_id in set(acked) - placed - set(finished):
        assert isinstance(await ended(item_id), Recorded)  # sealed and finished, unacknowledged
    (fresh,) = await admit_new(resumed, [item("fresh@example.com")])
    assert fresh > max(acked)  # the id counter survived
    await resumed.aclose()


async def test_watch_resumes_after_redis_restarts(aof_redis_server: RedisServer) -> None:
    """A watcher's subscription comes back after a Redis crash; an end after it is seen."""
    name = unique_name()
    owner = RedisJournal(aof_redis_server.url, name=name)
    watcher = RedisJournal(aof_redis_server.url, name=name)
    await owner.open()
    await watcher.open()
    (x,) = await admit_new(owner, [item("x@example.com")])
    batch = await owner.seal(PART, "key-1", b"body", [x])
    watched = watcher.watch(x)
    await asyncio.sleep(0.05)
    aof_redis_server.kill()
    aof_redis_server.start()
    await owner.finished(batch, JOB)
    assert await asyncio.wait_for(watched, 5) == Recorded(batch, JOB, 0, 1)
    await owner.aclose()
    await watcher.aclose()


async def test_the_heartbeat_outlives_an_outage(
    aof_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis down for a while: the heartbeat logs it and keeps trying; the lease is held again."""
    name = unique_name()
    journal = RedisJournal(aof_redis_server.url, name=name, lease=0.6, unreachable_timeout=0.1)
    await journal.open()
    await admit_new(journal, [item("x@example.com")])
    with caplog.at_level(logging.WARNING, logger="thanx_async.journal"):
        aof_redis_server.stop()
        await asyncio.sleep(0.5)
        aof_redis_server.start()
        await asyncio.sleep(0.5)
    assert "adopted by another if it lasts" in caplog.text
    assert journal._lease.task is not None
    assert not journal._lease.task.done()
    other = RedisJournal(aof_redis_server.url, name=name)
    assert (await other.open()).unsealed == []  # the heartbeat renewed the lease
    await other.aclose()
    await journal.aclose()


async def _require_password(server: RedisServer, password: str) -> None:
    import redis.asyncio

    admin = redis.asyncio.Redis.from_url(server.url)
    with contextlib.suppress(Exception):
        await admin.config_set("requirepass", password)
    await admin.aclose()


async def test_a_full_redis_refuses_admissions_typed(own_redis_server: RedisServer) -> None:
    """Redis at maxmemory (noeviction): admissions fail with JournalError, then work with room."""
    import redis.asyncio

    async def fill() -> None:
        for n in range(1000):
            await journal.admit_many([item(f"{n}-{i}@example.com") for i in range(100)])

    journal = RedisJournal(own_redis_server.url, name="rewards")
    await journal.open()
    admin = redis.asyncio.Redis.from_url(own_redis_server.url)
    used = (await admin.info("memory"))["used_memory"]
    await admin.config_set("maxmemory", used + 100_000)
    try:
        with pytest.raises(ta.JournalError, match="maxmemory"):
            await fill()
    finally:
        await admin.config_set("maxmemory", 0)
        await admin.aclose()
    (fresh,) = await admit_new(journal, [item("after@example.com")])
    assert fresh > 0
    await journal.aclose()
