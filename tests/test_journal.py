"""The durable journal: durable ack, recovery, dedupe across restarts, bad files, housekeeping."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import orjson
import pytest

import thanx_async as ta
from thanx_async._journal import Journal
from thanx_async._transport._http import Response
from thanx_async._transport._ratelimit import SlidingWindowLimiter
from thanx_async.testing import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
    ThanxEmulator,
)

pytestmark = pytest.mark.thanx_emulator(start_delay=0.0, speed=1_000_000.0)


def email(i: int) -> str:
    return f"user{i}@example.com"


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    """Where the test's journal file lives."""
    return tmp_path / "rewards.db"


def batcher_for(
    client: ta.ThanxClient, journal: Path | Journal, **options: object
) -> ta.RewardBatcher:
    return ta.RewardBatcher(
        client,
        merchant_id=DEFAULT_MERCHANT_ID,
        campaign_id=DEFAULT_CAMPAIGN_ID,
        variant_id=DEFAULT_VARIANT_ID,
        journal=journal,
        **{"max_wait": 0.02, **options},  # type: ignore[arg-type]
    )


async def crash(batcher: ta.RewardBatcher) -> None:
    """Abandon a batcher as if its process died now: no further write reaches the file."""
    durable = batcher._durable
    assert durable is not None
    journal = durable.journal
    assert isinstance(journal, Journal)
    journal._ops.clear()
    if durable._ratelog_timer is not None:
        durable._ratelog_timer.cancel()
    tasks = [*batcher._tasks, *batcher._tracker._polls]
    if batcher._tracker._runner is not None:
        tasks.append(batcher._tracker._runner)
    if journal._writer is not None:
        tasks.append(journal._writer)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for entry in batcher._resolver.entries():
        for caller in entry.callers():
            caller.cancel()
    for batch in batcher._open.values():
        if batch.timer is not None:
            batch.timer.cancel()
    batcher._closed = True  # a dead process warns nobody
    conn, journal._conn = journal._conn, None
    assert conn is not None
    assert journal._executor is not None
    await asyncio.get_running_loop().run_in_executor(journal._executor, conn.close)
    journal._executor.shutdown()


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read the journal file (only while no batcher owns it)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


async def settled(journal: object) -> None:
    """Wait until every queued journal write is committed."""
    assert isinstance(journal, Journal)
    while journal._ops or journal._writer is not None:  # noqa: ASYNC110 - polling private state
        await asyncio.sleep(0.01)


def issue_posts(emu: ThanxEmulator) -> int:
    return len(emu.state.requests_for("issue"))


async def test_submit_returns_only_once_committed(
    thanx_client: ta.ThanxClient, journal_path: Path
) -> None:
    """After `await submit()` the identifier is in the file, even if the process dies then."""
    batcher = batcher_for(thanx_client, journal_path, max_wait=60.0)
    await batcher.submit(email(1))
    await crash(batcher)
    assert rows(journal_path, "SELECT value, batch_id FROM items") == [(email(1), None)]


async def test_unsealed_identifiers_resume_after_a_crash(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator, journal_path: Path
) -> None:
    """Identifiers admitted but never sealed are sent after restart, exactly once."""
    first = batcher_for(thanx_client, journal_path, max_wait=60.0)
    for i in range(3):
        await first.submit(email(i))
    await crash(first)
    assert issue_posts(thanx_emulator) == 0
    async with batcher_for(thanx_client, journal_path) as second:
        outcomes = [await second.issue(email(i)) for i in range(3)]
    assert all(o.issued for o in outcomes)
    assert len({o.job_id for o in outcomes}) == 1
    assert set(thanx_emulator.state.issuance_counts().values()) == {1}
    assert len(thanx_emulator.state.issuance_counts()) == 3


class StuckTransport:
    """A transport whose requests never come back (the process dies mid-POST)."""

    async def send(
        self, method: str, url: str, *, headers: Mapping[str, str], body: bytes | None,
        timeout: float,
    ) -> Response:  # fmt: skip
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        return None


async def test_sealed_batch_is_reposted_with_the_same_bytes_and_key(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator, journal_path: Path
) -> None:
    """A batch sealed (and maybe sent) before the crash is re-POSTed identically after it."""
    stuck = ta.ThanxClient(
        client_id=DEFAULT_CLIENT_ID, access_token=DEFAULT_ACCESS_TOKEN,
        base_url=thanx_emulator.url, transport=StuckTransport(),
    )  # fmt: skip
    first = batcher_for(stuck, journal_path)
    for i in range(4):
        await first.submit(email(i))
    for _ in range(100):  # sealed and journaled; its POST hangs
        if stuck.stats.posts:
            break
        await asyncio.sleep(0.01)
    await crash(first)
    (key, body) = rows(journal_path, "SELECT idem_key, body FROM batches")[0]
    async with batcher_for(thanx_client, journal_path) as second:
        outcome = await second.issue(email(2))
    assert outcome.issued
    (request,) = thanx_emulator.state.requests_for("issue")
    assert request.headers["X-Idempotency-Key"] == key
    assert request.body == body


async def test_accepted_job_is_polled_again_after_a_crash(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator, journal_path: Path
) -> None:
    """A crash after acceptance resumes polling the same job: no second POST, no second reward."""
    thanx_emulator.state.start_delay = 0.5
    first = batcher_for(thanx_client, journal_path)
    await first.submit(email(1))
    await first.flush()
    assert first._durable is not None
    await settled(first._durable.journal)
    await crash(first)
    assert rows(journal_path, "SELECT state FROM batches") == [("accepted",)]
    async with batcher_for(thanx_client, journal_path) as second:
        outcome = await second.issue(email(1))
    assert outcome.issued
    assert issue_posts(thanx_emulator) == 1
    assert thanx_emulator.state.issued_count("email", email(1)) == 1


async def test_finished_result_answers_a_resubmission_without_sending(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator, journal_path: Path
) -> None:
    """Within the dedupe window a resubmission after restart gets the recorded outcome at once."""
    async with batcher_for(thanx_client, journal_path) as first:
        original = await first.issue(email(1))
        missing = await first.issue("unknown.1@example.com")
    async with batcher_for(thanx_client, journal_path) as second:
        future = await second.submit(email(1))
        assert future.done()
        again = future.result()
        failed_again = await second.issue("unknown.1@example.com")
    assert again.issued
    assert again.job_id == original.job_id
    assert failed_again.status is ta.OutcomeStatus.FAILED
    assert failed_again.error == missing.error == "User not found"
    assert issue_posts(thanx_emulator) == 2


async def test_outside_the_dedupe_window_it_is_sent_again(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator, journal_path: Path
) -> None:
    """After dedupe_window a resubmission is sent again (the server's key cache still guards)."""
    async with batcher_for(thanx_client, journal_path, dedupe_window=0.0) as b:
        await b.issue(email(1))
        await asyncio.sleep(0.01)
        await b.issue(email(1))
    assert issue_posts(thanx_emulator) == 2
    assert thanx_emulator.state.issued_count("email", email(1)) == 1


async def test_distinct_dedupe_keys_are_not_deduplicated(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator, journal_path: Path
) -> None:
    """A different dedupe key (event id) is a new issuance even for a recorded person."""
    async with batcher_for(thanx_client, journal_path) as b:
        await b.issue(email(1), dedupe_key="evt-1")
        await b.issue(email(1), dedupe_key="evt-2")
        again = await b.submit(email(1), dedupe_key="evt-1")
        assert again.done()
    assert issue_posts(thanx_emulator) == 2


async def test_rejection_that_issued_nothing_is_not_recorded(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator, journal_path: Path
) -> None:
    """A 404 batch leaves no record: a resubmission tries again."""
    async with ta.RewardBatcher(
        thanx_client, merchant_id=DEFAULT_MERCHANT_ID, campaign_id="camp_nope",
        variant_id=DEFAULT_VARIANT_ID, journal=journal_path, max_wait=0.01,
    ) as b:  # fmt: skip
        for _ in range(2):
            with pytest.raises(ta.NotFoundError):
                await b.issue(email(1))
    assert issue_posts(thanx_emulator) == 2
    assert rows(journal_path, "SELECT count(*) FROM items") == [(0,)]


async def test_failed_job_is_recorded(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator, journal_path: Path
) -> None:
    """A job that ended 'failed' is recorded: a resubmission raises JobFailedError again."""
    thanx_emulator.state.fail_next_jobs(1)
    async with batcher_for(thanx_client, journal_path) as b:
        with pytest.raises(ta.JobFailedError):
            await b.issue(email(1))
        with pytest.raises(ta.JobFailedError):
            await b.issue(email(1))
    assert issue_posts(thanx_emulator) == 1


@pytest.mark.thanx_emulator(start_delay=0.6, speed=1_000_000.0)
async def test_deadline_fails_the_caller_but_the_batch_is_still_followed(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator, journal_path: Path
) -> None:
    """With a journal a JobTimeoutError ends the wait, not the work: a resubmission joins it."""
    async with batcher_for(thanx_client, journal_path, job_timeout=0.2) as b:
        with pytest.raises(ta.JobTimeoutError):
            await b.issue(email(1))
        outcome = await b.issue(email(1))
    assert outcome.issued
    assert issue_posts(thanx_emulator) == 1


async def test_close_keeps_unfinished_work_for_the_next_start(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator, journal_path: Path
) -> None:
    """aclose() past its timeout leaves the job journaled; the next start finishes it."""
    thanx_emulator.state.start_delay = 0.8
    b = batcher_for(thanx_client, journal_path, close_timeout=0.1)
    future = await b.submit(email(1))
    await b.aclose()
    with pytest.raises(ta.BatcherClosedError, match="journal"):
        await future
    async with batcher_for(thanx_client, journal_path) as again:
        assert (await again.issue(email(1))).issued
    assert issue_posts(thanx_emulator) == 1


async def test_corrupt_file_is_a_clear_error(thanx_client: ta.ThanxClient, tmp_path: Path) -> None:
    """A file that is not SQLite raises JournalError naming the file, and is left untouched."""
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"this is not a database" * 100)
    batcher = batcher_for(thanx_client, path)
    with pytest.raises(ta.JournalError, match=r"corrupt\.db"):
        await batcher.submit(email(1))
    assert path.read_bytes().startswith(b"this is not a database")


async def test_unknown_schema_version_is_a_clear_error(
    thanx_client: ta.ThanxClient, journal_path: Path
) -> None:
    """A journal written by a future release (schema version 99) is refused, not reset."""
    async with batcher_for(thanx_client, journal_path) as b:
        await b.issue(email(1))
    with contextlib.closing(sqlite3.connect(journal_path)) as conn, conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(ta.JournalError, match="schema version '99'"):
        async with batcher_for(thanx_client, journal_path):
            pass
    assert rows(journal_path, "SELECT count(*) FROM items") == [(1,)]


async def test_foreign_sqlite_file_is_refused(thanx_client: ta.ThanxClient, tmp_path: Path) -> None:
    """Another application's SQLite file is not taken over."""
    path = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(ta.JournalError, match="not a thanx_async journal"):
        async with batcher_for(thanx_client, path):
            pass


async def test_second_owner_is_refused(thanx_client: ta.ThanxClient, journal_path: Path) -> None:
    """While one batcher owns the file, a second opener gets a JournalError naming it."""
    async with batcher_for(thanx_client, journal_path):
        with pytest.raises(ta.JournalError, match="in use by another process"):
            async with batcher_for(thanx_client, journal_path):
                pass


async def test_old_finished_entries_are_pruned(
    thanx_client: ta.ThanxClient, journal_path: Path
) -> None:
    """Finished batches older than the dedupe window are deleted, so the file stays bounded."""
    now = [1_000_000.0]
    journal = Journal(journal_path, dedupe_window=3600.0, clock=lambda: now[0])
    async with batcher_for(thanx_client, journal) as b:
        await b.issue(email(1))
        now[0] += 7200.0
        await b.issue(email(2))  # any write triggers housekeeping once the clock has moved
    assert rows(journal_path, "SELECT value FROM items") == [(email(2),)]
    assert rows(journal_path, "SELECT count(*) FROM batches") == [(1,)]


async def test_rate_log_survives_a_restart(
    thanx_emulator: ThanxEmulator, journal_path: Path
) -> None:
    """The limiter's recent requests are journaled, so a restarted process does not burst."""
    limit = ta.RateLimit(per_second=5, per_window=2000)
    async with ta.ThanxClient(
        client_id=DEFAULT_CLIENT_ID, access_token=DEFAULT_ACCESS_TOKEN,
        base_url=thanx_emulator.url, rate_limit=limit,
    ) as client, batcher_for(client, journal_path) as b:  # fmt: skip
        await b.issue(email(1))
    saved = rows(journal_path, "SELECT count(*) FROM ratelog")[0][0]
    assert isinstance(saved, int)
    assert saved >= 2
    async with ta.ThanxClient(
        client_id=DEFAULT_CLIENT_ID, access_token=DEFAULT_ACCESS_TOKEN,
        base_url=thanx_emulator.url, rate_limit=limit,
    ) as client, batcher_for(client, journal_path):  # fmt: skip
        assert isinstance(client.limiter, SlidingWindowLimiter)
        assert len(client.limiter.snapshot()) == saved


def test_synchronous_option_is_validated(journal_path: Path) -> None:
    """Durability can be traded for speed explicitly; a typo is refused."""
    assert Journal(journal_path, synchronous="NORMAL").synchronous == "NORMAL"
    with pytest.raises(ValueError, match="synchronous"):
        Journal(journal_path, synchronous="FAST")  # type: ignore[arg-type]


@pytest.fixture
async def many(thanx_client: ta.ThanxClient, journal_path: Path) -> AsyncIterator[ta.RewardBatcher]:
    """A journaled batcher with small batches."""
    async with batcher_for(thanx_client, journal_path, max_batch_size=50) as b:
        yield b


async def test_journal_and_memory_agree_under_load(
    many: ta.RewardBatcher, thanx_emulator: ThanxEmulator, journal_path: Path
) -> None:
    """1,000 concurrent submissions (with duplicates) are journaled once each and all issued."""
    futures = await asyncio.gather(*(many.submit(email(i % 700)) for i in range(1_000)))
    outcomes = await asyncio.gather(*futures)
    assert all(o.issued for o in outcomes)
    assert len(thanx_emulator.state.issuance_counts()) == 700
    assert set(thanx_emulator.state.issuance_counts().values()) == {1}


@pytest.mark.parametrize(
    "order",
    [
        list(range(40)),  # one run: a single ranged update
        [*range(10, 40), *range(10)],  # two runs, out of admission order
        [*range(0, 40, 2), *range(1, 40, 2)],  # no runs: one update per row
        [5, *range(20, 40), 0, 1, 2, *range(6, 20), 3, 4],  # runs and stragglers
    ],
)
async def test_sealed_positions_survive_a_restart_whatever_the_id_order(
    journal_path: Path, order: list[int]
) -> None:
    """A sealed batch comes back with its items in the order sealed, however its row ids run."""
    partition = (DEFAULT_MERCHANT_ID, DEFAULT_CAMPAIGN_ID, DEFAULT_VARIANT_ID)
    journal = Journal(journal_path)
    await journal.open()
    ids = await journal.admit_many([(partition, "email", email(i), None) for i in range(40)])
    assert all(isinstance(i, int) for i in ids)
    sealed = [ids[i] for i in order]
    await journal.seal(partition, "key", b"body", sealed)  # type: ignore[arg-type]
    await journal.aclose()
    reopened = Journal(journal_path)
    recovered = await reopened.open()
    await reopened.aclose()
    (batch,) = recovered.batches
    assert [item.row_id for item in batch.items] == sealed
    assert [item.value for item in batch.items] == [email(i) for i in order]
    assert recovered.unsealed == []


async def test_cancelling_one_waiting_submitter_leaves_the_others_waiting(
    thanx_client: ta.ThanxClient, journal_path: Path, thanx_emulator: ThanxEmulator
) -> None:
    """Submitters share one journal write; cancelling one that waits does not cancel the rest."""
    async with batcher_for(thanx_client, journal_path) as batcher:
        first = asyncio.create_task(batcher.submit(email(1)))
        second = asyncio.create_task(batcher.submit(email(1)))  # joins the same entry
        third = asyncio.create_task(batcher.submit(email(2)))  # same write, another entry
        await asyncio.sleep(0)  # all three are now waiting for the write
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        outcomes = [await (await task) for task in (second, third)]
    assert [o.status for o in outcomes] == [ta.OutcomeStatus.ISSUED] * 2
    assert thanx_emulator.state.issued_count("email", email(1)) == 1


async def test_a_failed_admission_write_is_raised_by_submit_and_strands_nothing(
    thanx_client: ta.ThanxClient, journal_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the journal cannot record a group, each of its submit() calls raises JournalError."""
    async with batcher_for(thanx_client, journal_path) as batcher:

        def broken(self: Journal, ops: object) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        with monkeypatch.context() as patch:
            patch.setattr(Journal, "_apply", broken)
            results = await asyncio.gather(
                *(batcher.submit(email(i)) for i in range(3)), return_exceptions=True
            )
        assert all(isinstance(r, ta.JournalError) for r in results)
        assert batcher.stats().pending == 0
        assert (await batcher.issue(email(0))).issued  # the journal works again


@pytest.mark.parametrize("status", [403, 404])
async def test_a_job_that_cannot_be_followed_is_recorded_unknown(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator, journal_path: Path, status: int
) -> None:
    """A poll's final error ends the batch UNKNOWN and recorded: no stuck row, ever."""
    thanx_emulator.state.faults.add("get_job", status=status, times=None)
    async with batcher_for(thanx_client, journal_path) as b:
        first = await b.issue(email(1))
        again = await b.issue(email(1))
    async with batcher_for(thanx_client, journal_path) as b:
        after_restart = await b.issue(email(1))
    for outcome in (first, again, after_restart):
        assert outcome.status is ta.OutcomeStatus.UNKNOWN
        assert outcome.error is not None
        assert str(status) in outcome.error
    assert issue_posts(thanx_emulator) == 1


async def test_on_outcome_gets_what_a_restart_resumes(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator, journal_path: Path
) -> None:
    """Work resumed after a crash has no caller: every outcome goes to on_outcome instead."""
    dead = batcher_for(thanx_client, journal_path, max_wait=60.0)
    await dead.__aenter__()
    for i in range(5):
        await dead.submit(email(i))  # journaled, not yet sealed
    await crash(dead)
    seen: list[ta.IssuanceOutcome] = []

    async def record(outcome: ta.IssuanceOutcome) -> None:
        await asyncio.sleep(0)
        seen.append(outcome)

    async with batcher_for(thanx_client, journal_path, on_outcome=record) as b:
        await b.issue(email(99))  # a caller of its own: not given to on_outcome
    assert sorted(o.identifier.value for o in seen) == sorted(email(i) for i in range(5))


@pytest.mark.thanx_emulator(start_delay=0.6, speed=1_000_000.0)
async def test_on_outcome_gets_an_outcome_whose_caller_stopped_waiting(
    thanx_client: ta.ThanxClient, journal_path: Path
) -> None:
    """A caller that timed out leaves the outcome to on_outcome, when the job ends."""
    seen: list[ta.IssuanceOutcome] = []
    options = {"job_timeout": 0.1, "on_outcome": seen.append}
    async with batcher_for(thanx_client, journal_path, **options) as b:
        with pytest.raises(ta.JobTimeoutError):
            await b.issue(email(1))
        async with asyncio.timeout(5):
            while not seen:  # noqa: ASYNC110 - waiting for the callback
                await asyncio.sleep(0.05)
    assert [o.identifier.value for o in seen] == [email(1)]
    assert seen[0].issued


async def test_a_raising_on_outcome_is_logged_not_lost(
    thanx_client: ta.ThanxClient, journal_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An on_outcome that raises is logged with the identifier; the batcher carries on."""

    def broken(outcome: ta.IssuanceOutcome) -> None:
        raise RuntimeError("boom")

    async with batcher_for(thanx_client, journal_path, on_outcome=broken) as b:
        future = await b.submit(email(1))
        await b.flush()
        future.cancel()  # stops waiting after the seal: the outcome is nobody's
        assert (await b.issue(email(2))).issued
    assert "on_outcome raised" in caplog.text


async def test_a_recorded_end_never_reported_is_reported_after_a_restart(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator, journal_path: Path
) -> None:
    """Dead after recording a job's end, before resolving anyone: the restart reports it, once."""
    dead = Journal(journal_path)
    await dead.open()
    partition = (DEFAULT_MERCHANT_ID, DEFAULT_CAMPAIGN_ID, DEFAULT_VARIANT_ID)
    ids = await dead.admit_many([(partition, "email", email(i), None) for i in range(3)])
    batch = await dead.seal(partition, "key", b"{}", [i for i in ids if isinstance(i, int)])
    await dead.accepted(batch, "job_1")
    job = {
        "id": "job_1", "state": "completed", "total_count": 3, "success_count": 2,
        "failure_count": 1, "summary": {"success_count": 2, "failure_count": 1,
        "failures": [{"identifier_index": 1, "error": "User not found"}]},
    }  # fmt: skip
    await dead.finished(batch, orjson.dumps(job))
    await dead.aclose()  # ...and the process died before handing the outcomes on
    seen: list[ta.IssuanceOutcome] = []
    async with batcher_for(thanx_client, journal_path, on_outcome=seen.append):
        pass
    assert [(o.identifier.value, o.status.value) for o in seen] == [
        (email(0), "issued"), (email(1), "failed"), (email(2), "issued"),
    ]  # fmt: skip
    again: list[ta.IssuanceOutcome] = []
    async with batcher_for(thanx_client, journal_path, on_outcome=again.append):
        pass
    assert again == []  # reported once
    assert issue_posts(thanx_emulator) == 0
