"""RedisJournal ownership: leases, adoption by one process, fencing, stable instances, expiry.

A "dead" process is a journal abandoned in-process (no heartbeat, no release,
connection closed), with a short lease; the real SIGKILL case is in
test_journal_fleet.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio

from tests.redis.journal_helpers import (
    JOB,
    PART,
    abandon,
    admit_new,
    item,
    stop_heartbeat,
    unique_name,
)
from tests.redis_support import RedisServer
from thanx_async._journal_format import Existing, Recorded, Recovered
from thanx_async._journal_protocol import LeaseLostError
from thanx_async.redis import RedisJournal

LEASE = 0.3


@pytest.fixture
async def journals(redis_server: RedisServer) -> AsyncIterator[Callable[..., RedisJournal]]:
    """A factory of journals on one new ledger; those still open are closed at the end."""
    name = unique_name()
    made: list[RedisJournal] = []

    def make(**options: object) -> RedisJournal:
        journal = RedisJournal(redis_server.url, name=name, **options)  # type: ignore[arg-type]
        made.append(journal)
        return journal

    yield make
    for journal in made:
        await journal.aclose()


async def dead_process(
    make: Callable[..., RedisJournal], tag: str, lease: float = LEASE
) -> tuple[list[int], int]:
    """A process that admitted 3 items, sealed 2 of them, then died: (unsealed ids, batch id).

    Tests open their adopters first: an open() after the lease expired adopts too.
    """
    journal = make(lease=lease)
    await journal.open()
    ids = await admit_new(journal, [item(f"{tag}-{n}@example.com") for n in range(3)])
    batch = await journal.seal(PART, f"key-{tag}", f"body-{tag}".encode(), ids[1:])
    await abandon(journal)
    return ids[:1], batch


async def test_work_is_adopted_only_once_its_lease_expired(
    journals: Callable[..., RedisJournal],
) -> None:
    """A live lease keeps its work; once expired, adopt() returns it, with exact bytes."""
    unsealed, batch = await dead_process(journals, "a", lease=1.0)
    adopter = journals()
    assert await adopter.open() == Recovered([], [], [])  # its lease still runs
    await asyncio.sleep(1.1)
    adopted = await adopter.adopt()
    assert [i.row_id for i in adopted.unsealed] == unsealed
    assert [(b.batch_id, b.key, b.body) for b in adopted.batches] == [(batch, "key-a", b"body-a")]
    assert await adopter.adopt() == Recovered([], [], [])


async def test_the_heartbeat_keeps_a_live_process_s_work(
    journals: Callable[..., RedisJournal],
) -> None:
    """A process whose heartbeat runs keeps its work well past one lease length."""
    owner = journals(lease=0.6)
    await owner.open()
    await admit_new(owner, [item("x@example.com")])
    other = journals()
    await other.open()
    await asyncio.sleep(0.6 * 3)
    assert await other.adopt() == Recovered([], [], [])


async def test_exactly_one_of_many_concurrent_adopters_gets_each_process_s_work(
    journals: Callable[..., RedisJournal],
) -> None:
    """8 processes adopt 3 dead ones' work at once: every item and batch is adopted exactly once."""
    adopters = [journals() for _ in range(8)]
    await asyncio.gather(*(a.open() for a in adopters))
    dead = [await dead_process(journals, tag) for tag in "abc"]
    await asyncio.sleep(LEASE + 0.1)
    results = await asyncio.gather(*(a.adopt() for a in adopters))
    items = Counter(i.row_id for r in results for i in r.unsealed)
    batches = Counter(b.batch_id for r in results for b in r.batches)
    batch_items = Counter(i.row_id for r in results for b in r.batches for i in b.items)
    assert items == Counter(i for unsealed, _ in dead for i in unsealed)
    assert batches == Counter(batch for _, batch in dead)
    assert sum(batch_items.values()) == 6
    assert set(batch_items.values()) == {1}
    # Each dead process's work went to one adopter, whole.
    for unsealed, batch in dead:
        owners = [n for n, r in enumerate(results) if unsealed[0] in {i.row_id for i in r.unsealed}]
        assert [
            n for n, r in enumerate(results) if batch in {b.batch_id for b in r.batches}
        ] == owners


async def test_a_process_whose_work_was_adopted_is_fenced(
    journals: Callable[..., RedisJournal],
) -> None:
    """After adoption, the old owner's seal and split are refused, its forget ignored."""
    adopter = journals()
    await adopter.open()
    slow = journals(lease=LEASE)
    await slow.open()
    ids = await admit_new(slow, [item(f"{n}@example.com") for n in range(4)])
    batch = await slow.seal(PART, "key-1", b"body", ids[2:])
    await stop_heartbeat(slow)  # alive, but silent: a long pause
    await asyncio.sleep(LEASE + 0.1)
    adopted = await adopter.adopt()
    assert [i.row_id for i in adopted.unsealed] == ids[:2]
    with pytest.raises(LeaseLostError) as lost:
        await slow.seal(PART, "key-2", b"late", ids[:2])
    assert lost.value.item_ids == ids[:2]
    with pytest.raises(LeaseLostError):
        await slow.split(batch, PART, [("key-3", b"half", ids[2:3])], dropped=ids[3:])
    await slow.forget(ids[:2])  # ignored: no longer its own
    await slow.forget(ids[2:], batch_id=batch)
    assert await adopter.admit_many([item("0@example.com")]) == [Existing(ids[0])]
    # The adopter carries on with all of it.
    own = await adopter.seal(PART, "key-4", b"adopted", ids[:2])
    await adopter.accepted(batch, "job-1")
    # The old owner's late records of the same job are harmless (the first end stands).
    await slow.accepted(batch, "job-1")
    await slow.finished(batch, JOB)
    await adopter.finished(batch, b'{"different": true}')
    assert await adopter.admit_many([item("3@example.com")]) == [Recorded(batch, JOB, 1, 2)]
    # New work of the old owner is its own again (it took a lease anew).
    (fresh,) = await admit_new(slow, [item("new@example.com")])
    assert await slow.seal(PART, "key-5", b"new", [fresh]) > own


async def test_a_seal_with_some_adopted_items_writes_nothing(
    journals: Callable[..., RedisJournal],
) -> None:
    """LeaseLostError names only the adopted items; the others are still sealable."""
    adopter = journals()
    await adopter.open()
    slow = journals(lease=LEASE)
    await slow.open()
    old = await admit_new(slow, [item("old@example.com")])
    await stop_heartbeat(slow)
    await asyncio.sleep(LEASE + 0.1)
    await adopter.adopt()
    new = await admit_new(slow, [item("new@example.com")])
    with pytest.raises(LeaseLostError) as lost:
        await slow.seal(PART, "key-1", b"mixed", old + new)
    assert lost.value.item_ids == old
    assert await slow.seal(PART, "key-2", b"mine", new) > 0


async def test_the_heartbeat_notices_a_lost_lease(
    journals: Callable[..., RedisJournal],
    caplog: pytest.LogCaptureFixture,
    redis_server: RedisServer,
) -> None:
    """A heartbeat that finds its lease taken logs it, and holds a new one."""
    adopter = journals()
    await adopter.open()
    slow = journals(lease=LEASE)
    await slow.open()
    await admit_new(slow, [item("x@example.com")])
    await stop_heartbeat(slow)
    await asyncio.sleep(LEASE + 0.1)
    assert len((await adopter.adopt()).unsealed) == 1
    slow._lease.start()  # its heartbeat runs again
    with caplog.at_level(logging.WARNING, logger="thanx_async.journal"):
        await asyncio.sleep(LEASE / 3 + 0.1)
    assert "its work was adopted by another process" in caplog.text
    admin = redis.asyncio.Redis.from_url(redis_server.url)
    deadline = await admin.zscore(f"thanx_async:journal:{{{slow.name}}}:leases", slow.token)
    seconds, micros = await admin.time()
    await admin.aclose()
    assert deadline is not None
    assert deadline > seconds * 1000 + micros // 1000  # it holds a lease again


async def test_a_stable_instance_resumes_its_own_work_at_once(
    journals: Callable[..., RedisJournal],
) -> None:
    """Reopened with the same instance name, a process gets its work back without waiting."""
    first = journals(instance="rewards-0", lease=30.0)
    await first.open()
    ids = await admit_new(first, [item("a@example.com"), item("b@example.com")])
    batch = await first.seal(PART, "key-1", b"body", ids[1:])
    await abandon(first)  # crashed; its 30 s lease still runs
    other = journals()
    assert await other.open() == Recovered([], [], [])
    second = journals(instance="rewards-0", lease=30.0)
    resumed = await second.open()
    assert [i.row_id for i in resumed.unsealed] == ids[:1]
    assert [b.batch_id for b in resumed.batches] == [batch]
    assert (first.token, second.token) == ("rewards-0#1", "rewards-0#2")
    assert await other.adopt() == Recovered([], [], [])


async def test_an_earlier_incarnation_still_running_is_fenced(
    journals: Callable[..., RedisJournal],
) -> None:
    """Two incarnations of one instance: the new one takes the work, the old one's seals fail."""
    first = journals(instance="rewards-0")
    await first.open()
    ids = await admit_new(first, [item("a@example.com")])
    second = journals(instance="rewards-0")
    assert [i.row_id for i in (await second.open()).unsealed] == ids
    with pytest.raises(LeaseLostError):
        await first.seal(PART, "key-1", b"body", ids)
    assert await second.seal(PART, "key-1", b"body", ids) > 0


async def test_a_clean_close_releases_the_lease(
    journals: Callable[..., RedisJournal], redis_server: RedisServer
) -> None:
    """Closed with unfinished work: adopted at once. Closed with none: no lease left behind."""
    busy, idle = journals(lease=30.0), journals(lease=30.0)
    await busy.open()
    await idle.open()
    ids = await admit_new(busy, [item("a@example.com")])
    await busy.aclose()
    await idle.aclose()
    adopter = journals()
    assert [i.row_id for i in (await adopter.open()).unsealed] == ids  # open() adopts
    admin = redis.asyncio.Redis.from_url(redis_server.url)
    leases = await admin.zrange(f"thanx_async:journal:{{{busy.name}}}:leases", 0, -1)
    await admin.aclose()
    assert leases == [adopter.token.encode()]


async def test_finished_work_expires_after_the_dedupe_window(
    journals: Callable[..., RedisJournal], redis_server: RedisServer
) -> None:
    """finished() expires items and keys; reported() then the batch (and drops its item list)."""
    window = 1.5  # the checks below must happen within it, even on a slow machine
    journal = journals(dedupe_window=window)
    await journal.open()
    ids = await admit_new(journal, [item("a@example.com"), item("b@example.com")])
    batch = await journal.seal(PART, "key-1", b"body", ids[:1])
    await journal.finished(batch, JOB)
    admin = redis.asyncio.Redis.from_url(redis_server.url)
    prefix = f"thanx_async:journal:{{{journal.name}}}:"

    def kind(key: str) -> str:
        return key.removeprefix(prefix).split(":")[0]

    async def ttls() -> dict[str, int]:
        found = [k.decode() async for k in admin.scan_iter(match=prefix + "*")]
        return {k: await admin.pttl(k) for k in found}

    try:
        unreported = await ttls()
        expiring = {k: ttl for k, ttl in unreported.items() if ttl > 0}
        # Its item and its key expire within the window, and the recent replies
        # kept for retries (r:) within an hour; the batch and its item list wait
        # for reported(); nothing else expires.
        assert sorted(kind(k) for k in expiring if kind(k) != "r") == ["i", "k"]
        assert all(0 < ttl <= window * 1000 for k, ttl in expiring.items() if kind(k) != "r")
        assert all(0 < ttl <= 3_600_000 for k, ttl in expiring.items() if kind(k) == "r")
        assert {kind(k): ttl for k, ttl in unreported.items() if kind(k) in {"b", "bi", "u"}} == {
            "b": -1,
            "bi": -1,
            "u": -1,  # the unsealed item does not expire
        }
        await journal.reported(batch)
        reported = await ttls()
        assert "bi" not in {kind(k) for k in reported}
        # It expires a window after it finished (gone already if a slow machine took longer).
        assert all(0 < ttl <= window * 1000 for k, ttl in reported.items() if kind(k) == "b")
        await asyncio.sleep(window + 0.1)
        left = {kind(k.decode()) async for k in admin.scan_iter(prefix + "*")}
    finally:
        await admin.aclose()
    assert {"b", "bi"}.isdisjoint(left)
    assert "k" in left  # the unsealed item's key index entry
    (again,) = await admit_new(journal, [item("a@example.com")])
    assert again not in ids
    assert await journal.admit_many([item("b@example.com")]) == [Existing(ids[1])]
