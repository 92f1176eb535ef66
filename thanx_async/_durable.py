"""The batcher's link to its journal: durable admission, recorded answers, recovery.

Kept apart from ``_batcher.py`` so the batcher reads the same with or without a
journal: it asks this object to admit an entry (the entry reaches its batch
once committed, or is answered from the record), to forget entries that issued
nothing, and to open and close the file.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Iterable
from typing import cast

import orjson

from thanx_async._accumulator import Admission, Entry, Partition, SealedBatch, needs_escaping
from thanx_async._client import ThanxClient
from thanx_async._errors import BatcherClosedError, JobFailedError, JournalError
from thanx_async._identifiers import IdentifierType
from thanx_async._journal import log_failed_write
from thanx_async._journal_format import Existing, Recorded, Recovered, RecoveredItem
from thanx_async._journal_protocol import FleetJournal, JournalBackend, RateLogStore
from thanx_async._models import IssuanceJob, JobState
from thanx_async._outcomes import JobVerdict
from thanx_async._resolution import Counters, Resolver
from thanx_async._serde import job_from_dict
from thanx_async._telemetry import BatchTelemetry
from thanx_async._transport._ratelimit import PersistentRateLog

__all__ = ["Durable"]

logger = logging.getLogger("thanx_async.batcher")

#: How often the rate limiter's recent log is saved to the journal.
RATELOG_EVERY = 1.0
#: Final jobs kept decoded for answering resubmissions from the record.
_RECORDED_JOBS = 64


class Durable:
    """Journal-backed admission and recovery for one batcher."""

    def __init__(
        self,
        journal: JournalBackend,
        *,
        client: ThanxClient,
        resolver: Resolver,
        counters: Counters,
        partition: Callable[[str, str, str], Partition],
        enqueue: Callable[[Entry], None],
        spawn: Callable[[SealedBatch], None],
        closed: Callable[[], bool],
        telemetry: BatchTelemetry | None = None,
    ) -> None:
        self.journal = journal
        self._telemetry = telemetry
        self._client = client
        self._resolver = resolver
        self._counters = counters
        self._partition = partition
        self._enqueue = enqueue
        self._spawn = spawn
        self._closed = closed
        self._admitting: set[asyncio.Future[None]] = set()
        self._group: list[Entry] = []
        self._admission: Admission | None = None
        self._recorded_jobs: dict[int, IssuanceJob] = {}
        self._ratelog_timer: asyncio.TimerHandle | None = None
        self._open = False
        #: The journal when it is shared by a fleet (joins and adoption), else None.
        self.fleet = journal if isinstance(journal, FleetJournal) else None
        self._adopter: asyncio.Task[None] | None = None
        self._watching: set[asyncio.Future[Recorded | None]] = set()

    async def open(self) -> None:
        """Open the journal and resume what it holds."""
        self._recover(await self.journal.open())
        self._open = True
        self._schedule_ratelog()
        if self.fleet is not None:
            self._adopter = asyncio.get_running_loop().create_task(
                self._adopt_forever(self.fleet), name="thanx_async journal adoption"
            )

    async def close(self) -> None:
        """Save the rate log and close the file (queued writes are committed first)."""
        if self._ratelog_timer is not None:
            self._ratelog_timer.cancel()
        if self._adopter is not None:
            self._adopter.cancel()
            await asyncio.gather(self._adopter, return_exceptions=True)
        for watched in list(self._watching):
            watched.cancel()
        if not self._open:
            return
        limiter, journal = self._client.limiter, self.journal
        if isinstance(limiter, PersistentRateLog) and isinstance(journal, RateLogStore):
            try:
                await journal.save_ratelog(limiter.snapshot())
            except JournalError:
                logger.exception("journal write failed")
        await self.journal.aclose()

    def admit(self, entry: Entry) -> None:
        """Journal a new entry; it joins its batch once committed (or is answered from record).

        Every entry admitted in one loop turn shares one journal operation and
        one :class:`Admission` (``entry.durable``), finished once the whole group
        is handled.
        """
        if not self._group:
            loop = asyncio.get_running_loop()
            self._admission = Admission(loop)
            self._admitting.add(self._admission.done)
            loop.call_soon(self._send_group)
        self._group.append(entry)
        entry.durable = self._admission

    def _send_group(self) -> None:
        entries, self._group = self._group, []
        admission = self._admission
        assert admission is not None  # set with the group's first entry
        items = [(e.partition.ids, e.type, e.value, e.dedupe_key) for e in entries]
        written = self.journal.admit_many(items)
        if self._telemetry is not None:
            self._telemetry.journal_write(written, self.journal, "admit")
        written.add_done_callback(functools.partial(self._admitted, entries, admission))

    async def settled(self) -> None:
        """Wait until every admission asked for so far has been answered."""
        if self._admitting:
            # wait(), not gather(): a cancelled waiter must not cancel the admissions.
            await asyncio.wait(set(self._admitting))

    def forget(self, entries: Iterable[Entry]) -> None:
        """Drop journaled entries that issued nothing (cancelled before their seal)."""
        rows = [e.row_id for e in entries if e.row_id is not None]
        if rows:
            self.journal.forget(rows).add_done_callback(log_failed_write)

    def _admitted(
        self,
        entries: list[Entry],
        admission: Admission,
        written: asyncio.Future[list[int | Recorded | Existing]],
    ) -> None:
        """The journal answered a group of admissions; then their submitters resume."""
        self._admitting.discard(admission.done)
        error = written.exception() if not written.cancelled() else JournalError("cancelled")
        if error is not None:
            for entry in entries:
                self._resolver.forget(entry)  # submit() raises the journal error
            admission.finish(error)
            return
        for entry, result in zip(entries, written.result(), strict=True):
            self._admitted_one(entry, result)
        admission.finish(None)

    def _admitted_one(self, entry: Entry, result: int | Recorded | Existing) -> None:
        if isinstance(result, Recorded):
            self._answer_from_record(entry, result)
        elif isinstance(result, Existing) and self.fleet is not None:
            self.join(entry, result.row_id)  # another process issues it: share its result
        elif isinstance(result, Existing):
            # Only after an unexpected failure of its batch (its rows stay for the
            # next start, which resumes them): joining it here is impossible.
            self._resolver.fail(
                entry,
                JournalError(
                    f"{entry.value} is journaled as in progress, in a batch this process"
                    " stopped following after an error (logged); it resumes on the next start"
                ),
            )
        else:
            entry.row_id = result
            if not entry.wanted():  # every caller cancelled while it was being written
                self.forget([entry])
                self._resolver.forget(entry)
            elif self._closed():
                # Committed after the batcher's last seal (a hurried close): it is
                # kept for the next start, and its callers are told so.
                self._resolver.detach(
                    entry,
                    BatcherClosedError(
                        "the batcher closed before this identifier was sent"
                        " (kept in the journal; resumed on the next start)"
                    ),
                )
            else:  # closing or not, an acknowledged identifier is sent
                self._enqueue(entry)

    def join(self, entry: Entry, item_id: int) -> None:
        """Let ``entry`` share the fate of another process's item with the same key.

        Used when admission finds the key unfinished elsewhere in the fleet,
        and when a seal finds our item adopted by another process (we lost
        our lease). The entry resolves from that item's record; if the item
        is forgotten instead (it issued nothing), the entry is admitted anew.
        """
        assert self.fleet is not None  # only a fleet journal answers Existing elsewhere
        entry.row_id = None  # not ours (any more)
        watched = self.fleet.watch(item_id)
        self._watching.add(watched)
        watched.add_done_callback(functools.partial(self._joined, entry))

    def _joined(self, entry: Entry, watched: asyncio.Future[Recorded | None]) -> None:
        self._watching.discard(watched)
        if watched.cancelled():
            return
        if self._resolver.get(entry.partition, entry.key) is not entry:
            return  # it ended here meanwhile (we adopted the item and finished it)
        error = watched.exception()
        if error is not None:
            logger.warning("journal %s: watching %s failed: %s", self.journal, entry.value, error)
            self._resolver.fail(
                entry, error if isinstance(error, JournalError) else JournalError(str(error))
            )
            return
        record = watched.result()
        if record is not None:
            self._answer_from_record(entry, record)
        elif self._closed():
            self._resolver.detach(entry, BatcherClosedError("the batcher closed"))
        else:  # forgotten: it issued nothing, so this submission tries again
            self.admit(entry)

    async def _adopt_forever(self, fleet: FleetJournal) -> None:
        """Adopt the work of processes whose lease expired, every half lease."""
        interval = max(0.05, fleet.lease / 2)
        while True:
            await asyncio.sleep(interval)
            if self._closed():
                return
            try:
                recovered = await fleet.adopt()
            except Exception:  # logged; the next round tries again
                logger.exception("journal %s: adopting expired work failed", self.journal)
                continue
            self._recover(recovered)

    def _answer_from_record(self, entry: Entry, record: Recorded) -> None:
        job = self._recorded_jobs.get(record.batch_id)
        if job is None:
            job = job_from_dict(orjson.loads(record.job_json), trusted=True)
            if len(self._recorded_jobs) >= _RECORDED_JOBS:
                self._recorded_jobs.pop(next(iter(self._recorded_jobs)))
            self._recorded_jobs[record.batch_id] = job
        if job.state is JobState.FAILED and job.unreadable is None:
            self._resolver.fail(entry, JobFailedError(job))
        else:
            (outcome,) = JobVerdict.of(job, record.size).outcomes(record.position, [entry])
            self._resolver.settle(entry, outcome)

    def _recover(self, recovered: Recovered) -> None:
        limiter = self._client.limiter
        if recovered.ratelog and isinstance(limiter, PersistentRateLog):
            limiter.restore(recovered.ratelog)
        for item in recovered.unsealed:
            self._enqueue(self._recovered_entry(item))
        for batch in recovered.batches:
            entries = [self._recovered_entry(item) for item in batch.items]
            self._counters.sealed_batches += 1
            self._spawn(
                SealedBatch(
                    self._partition(*batch.partition), entries, batch.body, batch.key,
                    batch_id=batch.batch_id, job_id=batch.job_id,
                )
            )  # fmt: skip
        if recovered.unsealed or recovered.batches:
            logger.info(
                "journal %s: resuming %d unsealed identifiers and %d batches",
                self.journal, len(recovered.unsealed), len(recovered.batches),
            )  # fmt: skip

    def _recovered_entry(self, item: RecoveredItem) -> Entry:
        partition = self._partition(*item.partition)
        key = item.value if item.dedupe_key is None else (item.value, item.dedupe_key)
        joiner = self._resolver.get(partition, key)
        if joiner is not None and joiner.row_id is None:
            # We were waiting for this very item in another process: adopted, it
            # is ours now, and its callers stay with it.
            joiner.row_id = item.row_id
            joiner.pin()
            return joiner
        type_ = cast("IdentifierType", item.type)
        entry = Entry(
            partition, type_, item.value, item.dedupe_key,
            escape=needs_escaping(item.value), caller=False,
        )  # fmt: skip
        entry.row_id = item.row_id
        entry.pin()
        self._resolver.add(entry)
        self._resolver.pending += 1  # admitted by an earlier process, over any bound
        return entry

    def _schedule_ratelog(self) -> None:
        limiter, journal = self._client.limiter, self.journal
        if not isinstance(limiter, PersistentRateLog) or not isinstance(journal, RateLogStore):
            return  # a shared limiter keeps its own log

        def save() -> None:
            journal.save_ratelog(limiter.snapshot()).add_done_callback(log_failed_write)
            self._ratelog_timer = asyncio.get_running_loop().call_later(RATELOG_EVERY, save)

        self._ratelog_timer = asyncio.get_running_loop().call_later(RATELOG_EVERY, save)
