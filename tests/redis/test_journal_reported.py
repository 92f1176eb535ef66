"""RedisJournal's two-step end: a finished batch stays its owner's work until reported.

A process that recorded a batch's end (``finished``) and died before handing
its outcomes over leaves the batch, with its final job and its items in
order, to the one process that adopts its work (or to its own next
incarnation); ``reported`` ends that. A "dead" process is a journal abandoned
in-process (see journal_helpers.abandon).
"""

from __future__ import annotations

import asyncio
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
from thanx_async._journal_format import Recorded, Recovered, RecoveredBatch
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


def values(batch: RecoveredBatch) -> list[str]:
    return [i.value for i in batch.items]


async def test_a_dead_owner_s_unreported_batch_goes_to_exactly_one_adopter(
    journals: Callable[..., RedisJournal],
) -> None:
    """Of 6 adopters one gets the unreported batch (final, items in order), none a reported one."""
    adopters = [journals() for _ in range(6)]
    await asyncio.gather(*(a.open() for a in adopters))
    owner = journals(lease=LEASE)
    await owner.open()
    ids = await admit_new(owner, [item(f"{n}@example.com") for n in range(5)])
    unreported = await owner.seal(PART, "key-1", b"body-1", [ids[2], ids[0], ids[1]])
    await owner.accepted(unreported, "job-1")
    await owner.finished(unreported, JOB)
    reported = await owner.seal(PART, "key-2", b"body-2", ids[3:4])
    await owner.finished(reported, JOB)
    await owner.reported(reported)
    following = await owner.seal(PART, "key-3", b"body-3", ids[4:])
    await owner.accepted(following, "job-3")
    await abandon(owner)
    await asyncio.sleep(LEASE + 0.1)
    results = await asyncio.gather(*(a.adopt() for a in adopters))
    winners = [r for r in results if r.batches]
    assert len(winners) == 1
    assert [r for r in results if r is not winners[0]] == [Recovered([], [], [])] * 5
    final, followed = winners[0].batches
    assert (final.batch_id, final.job_id, final.final) == (unreported, "job-1", JOB)
    assert [i.row_id for i in final.items] == [ids[2], ids[0], ids[1]]
    assert values(final) == ["2@example.com", "0@example.com", "1@example.com"]
    assert (followed.batch_id, followed.job_id, followed.final) == (following, "job-3", None)
    assert (followed.body, values(followed)) == (b"body-3", ["4@example.com"])


async def test_an_adopter_that_dies_before_reporting_passes_the_batch_on(
    journals: Callable[..., RedisJournal],
) -> None:
    """Adopted unreported, its adopter dies too: the next adopter gets it; reported() ends it."""
    last = journals()
    await last.open()
    owner = journals(lease=LEASE)
    await owner.open()
    ids = await admit_new(owner, [item("a@example.com"), item("b@example.com")])
    batch = await owner.seal(PART, "key-1", b"body", ids)
    await owner.finished(batch, JOB)
    await abandon(owner)
    await asyncio.sleep(LEASE + 0.1)
    first = journals(lease=LEASE)
    (adopted,) = (await first.open()).batches  # open() adopts what is due
    assert (adopted.batch_id, adopted.final) == (batch, JOB)
    await abandon(first)
    await asyncio.sleep(LEASE + 0.1)
    (again,) = (await last.adopt()).batches
    assert (again.batch_id, again.final, [i.row_id for i in again.items]) == (batch, JOB, ids)
    await last.reported(batch)
    await last.aclose()
    assert await journals().open() == Recovered([], [], [])


async def test_a_stable_instance_reopening_gets_its_own_unreported_batches(
    journals: Callable[..., RedisJournal], redis_server: RedisServer
) -> None:
    """The next incarnation gets its finished, unreported batch at once; once reported, no trace."""
    first = journals(instance="rewards-0", lease=30.0)
    await first.open()
    ids = await admit_new(first, [item("a@example.com"), item("b@example.com")])
    batch = await first.seal(PART, "key-1", b"body", [ids[1], ids[0]])
    await first.accepted(batch, "job-1")
    await first.finished(batch, JOB)
    await abandon(first)  # crashed before reporting; its 30 s lease still runs
    other = journals()
    assert await other.open() == Recovered([], [], [])
    second = journals(instance="rewards-0", lease=30.0)
    (resumed,) = (await second.open()).batches
    assert (resumed.batch_id, resumed.job_id, resumed.final) == (batch, "job-1", JOB)
    assert values(resumed) == ["b@example.com", "a@example.com"]
    assert await other.adopt() == Recovered([], [], [])
    await second.reported(batch)
    await second.aclose()
    admin = redis.asyncio.Redis.from_url(redis_server.url)
    leases = await admin.zrange(f"thanx_async:journal:{{{second.name}}}:leases", 0, -1)
    await admin.aclose()
    assert leases == [other.token.encode()]  # nothing left to adopt: it left no lease
    assert await journals(instance="rewards-0").open() == Recovered([], [], [])


async def test_an_unreported_batch_keeps_its_items_past_the_dedupe_window(
    journals: Callable[..., RedisJournal], redis_server: RedisServer
) -> None:
    """Items and keys expire a window after the end, the unreported batch's item list does not."""
    window = 0.3
    owner = journals(dedupe_window=window)
    await owner.open()
    ids = await admit_new(owner, [item(f"{n}@example.com", f"d{n}") for n in range(3)])
    batch = await owner.seal(PART, "key-1", b"body", [ids[1], ids[2], ids[0]])
    await owner.finished(batch, JOB)
    await asyncio.sleep(window + 0.2)
    # Its result left the window: a resubmission is a new issuance.
    (fresh,) = await admit_new(owner, [item("1@example.com", "d1")])
    assert fresh not in ids
    await owner.forget([fresh])
    await owner.aclose()  # with unreported work: adoptable at once
    adopter = journals(dedupe_window=window)
    (adopted,) = (await adopter.open()).batches
    assert (adopted.batch_id, adopted.final) == (batch, JOB)
    assert [(i.row_id, i.partition, i.type, i.value, i.dedupe_key) for i in adopted.items] == [
        (ids[1], PART, "email", "1@example.com", "d1"),
        (ids[2], PART, "email", "2@example.com", "d2"),
        (ids[0], PART, "email", "0@example.com", "d0"),
    ]
    await adopter.reported(batch)
    admin = redis.asyncio.Redis.from_url(redis_server.url)
    prefix = f"thanx_async:journal:{{{adopter.name}}}:"
    left = await admin.exists(f"{prefix}b:{batch}", f"{prefix}bi:{batch}")
    await admin.aclose()
    assert left == 0  # its window had passed: the batch goes at once, with its item list
    await adopter.aclose()
    assert await journals().open() == Recovered([], [], [])


async def test_reported_from_a_fenced_process_is_harmless(
    journals: Callable[..., RedisJournal],
) -> None:
    """A fenced owner reporting a batch its adopter holds: both report calls succeed, none twice."""
    adopter = journals()
    await adopter.open()
    slow = journals(lease=LEASE)
    await slow.open()
    ids = await admit_new(slow, [item("a@example.com")])
    batch = await slow.seal(PART, "key-1", b"body", ids)
    await slow.finished(batch, JOB)
    await stop_heartbeat(slow)  # alive, but silent: a long pause
    await asyncio.sleep(LEASE + 0.1)
    (adopted,) = (await adopter.adopt()).batches
    assert adopted.final == JOB
    # The old owner handed the outcomes to its own callers and says so.
    await slow.reported(batch)
    await adopter.reported(batch)  # the adopter reported them to on_outcome: a no-op now
    assert await adopter.admit_many([item("a@example.com")]) == [Recorded(batch, JOB, 0, 1)]
    # Once reported, a read of the batch (a claim replayed later) no longer hands it out.
    assert await adopter._lease._read([], [batch]) == ([], [])
    await adopter.aclose()
    assert await journals().open() == Recovered([], [], [])
