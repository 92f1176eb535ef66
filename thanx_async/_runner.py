"""One sealed batch's life: journal it, POST it, follow its job, resolve its entries.

Without a journal a batch that cannot be sent fails its callers. With a
journal, the rules of DESIGN.md "Durability" apply: a batch whose fate is
unknown (lost connection, server errors past the retry budget, a job past its
deadline) stays journaled and keeps being pursued, while its current callers
get the error and stop waiting; a rejection that issued nothing is forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING

from thanx_async._accumulator import Entry, SealedBatch, freeze
from thanx_async._client import ThanxClient
from thanx_async._errors import (
    APIError,
    JobFailedError,
    JobTimeoutError,
    MalformedResponseError,
    RateLimitError,
    ServerError,
    ThanxError,
    TransportError,
)
from thanx_async._jobs import JobTracker
from thanx_async._journal import log_failed_write
from thanx_async._journal_protocol import JournalBackend, LeaseLostError
from thanx_async._models import IssuanceJob, JobState
from thanx_async._outcomes import IssuanceOutcome, JobVerdict, OutcomeStatus
from thanx_async._resolution import Counters, Resolver
from thanx_async._serde import job_to_json
from thanx_async._telemetry import BatchTelemetry
from thanx_async._webhook_jobs import job_from_completion

if TYPE_CHECKING:
    from thanx_async.webhooks import RewardBatchCompleted

__all__ = ["RESOLVE_SLICE", "BatchRunner"]

logger = logging.getLogger("thanx_async.batcher")

#: Completions for jobs not followed (yet) kept, at most, and for how long (seconds).
_EARLY_MAX = 1_024
_EARLY_FOR = 60.0
#: Futures resolved per event-loop turn, so 10,000 outcomes never stall the caller's loop.
RESOLVE_SLICE = 500

# A POST that failed like this may or may not have created a job.
_UNKNOWN_FATE = (TransportError, ServerError, RateLimitError, MalformedResponseError)


class BatchRunner:
    """Carries sealed batches from POST to resolved futures (one task per batch)."""

    def __init__(
        self,
        *,
        client: ThanxClient,
        tracker: JobTracker,
        resolver: Resolver,
        counters: Counters,
        journal: JournalBackend | None,
        namespace: str,
        max_in_flight: int,
        job_timeout: float | None,
        spawn: Callable[[SealedBatch], None],
        posted: Callable[[SealedBatch], None],
        join: Callable[[Entry, int], None] | None = None,
        resend_after: float = 30.0,
        telemetry: BatchTelemetry | None = None,
    ) -> None:
        self._client = client
        self._tracker = tracker
        self._resolver = resolver
        self._counters = counters
        self._journal = journal
        self._namespace = namespace
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._job_timeout = job_timeout
        self._spawn = spawn
        self._posted = posted
        self._resend_after = resend_after
        self._join = join
        self._telemetry = telemetry or BatchTelemetry(client._telemetry)
        #: Sealed batches waiting for one of the ``max_in_flight`` POST slots.
        self.queued_posts = 0
        #: Batches whose job is being followed, by job id (for webhooks).
        self._following: dict[str, SealedBatch] = {}
        #: Completions that arrived before their job's POST was answered here.
        self._early: OrderedDict[str, tuple[float, RewardBatchCompleted]] = OrderedDict()

    async def run(self, sealed: SealedBatch) -> None:
        """The whole life of one batch; never raises (except cancellation)."""
        self._telemetry.started(sealed)  # this task's logs and spans belong to the batch
        try:
            if sealed.body is None:
                await freeze(sealed, self._namespace)
                logger.info(
                    "sealed batch %s: %d identifiers for %s/%s/%s",
                    sealed.key, len(sealed.entries), *sealed.partition.ids,
                )  # fmt: skip
            body, key = sealed.body, sealed.key
            assert body is not None
            assert key is not None
            if self._journal is not None and sealed.batch_id is None:
                try:
                    sealed.batch_id = await self._telemetry.journal_timed(
                        self._journal.seal(
                            sealed.partition.ids, key, body, _row_ids(sealed.entries)
                        ),
                        self._journal,
                        "seal",
                    )
                except LeaseLostError as lost:
                    self._telemetry.ended(sealed, "adopted")
                    self._give_up_lost(sealed, lost)
                    return
            if sealed.job_id is None:
                job = await self._post(sealed, body, key)
                if job is None:
                    return
                # Accepted: the bytes are never sent again (the journal keeps its own copy).
                sealed.body = body = b""
            else:  # recovered after acceptance: follow the job we already have
                job = IssuanceJob(id=sealed.job_id, state=JobState.PENDING)
                self._posted(sealed)
            final = await self._follow(sealed, job)
            if final is not None:
                await self._conclude(sealed, job.id, final)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or a journal failure must not strand futures
            logger.exception("batch %s failed unexpectedly", sealed.key)
            self._telemetry.ended(sealed, "error", exc)
            self._fail_all(sealed.entries, exc)
        finally:
            self._posted(sealed)
            self._telemetry.finished(sealed)

    def completed(self, event: RewardBatchCompleted) -> bool:
        """A verified ``reward_batch.completed``: finish the batch following its job, if any."""
        job_id = event.issuance_job_id
        sealed = self._following.get(job_id)
        if sealed is None:
            # Maybe ours, with the POST's answer still on its way (a near-instant job):
            # kept a short while, bounded, for the batch that will follow it.
            early = self._early
            early[job_id] = (time.monotonic(), event)
            early.move_to_end(job_id)
            while len(early) > _EARLY_MAX:
                early.popitem(last=False)
            return False
        merchant = event.merchant_id
        job = None if merchant not in (None, sealed.partition.merchant_id) else (
            job_from_completion(event, sealed.entries)
        )  # fmt: skip
        if job is None:
            logger.info(
                "webhook for job %s (batch %s) does not account for the batch; polling it now",
                job_id, sealed.key,
            )  # fmt: skip
            self._tracker.notify_finished(job_id)
        else:
            logger.info("job %s (batch %s) ended, says its webhook", job_id, sealed.key)
            self._tracker.conclude(job_id, job)
        return True

    @contextlib.asynccontextmanager
    async def _waiting_turn(self) -> AsyncIterator[None]:
        """One of ``max_in_flight`` POST slots; ``queued_posts`` counts who waits for one.

        While the budget binds, due polls go first (see ``JobTracker.make_way``).
        """
        self.queued_posts += 1
        try:
            await self._in_flight.acquire()
            try:
                await self._tracker.make_way()
            except BaseException:
                self._in_flight.release()
                raise
        finally:
            self.queued_posts -= 1
        try:
            yield
        finally:
            self._in_flight.release()

    def _give_up_lost(self, sealed: SealedBatch, lost: LeaseLostError) -> None:
        """Our lease expired and another process adopted some items: it issues those.

        Their entries join that process's work (their callers get its result);
        the items still ours are sealed again, as a new batch (new content, new key).
        """
        gone = set(lost.item_ids)
        theirs = [e for e in sealed.entries if e.row_id in gone]
        mine = [e for e in sealed.entries if e.row_id not in gone]
        logger.warning(
            "batch %s: %d identifiers were adopted by another process (this one lost its"
            " journal lease); they are issued there", sealed.key, len(theirs),
        )  # fmt: skip
        assert self._join is not None  # only a fleet journal refuses a seal
        for entry in theirs:
            self._join(entry, entry.row_id or 0)
        if mine:
            self._counters.sealed_batches += 1
            self._spawn(SealedBatch(sealed.partition, mine))

    async def _conclude(self, sealed: SealedBatch, job_id: str, final: IssuanceJob) -> None:
        """Record the job's end (with a journal) and resolve the batch's entries from it."""
        if final.id != job_id:
            # Another job's answer is no evidence about ours (nor are its failures).
            final = IssuanceJob(
                id=job_id,
                state=final.state,
                unreadable=f"asked about job {job_id}, the server answered about {final.id}",
            )
        if self._journal is not None and sealed.batch_id is not None:
            await self._journal.finished(sealed.batch_id, job_to_json(final))
        state = final.state.value if final.unreadable is None else "unreadable"
        if final.state is JobState.FAILED and final.unreadable is None:
            logger.info("job %s (batch %s) failed", final.id, sealed.key)
            self._telemetry.ended(sealed, state, JobFailedError(final))
            self._fail_all(sealed.entries, JobFailedError(final))
        else:
            self._telemetry.ended(sealed, state)
            await self._resolve(sealed, final)
        if self._journal is not None and sealed.batch_id is not None:
            # Handed on (to callers, or on_outcome): a restart need not report them again.
            self._journal.reported(sealed.batch_id).add_done_callback(log_failed_write)

    async def _post(self, sealed: SealedBatch, body: bytes, key: str) -> IssuanceJob | None:
        """POST until accepted; None when the batch ended otherwise."""
        while True:
            try:
                async with self._waiting_turn():
                    self._counters.posts += 1
                    job = await self._client.issue_rewards_raw(body, key)
            except _UNKNOWN_FATE as exc:
                if self._journal is None:
                    logger.warning("batch %s not sent: %s", sealed.key, exc)
                    self._telemetry.ended(sealed, "not_sent", exc)
                    self._fail_all(sealed.entries, exc)
                    return None
                logger.warning(
                    "batch %s: %s; it stays journaled and is sent again in %gs",
                    sealed.key, exc, self._resend_after,
                )  # fmt: skip
                self._detach_all(sealed.entries, exc)
                await asyncio.sleep(self._resend_after)
                continue
            except APIError as exc:
                if exc.is_identifier_error:
                    self._posted(sealed)  # flush() waits for the halves, not the parent
                    self._telemetry.ended(sealed, "split")  # its halves are its children
                    await self._bisect(sealed, exc)
                else:
                    logger.warning("batch %s rejected: %s", sealed.key, exc)
                    self._telemetry.ended(sealed, "rejected", exc)
                    await self._forget(sealed.entries, sealed.batch_id)
                    self._fail_all(sealed.entries, exc)
                return None
            self._posted(sealed)
            self._counters.accepted += len(sealed.entries)
            self._telemetry.accepted(sealed, job.id)
            logger.info("batch %s accepted as job %s", sealed.key, job.id)
            if self._journal is not None and sealed.batch_id is not None:
                self._journal.accepted(sealed.batch_id, job.id).add_done_callback(log_failed_write)
            return job

    async def _follow(self, sealed: SealedBatch, job: IssuanceJob) -> IssuanceJob | None:
        """Wait for the job's end; None when the batch ended otherwise.

        When the job cannot be followed to its end (its poll got a final error
        such as 404 or 403), the batch was still accepted and may well have
        been issued: the job comes back with ``unreadable`` saying why, so its
        identifiers resolve UNKNOWN (and, with a journal, are recorded so).
        """
        tracked = self._tracker.track(job, merchant_id=sealed.partition.merchant_id)
        self._following[job.id] = sealed
        tracked.add_done_callback(lambda _: self._following.pop(job.id, None))
        early = self._early.pop(job.id, None)
        if early is not None and time.monotonic() - early[0] <= _EARLY_FOR:
            self.completed(early[1])  # its webhook beat the POST's answer here
        try:
            try:
                if self._job_timeout is None:
                    return await tracked
                return await asyncio.wait_for(asyncio.shield(tracked), self._job_timeout)
            except TimeoutError:
                error = JobTimeoutError(job.id)
                if self._journal is None:
                    self._tracker.untrack(job.id)
                    self._telemetry.ended(sealed, "timed_out", error)
                    self._fail_all(sealed.entries, error)
                    return None
                # The work goes on: current callers stop waiting, resubmissions join it.
                self._detach_all(sealed.entries, error)
                return await tracked
        except ThanxError as exc:
            logger.error(  # noqa: TRY400 - the error is expected and fully described here
                "job %s of batch %s cannot be followed: %s", job.id, sealed.key, exc
            )
            return IssuanceJob(
                id=job.id, state=job.state, unreadable=f"following it failed for good: {exc}"
            )

    async def _bisect(self, sealed: SealedBatch, exc: APIError) -> None:
        """Isolate the identifier the server refused; everyone else is sent again.

        When the server names the offender (``identifiers[123]`` in its
        message, of the type its code names), that identifier fails with the
        server's message and the rest is resent as one batch: about one POST
        per refused identifier. Otherwise the batch is resent in halves until
        the offender is alone. Either way the new batches have new content,
        hence new keys, and an error names the position in the batch the
        caller's identifier was first sealed into, not in a sub-batch.
        """
        entries = sealed.entries
        origin = sealed.origin or list(range(len(entries)))
        named = named_offender(exc, entries)
        if len(entries) == 1 or named is not None:
            index = 0 if named is None else named
            await self._refused(sealed, index, origin, exc)
            return
        middle = len(entries) // 2
        parts = [(entries[:middle], origin[:middle]), (entries[middle:], origin[middle:])]
        logger.info("batch %s refused (%s); resending in halves", sealed.key, exc.code)
        await self._resend(sealed, parts, dropped=[])

    async def _refused(
        self, sealed: SealedBatch, index: int, origin: list[int], exc: APIError
    ) -> None:
        """Fail the identifier at ``index`` with the server's reason; resend the others."""
        entries = sealed.entries
        entry = entries[index]
        rest = ([*entries[:index], *entries[index + 1 :]], [*origin[:index], *origin[index + 1 :]])
        if rest[0]:
            logger.info(
                "batch %s refused identifier %d (%s); resending the other %d",
                sealed.key, origin[index], exc.code, len(rest[0]),
            )  # fmt: skip
            if not await self._resend(sealed, [rest], dropped=[entry]):
                return  # the batch was adopted by another process: it decides
        else:
            await self._forget(entries, sealed.batch_id)
        message = _OFFENDER.sub(
            lambda m: f"identifiers[{origin[index]}]" if int(m.group(1)) == index else m.group(0),
            exc.message,
        )
        self._resolver.settle(
            entry,
            IssuanceOutcome(
                identifier=entry.identifier, status=OutcomeStatus.FAILED,
                error=message, dedupe_key=entry.dedupe_key,
            ),
        )  # fmt: skip

    async def _resend(
        self,
        sealed: SealedBatch,
        parts: list[tuple[list[Entry], list[int]]],
        dropped: list[Entry],
    ) -> bool:
        """Replace a refused batch by new batches of ``parts`` (journaled in one step).

        Returns False when a fleet journal refused: our lease expired and
        another process adopted the batch; its entries then join that
        process's work.
        """
        batches = [
            SealedBatch(sealed.partition, part, origin=positions) for part, positions in parts
        ]
        for batch in batches:
            await freeze(batch, self._namespace)
        if self._journal is not None and sealed.batch_id is not None:
            records = [(b.key or "", b.body or b"", _row_ids(b.entries)) for b in batches]
            try:
                ids = await self._journal.split(
                    sealed.batch_id, sealed.partition.ids, records, dropped=_row_ids(dropped)
                )
            except LeaseLostError as lost:
                self._give_up_lost(sealed, lost)
                return False
            for batch, batch_id in zip(batches, ids, strict=True):
                batch.batch_id = batch_id
        for batch in batches:
            self._counters.sealed_batches += 1
            self._spawn(batch)
        return True

    async def _resolve(self, sealed: SealedBatch, job: IssuanceJob) -> None:
        verdict = JobVerdict.of(job, len(sealed.entries))
        entries = sealed.entries
        logger.info(
            "job %s (batch %s) %s: resolving %d identifiers",
            job.id, sealed.key, job.state.value, len(entries),
        )  # fmt: skip
        # Settled entries are dropped slice by slice as well: freeing 10,000 of
        # them (and what they hold) in one go would stall the loop just the same.
        start = 0
        while entries:
            run = entries[:RESOLVE_SLICE]
            self._resolver.settle_by_verdict(sealed.partition, run, start, verdict)
            del entries[:RESOLVE_SLICE]
            start += len(run)
            del run
            if entries:
                await asyncio.sleep(0)  # let the caller's loop breathe between slices

    async def _forget(self, entries: Sequence[Entry], batch_id: int | None) -> None:
        # A rejection that issued nothing is not a recorded result: a resubmission tries again.
        if self._journal is not None:
            await self._journal.forget(_row_ids(entries), batch_id=batch_id)

    def _fail_all(self, entries: Sequence[Entry], exc: BaseException) -> None:
        for entry in entries:
            self._resolver.fail(entry, exc)

    def _detach_all(self, entries: Sequence[Entry], exc: BaseException) -> None:
        for entry in entries:
            self._resolver.detach(entry, exc)


#: How the API names an identifier in an error message: ``identifiers[123]``.
_OFFENDER = re.compile(r"identifiers\[(\d+)\]")
_CODE_TYPES = {"USER_EMAIL_INVALID": "email", "USER_PHONE_INVALID": "phone"}


def named_offender(exc: APIError, entries: Sequence[Entry]) -> int | None:
    """The position the server's message blames, if it names one of the right type."""
    match = _OFFENDER.search(exc.message)
    if match is None:
        return None
    index = int(match.group(1))
    if index >= len(entries) or entries[index].type != _CODE_TYPES.get(exc.code or ""):
        return None  # not a position of this batch, or not what the code says: halve instead
    return index


def _row_ids(entries: Sequence[Entry]) -> list[int]:
    return [e.row_id for e in entries if e.row_id is not None]
