"""The journal contract (``JournalBackend``), the same tests for both backends.

Every operation's semantics at the API level, as the batcher relies on them:
admission (new, Existing, Recorded), the dedupe window, seal positions and
exact bytes, split, accepted, finished, reported, forget, per-operation
failures, what a new opener gets back, and a close that writes what is queued.

Each test runs on the SQLite :class:`~thanx_async.Journal` (a fake clock for
the window) and on :class:`~thanx_async.redis.RedisJournal` (a real
redis-server; a short real window). "Reopening" means: the journal is closed
(as a batcher closes it) and a new journal object opens the same store; the
Redis one then adopts the released work, the SQLite one reads its file.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol

import pytest

import thanx_async as ta
from thanx_async._journal_format import Existing, Recorded, Recovered
from thanx_async._journal_protocol import AdmitItem, FleetJournal, JournalBackend

PART = ("merchant-1", "campaign-1", "variant-1")
OTHER = ("merchant-1", "campaign-1", "variant-2")
#: Bytes no text codec would keep: the body must come back exactly.
BODY = b'{"identifiers":["caf\xc3\xa9@example.com"]}\x00\xff\r\n'
JOB = b'{"id":"job-1","state":"completed","summary":{"failure_count":0}}'


def item(
    value: str, dedupe: str | None = None, partition: tuple[str, str, str] = PART
) -> AdmitItem:
    return (partition, "email", value, dedupe)


async def admit_new(journal: JournalBackend, items: list[AdmitItem]) -> list[int]:
    """Admit keys expected to be new; their ids."""
    answers = await journal.admit_many(items)
    ids = [a for a in answers if isinstance(a, int)]
    assert len(ids) == len(items), answers
    return ids


class Store(Protocol):
    """One journal store (a file, or a name on a Redis server) and how to open journals on it."""

    kind: str

    def journal(self, window: float = 60.0) -> JournalBackend: ...

    async def pass_window(self, window: float) -> None: ...


class SqliteStore:
    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.now = 1_000_000.0

    def journal(self, window: float = 60.0) -> JournalBackend:
        return ta.Journal(self.path, synchronous="OFF", dedupe_window=window, clock=self.clock)

    def clock(self) -> float:
        return self.now

    async def pass_window(self, window: float) -> None:
        self.now += window + 1.0


class RedisStore:
    kind = "redis"

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = f"contract-{uuid.uuid4().hex[:12]}"

    def journal(self, window: float = 60.0) -> JournalBackend:
        from thanx_async.redis import RedisJournal

        return RedisJournal(self.url, name=self.name, dedupe_window=window)

    async def pass_window(self, window: float) -> None:
        await asyncio.sleep(window + 0.1)


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """A fresh store of each backend."""
    if request.param == "sqlite":
        return SqliteStore(tmp_path / "journal.db")
    server = request.getfixturevalue("redis_server")
    return RedisStore(server.url)


@asynccontextmanager
async def opened(store: Store, window: float = 60.0) -> AsyncIterator[JournalBackend]:
    """A journal of the store, open for the block, then closed as a batcher closes it."""
    journal = store.journal(window)
    await journal.open()
    try:
        yield journal
    finally:
        await journal.aclose()


async def reopen(store: Store) -> Recovered:
    """What a new opener of the store is given (then closed again)."""
    journal = store.journal()
    recovered = await journal.open()
    await journal.aclose()
    return recovered


def keys(recovered: Recovered) -> tuple[list[str], list[tuple[str, bytes, list[str]]]]:
    """(unsealed values, [(key, body, item values)]) of what was recovered."""
    return (
        [i.value for i in recovered.unsealed],
        [(b.key, b.body, [i.value for i in b.items]) for b in recovered.batches],
    )


async def test_both_backends_implement_the_protocol(store: Store) -> None:
    """Each backend is a JournalBackend; the Redis one is also a FleetJournal, SQLite not."""
    journal = store.journal()
    assert isinstance(journal, JournalBackend)
    assert isinstance(journal, FleetJournal) == (store.kind == "redis")


async def test_admitting_new_keys_gives_distinct_positive_ids(store: Store) -> None:
    """New keys get positive, distinct int ids, in order; a different dedupe key is a new key."""
    async with opened(store) as journal:
        first = await admit_new(journal, [item("a@x.com"), item("b@x.com")])
        second = await admit_new(
            journal, [item("a@x.com", "event-2"), item("a@x.com", partition=OTHER)]
        )
    ids = [*first, *second]
    assert all(isinstance(i, int) and i > 0 for i in ids)
    assert len(set(ids)) == 4


async def test_an_unfinished_key_answers_existing(store: Store) -> None:
    """A key admitted and unfinished (even sealed, even accepted) answers Existing(its id)."""
    async with opened(store) as journal:
        (a, b) = await admit_new(journal, [item("a@x.com"), item("b@x.com", "d")])
        assert await journal.admit_many([item("a@x.com")]) == [Existing(a)]
        batch = await journal.seal(PART, "key-1", BODY, [a, b])
        assert await journal.admit_many([item("b@x.com", "d")]) == [Existing(b)]
        await journal.accepted(batch, "job-1")
        assert await journal.admit_many([item("a@x.com"), item("b@x.com", "d")]) == [
            Existing(a),
            Existing(b),
        ]


async def test_a_key_twice_in_one_admission_is_one_item(store: Store) -> None:
    """The same key twice in one call: a new id, then Existing of that id."""
    async with opened(store) as journal:
        first, second = await journal.admit_many([item("a@x.com"), item("a@x.com")])
    assert isinstance(first, int)
    assert second == Existing(first)


async def test_a_finished_batch_answers_resubmissions_with_its_record(store: Store) -> None:
    """After finished(), each item's key answers Recorded(batch, final JSON, position, size)."""
    async with opened(store) as journal:
        ids = await admit_new(journal, [item(f"{n}@x.com") for n in range(3)])
        batch = await journal.seal(PART, "key-1", BODY, [ids[2], ids[0], ids[1]])
        await journal.finished(batch, JOB)
        answers = await journal.admit_many([item("0@x.com"), item("2@x.com"), item("new@x.com")])
    assert answers[:2] == [Recorded(batch, JOB, 1, 3), Recorded(batch, JOB, 0, 3)]
    assert isinstance(answers[2], int)


async def test_a_result_is_forgotten_after_the_dedupe_window(store: Store) -> None:
    """Within the window a resubmission gets the record; after it, a new id (issued anew)."""
    window = 0.4
    async with opened(store, window) as journal:
        (first,) = await admit_new(journal, [item("a@x.com")])
        batch = await journal.seal(PART, "key-1", BODY, [first])
        await journal.finished(batch, JOB)
        assert await journal.admit_many([item("a@x.com")]) == [Recorded(batch, JOB, 0, 1)]
        await store.pass_window(window)
        (again,) = await journal.admit_many([item("a@x.com")])
    assert isinstance(again, int)
    assert again != first


async def test_a_new_opener_gets_unfinished_work_with_exact_bytes_and_keys(store: Store) -> None:
    """Unsealed items (admission order) and unfinished batches (exact body, key, item order)."""
    async with opened(store) as journal:
        ids = await admit_new(journal, [item(f"{n}@x.com", f"d{n}") for n in range(5)])
        sealed = await journal.seal(PART, "key-1", BODY, [ids[3], ids[1]])
        accepted = await journal.seal(OTHER, "key-2", b"second", [ids[4]])
        await journal.accepted(accepted, "job-2")
    recovered = await reopen(store)
    assert [i.row_id for i in recovered.unsealed] == [ids[0], ids[2]]
    assert recovered.unsealed[0].partition == PART
    assert (recovered.unsealed[0].type, recovered.unsealed[0].dedupe_key) == ("email", "d0")
    first, second = recovered.batches
    assert (first.batch_id, first.partition, first.key, first.body) == (sealed, PART, "key-1", BODY)
    assert first.job_id is None
    assert [i.row_id for i in first.items] == [ids[3], ids[1]]
    assert [i.value for i in first.items] == ["3@x.com", "1@x.com"]
    assert (second.batch_id, second.partition, second.job_id) == (accepted, OTHER, "job-2")
    assert recovered.ratelog == [] or store.kind == "sqlite"


async def test_recovered_work_keeps_its_ids_and_keys(store: Store) -> None:
    """After reopening, an unfinished key still answers Existing with its old id."""
    async with opened(store) as journal:
        (a,) = await admit_new(journal, [item("a@x.com")])
    async with opened(store) as journal:
        assert await journal.admit_many([item("a@x.com")]) == [Existing(a)]


async def test_reported_and_forgotten_work_is_not_recovered(store: Store) -> None:
    """A finished and reported batch, and forgotten items and batches, are not handed over."""
    async with opened(store) as journal:
        ids = await admit_new(journal, [item(f"{n}@x.com") for n in range(4)])
        done = await journal.seal(PART, "key-1", BODY, ids[:1])
        await journal.finished(done, JOB)
        await journal.reported(done)
        refused = await journal.seal(PART, "key-2", BODY, ids[1:3])
        await journal.forget(ids[1:3], batch_id=refused)
        await journal.forget(ids[3:])
    assert keys(await reopen(store)) == ([], [])


async def test_forgotten_items_are_issued_anew(store: Store) -> None:
    """A forgotten key (it issued nothing) is admitted again as a new item."""
    async with opened(store) as journal:
        (a, b) = await admit_new(journal, [item("a@x.com"), item("b@x.com")])
        batch = await journal.seal(PART, "key-1", BODY, [a])
        await journal.forget([a], batch_id=batch)
        await journal.forget([b])
        again = await admit_new(journal, [item("a@x.com"), item("b@x.com")])
    assert all(isinstance(i, int) for i in again)
    assert set(again).isdisjoint({a, b})


async def test_split_replaces_a_batch_by_its_parts_minus_the_dropped(store: Store) -> None:
    """split(): new batches (ids in order) of the given items; dropped items issue anew later."""
    async with opened(store) as journal:
        ids = await admit_new(journal, [item(f"{n}@x.com") for n in range(5)])
        batch = await journal.seal(PART, "key-0", BODY, ids)
        parts = await journal.split(
            batch,
            PART,
            [("key-a", b"a-body", [ids[0], ids[1]]), ("key-b", b"b-body", [ids[3], ids[4]])],
            dropped=[ids[2]],
        )
        assert len(parts) == 2
        assert all(isinstance(p, int) and p > 0 for p in parts)
        assert parts[0] != parts[1]
        # A part's item answers from that part once it finished.
        await journal.finished(parts[1], JOB)
        await journal.reported(parts[1])
        answers = await journal.admit_many([item("4@x.com"), item("2@x.com"), item("0@x.com")])
    assert answers[0] == Recorded(parts[1], JOB, 1, 2)
    assert isinstance(answers[1], int)  # the dropped one issued nothing
    assert answers[2] == Existing(ids[0])
    recovered = await reopen(store)
    assert keys(recovered) == (["2@x.com"], [("key-a", b"a-body", ["0@x.com", "1@x.com"])])
    assert recovered.batches[0].batch_id == parts[0]


async def test_ids_are_never_given_twice(store: Store) -> None:
    """Item and batch ids are unique within the journal, even those of deleted items and batches."""
    async with opened(store) as journal:
        ids = await admit_new(journal, [item("a@x.com"), item("b@x.com")])
        batch = await journal.seal(PART, "key-0", BODY, ids)
        (part,) = await journal.split(batch, PART, [("key-a", b"a", ids[:1])], dropped=ids[1:])
        await journal.forget(ids[:1], batch_id=part)
        again = await admit_new(journal, [item("a@x.com"), item("b@x.com")])
        later = await journal.seal(PART, "key-1", BODY, again)
    assert set(again).isdisjoint(ids)
    assert later not in {batch, part}


async def test_an_accepted_batch_is_recovered_with_its_job(store: Store) -> None:
    """accepted() records the job id a new opener follows."""
    async with opened(store) as journal:
        ids = await admit_new(journal, [item("a@x.com")])
        batch = await journal.seal(PART, "key-1", BODY, ids)
        await journal.accepted(batch, "job-77")
    (recovered,) = (await reopen(store)).batches
    assert (recovered.batch_id, recovered.job_id, recovered.body) == (batch, "job-77", BODY)


async def test_a_malformed_admission_fails_alone(store: Store) -> None:
    """An admission the store cannot record fails with JournalError; the rest of its turn works."""
    async with opened(store) as journal:
        good = journal.admit_many([item("a@x.com")])
        bad = journal.admit_many([(PART, "email", None, None)])  # type: ignore[list-item]
        also_good = journal.admit_many([item("b@x.com")])
        with pytest.raises(ta.JournalError):
            await bad
        (a,) = await good
        (b,) = await also_good
    assert keys(await reopen(store)) == (["a@x.com", "b@x.com"], [])
    assert isinstance(a, int)
    assert isinstance(b, int)


async def test_operations_of_one_turn_are_answered_in_order(store: Store) -> None:
    """Many admissions asked in one loop turn all resolve, each with its own answer."""
    async with opened(store) as journal:
        futures = [journal.admit_many([item(f"{n}@x.com")]) for n in range(50)]
        results = [await f for f in futures]
    ids = [r[0] for r in results]
    assert all(isinstance(i, int) for i in ids)
    assert len(set(ids)) == 50


async def test_aclose_writes_what_is_queued(store: Store) -> None:
    """Writes asked for and not awaited before aclose() are written, and their futures resolve."""
    journal = store.journal()
    await journal.open()
    (a, b) = await admit_new(journal, [item("a@x.com"), item("b@x.com")])
    queued_admit = journal.admit_many([item("c@x.com")])
    queued_seal = journal.seal(PART, "key-1", BODY, [a, b])
    await journal.aclose()
    (c,) = queued_admit.result()
    batch = queued_seal.result()
    recovered = await reopen(store)
    assert [i.row_id for i in recovered.unsealed] == [c]
    assert [(r.batch_id, [i.row_id for i in r.items]) for r in recovered.batches] == [
        (batch, [a, b])
    ]


async def test_finishing_twice_with_the_same_job_is_harmless(store: Store) -> None:
    """A second finished() of a batch (another follower of the same job) changes nothing."""
    async with opened(store) as journal:
        ids = await admit_new(journal, [item("a@x.com")])
        batch = await journal.seal(PART, "key-1", BODY, ids)
        await journal.finished(batch, JOB)
        await journal.finished(batch, JOB)
        assert await journal.admit_many([item("a@x.com")]) == [Recorded(batch, JOB, 0, 1)]


async def test_a_finished_unreported_batch_is_recovered_with_its_final_job(store: Store) -> None:
    """Finished, not reported: a new opener gets the batch, final JSON, job, items in order."""
    async with opened(store) as journal:
        ids = await admit_new(journal, [item(f"{n}@x.com", f"d{n}", OTHER) for n in range(4)])
        batch = await journal.seal(OTHER, "key-1", BODY, [ids[2], ids[0], ids[3]])
        await journal.accepted(batch, "job-1")
        await journal.finished(batch, JOB)
    recovered = await reopen(store)
    assert [i.row_id for i in recovered.unsealed] == [ids[1]]
    (final,) = recovered.batches
    assert (final.batch_id, final.partition, final.job_id, final.final) == (
        batch,
        OTHER,
        "job-1",
        JOB,
    )
    assert [(i.row_id, i.partition, i.type, i.value, i.dedupe_key) for i in final.items] == [
        (ids[2], OTHER, "email", "2@x.com", "d2"),
        (ids[0], OTHER, "email", "0@x.com", "d0"),
        (ids[3], OTHER, "email", "3@x.com", "d3"),
    ]
    # Not reported by that opener either: the next one gets it again.
    (again,) = (await reopen(store)).batches
    assert (again.batch_id, again.final, [i.row_id for i in again.items]) == (
        batch,
        JOB,
        [ids[2], ids[0], ids[3]],
    )


async def test_a_batch_reported_after_recovery_is_not_recovered_again(store: Store) -> None:
    """Finished, recovered with final, reported() by the opener: no longer recovered."""
    async with opened(store) as journal:
        ids = await admit_new(journal, [item("a@x.com"), item("b@x.com")])
        batch = await journal.seal(PART, "key-1", BODY, ids)
        await journal.accepted(batch, "job-1")
        await journal.finished(batch, JOB)
    journal = store.journal()
    recovered = await journal.open()
    try:
        assert [(b.batch_id, b.final) for b in recovered.batches] == [(batch, JOB)]
        await journal.reported(batch)
        await journal.reported(batch)  # idempotent
    finally:
        await journal.aclose()
    assert keys(await reopen(store)) == ([], [])
    async with opened(store) as journal:  # the result still answers within the window
        assert await journal.admit_many([item("b@x.com")]) == [Recorded(batch, JOB, 1, 2)]


async def test_unfinished_batches_have_no_final(store: Store) -> None:
    """A recovered sealed or accepted batch has final None (it is to be sent or followed)."""
    async with opened(store) as journal:
        ids = await admit_new(journal, [item("a@x.com"), item("b@x.com")])
        sealed = await journal.seal(PART, "key-1", BODY, ids[:1])
        accepted = await journal.seal(PART, "key-2", BODY, ids[1:])
        await journal.accepted(accepted, "job-2")
    recovered = await reopen(store)
    assert [(b.batch_id, b.job_id, b.final) for b in recovered.batches] == [
        (sealed, None, None),
        (accepted, "job-2", None),
    ]


async def test_reported_of_an_unfinished_batch_is_a_no_op(store: Store) -> None:
    """reported() of a sealed or accepted batch (or an unknown id) changes nothing."""
    async with opened(store) as journal:
        ids = await admit_new(journal, [item("a@x.com"), item("b@x.com")])
        sealed = await journal.seal(PART, "key-1", BODY, ids[:1])
        accepted = await journal.seal(OTHER, "key-2", b"second", ids[1:])
        await journal.accepted(accepted, "job-2")
        await journal.reported(sealed)
        await journal.reported(accepted)
        await journal.reported(sealed + accepted + 1_000)
        assert await journal.admit_many([item("a@x.com")]) == [Existing(ids[0])]
    recovered = await reopen(store)
    assert keys(recovered) == (
        [],
        [("key-1", BODY, ["a@x.com"]), ("key-2", b"second", ["b@x.com"])],
    )
    assert [(b.job_id, b.final) for b in recovered.batches] == [(None, None), ("job-2", None)]


async def test_an_unreported_batch_answers_resubmissions_with_its_record(store: Store) -> None:
    """Between finished() and reported(), here and in a new opener, its keys answer Recorded."""
    async with opened(store) as journal:
        ids = await admit_new(journal, [item("a@x.com"), item("b@x.com")])
        batch = await journal.seal(PART, "key-1", BODY, ids)
        await journal.finished(batch, JOB)
        assert await journal.admit_many([item("b@x.com")]) == [Recorded(batch, JOB, 1, 2)]
    journal = store.journal()
    (recovered,) = (await journal.open()).batches
    try:
        assert recovered.final == JOB
        assert await journal.admit_many([item("a@x.com"), item("b@x.com")]) == [
            Recorded(batch, JOB, 0, 2),
            Recorded(batch, JOB, 1, 2),
        ]
    finally:
        await journal.aclose()
