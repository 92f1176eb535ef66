"""The unresolved set: pending slots (back-pressure) and how entries end.

An entry stays here from admission until it is settled (an outcome), failed
(an error), or forgotten (cancelled before its seal). Each of those releases
its pending slot, handing it to the longest-waiting submitter.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence

import attrs

from thanx_async._accumulator import HAS_CALLER, Entry, EntryKey, Partition
from thanx_async._errors import BatcherClosedError, JobFailedError
from thanx_async._outcomes import IssuanceOutcome, JobVerdict, OutcomeStatus
from thanx_async._recent import RecentResults, Result

__all__ = ["Counters", "Resolver", "failure_outcome"]


@attrs.define
class Counters:
    """What a batcher has done so far (read through ``RewardBatcher.stats()``)."""

    submitted: int = 0
    sealed_batches: int = 0
    posts: int = 0
    polls: int = 0
    accepted: int = 0
    issued: int = 0
    failed: int = 0
    unknown: int = 0


class Resolver:
    """Owns the unresolved entries, the pending-slot count and the FIFO of waiting submitters."""

    def __init__(
        self, max_pending: int, counters: Counters, recent: RecentResults | None = None
    ) -> None:
        #: Per partition, so the common key is just the value (no tuple per entry).
        self.unresolved: dict[Partition, dict[EntryKey, Entry]] = {}
        self.pending = 0
        #: Read by the batcher's submit path, which inlines try_admit().
        self.max_pending = max_pending
        self.waiting: deque[asyncio.Future[None]] = deque()
        self._counters = counters
        #: Where results are remembered for resubmissions (None with a journal).
        self.recent = recent
        #: Given every outcome no caller waits for (resumed or adopted work, a
        #: caller that stopped waiting); set by the batcher from ``on_outcome``.
        self.on_orphan: Callable[[IssuanceOutcome], None] | None = None

    def try_admit(self) -> bool:
        """Take a pending slot if one is free and nobody waits for one (no await needed)."""
        if self.pending < self.max_pending and not self.waiting:
            self.pending += 1
            return True
        return False

    async def admit(self) -> None:
        """Take one pending slot, waiting behind earlier submitters when all are taken."""
        if self.try_admit():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append(waiter)
        try:
            await waiter  # the releaser hands its slot over before waking us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release()  # granted, then cancelled: pass the slot on
            else:
                with contextlib.suppress(ValueError):
                    self.waiting.remove(waiter)
            raise

    def release(self, count: int = 1) -> None:
        """Give slots back (to the first waiting submitters, if any)."""
        self.pending -= count
        while self.waiting and self.pending < self.max_pending:
            waiter = self.waiting.popleft()
            if not waiter.done():
                self.pending += 1
                waiter.set_result(None)

    def close(self) -> None:
        """Refuse every waiting submitter (the batcher is closing)."""
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_exception(BatcherClosedError("the batcher closed while waiting"))

    def get(self, partition: Partition, key: EntryKey) -> Entry | None:
        """The unresolved entry for this key, if any."""
        entries = self.unresolved.get(partition)
        return None if entries is None else entries.get(key)

    def add(self, entry: Entry) -> None:
        """Count an entry as unresolved (its slot was taken by the caller)."""
        entries = self.unresolved.get(entry.partition)
        if entries is None:
            entries = self.unresolved[entry.partition] = {}
        entries[entry.key] = entry

    def entries(self) -> list[Entry]:
        """Every unresolved entry."""
        return [e for entries in self.unresolved.values() for e in entries.values()]

    def forget(self, entry: Entry) -> bool:
        """Drop an entry; False if it was not (or no longer) unresolved."""
        entries = self.unresolved.get(entry.partition)
        key = entry.key
        if entries is None or entries.get(key) is not entry:
            return False
        del entries[key]
        if not entries:
            del self.unresolved[entry.partition]
        self.release()
        return True

    def settle(self, entry: Entry, outcome: IssuanceOutcome) -> None:
        """Resolve every caller of an entry with its outcome."""
        if not self.forget(entry):
            return
        if outcome.status is OutcomeStatus.ISSUED:
            self._counters.issued += 1
        elif outcome.status is OutcomeStatus.FAILED:
            self._counters.failed += 1
        else:
            self._counters.unknown += 1
        if self.recent is not None and outcome.job_id is not None:
            self.recent.remember(entry.partition, entry.key, outcome)
        delivered = False
        for caller in entry.callers():
            if not caller.done():
                caller.set_result(outcome)
                delivered = True
        if not delivered and self.on_orphan is not None:
            self.on_orphan(outcome)

    def settle_by_verdict(  # noqa: PLR0912 - the loop 10,000 outcomes go through, inlined
        self, partition: Partition, entries: Sequence[Entry], start: int, verdict: JobVerdict
    ) -> None:
        """Settle a run of a batch's entries (the first at ``start``) with its job's verdict.

        What :meth:`settle` does per entry, with the lookups, counters and slot
        releases done once for the run: this is the loop 10,000 outcomes go through.
        """
        known = self.unresolved.get(partition)
        if known is None:
            return
        issued_status, failed_status = OutcomeStatus.ISSUED, OutcomeStatus.FAILED
        settled = issued = failed = 0
        remembering = self.recent is not None
        keys: list[EntryKey] = []
        results: list[Result] = []
        orphans: list[IssuanceOutcome] | None = None if self.on_orphan is None else []
        for entry, outcome in zip(entries, verdict.outcomes(start, entries), strict=True):
            value, dedupe_key = entry.value, entry.dedupe_key
            key = value if dedupe_key is None else (value, dedupe_key)
            if known.get(key) is not entry:
                continue  # already ended (failed, or settled from elsewhere)
            del known[key]
            if remembering:
                keys.append(key)
                results.append(outcome)
            settled += 1
            if outcome.status is issued_status:
                issued += 1
            elif outcome.status is failed_status:
                failed += 1
            delivered = False
            if entry.flags & HAS_CALLER and not entry.done():
                entry.set_result(outcome)
                delivered = True
            if entry.more is not None:
                for other in entry.more:
                    if not other.done():
                        other.set_result(outcome)
                        delivered = True
            if not delivered and orphans is not None:
                orphans.append(outcome)
        if not known and self.unresolved.get(partition) is known:
            del self.unresolved[partition]
        if keys and self.recent is not None:
            self.recent.remember_many(partition, keys, results)
        counters = self._counters
        counters.issued += issued
        counters.failed += failed
        counters.unknown += settled - issued - failed
        if settled:
            self.release(settled)
        if orphans and self.on_orphan is not None:
            for outcome in orphans:
                self.on_orphan(outcome)

    def fail(self, entry: Entry, exc: BaseException) -> None:
        """End an entry with an error for every caller."""
        if not self.forget(entry):
            return
        if self.recent is not None and isinstance(exc, JobFailedError):
            self.recent.remember(entry.partition, entry.key, exc)
        self._counters.failed += 1
        if self.on_orphan is not None and all(c.done() for c in entry.callers()):
            self.on_orphan(failure_outcome(entry, exc))
        self.detach(entry, exc)

    def abandon(self, entry: Entry, exc: BaseException) -> None:
        """End an entry whose outcome will never be known here (closing without a journal).

        Not counted as failed: the job may still issue it on the server.
        """
        if self.forget(entry):
            self.detach(entry, exc)

    @staticmethod
    def detach(entry: Entry, exc: BaseException) -> None:
        """Give the current callers an error but keep the entry (its batch is still followed).

        Used with a journal when a deadline passes: the caller stops waiting, the
        work goes on, and a resubmission joins it.
        """
        for caller in entry.callers():
            if not caller.done():
                caller.set_exception(exc)
        entry.clear_callers()


def failure_outcome(entry: Entry, exc: BaseException) -> IssuanceOutcome:
    """The FAILED outcome ``on_outcome`` gets for an entry that ended with ``exc``."""
    job = exc.job if isinstance(exc, JobFailedError) else None
    return IssuanceOutcome(
        identifier=entry.identifier,
        status=OutcomeStatus.FAILED,
        job_id=None if job is None else job.id,
        error=str(exc),
        job=job,
        dedupe_key=entry.dedupe_key,
    )
