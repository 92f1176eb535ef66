"""RewardBatcher: from one identifier to one outcome, exactly once.

Callers submit identifiers one at a time; each partition (merchant, campaign,
variant) has at most one open batch, sealed at ``max_batch_size``, at
``max_wait`` after its first identifier, or on ``flush()`` / ``aclose()``. A
sealed batch is sent once with a deterministic idempotency key (retries reuse
its bytes and key), its job is followed by the tracker, and every caller's
future resolves with that person's :class:`IssuanceOutcome`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from collections.abc import Sequence
from types import TracebackType
from typing import Self, cast

import attrs

from thanx_async._accumulator import Entry, OpenBatch, Partition, SealedBatch, seal
from thanx_async._client import MAX_IDENTIFIERS, ThanxClient
from thanx_async._errors import (
    APIError,
    BatcherClosedError,
    JobFailedError,
    ThanxError,
)
from thanx_async._identifiers import Identifier
from thanx_async._jobs import JobTracker
from thanx_async._models import IssuanceJob, JobState
from thanx_async._outcomes import IssuanceOutcome, JobVerdict, OutcomeStatus

__all__ = ["BatcherStats", "RewardBatcher"]

logger = logging.getLogger("thanx_async.batcher")

#: Futures resolved per event-loop turn, so 10,000 outcomes never stall the caller's loop.
RESOLVE_SLICE = 500
#: Default back-pressure bound: about ten full batches.
DEFAULT_MAX_PENDING = 10 * MAX_IDENTIFIERS


@attrs.frozen(kw_only=True)
class BatcherStats:
    """A snapshot of a batcher's counters.

    ``retries`` and ``rate_limited`` (429s received) are the client's, so they
    include any other traffic on the same client.
    """

    submitted: int
    pending: int
    sealed_batches: int
    posts: int
    polls: int
    retries: int
    rate_limited: int
    issued: int
    failed: int
    unknown: int
    jobs_tracked: int


@attrs.define
class _Counters:
    submitted: int = 0
    sealed_batches: int = 0
    posts: int = 0
    polls: int = 0
    issued: int = 0
    failed: int = 0
    unknown: int = 0


class RewardBatcher:
    """Gathers identifiers into batches, issues them once, and resolves one future each.

    Args:
        client: the client (and so the rate budget) to send through.
        merchant_id: default merchant for submissions.
        campaign_id: default campaign.
        variant_id: default variant.
        max_batch_size: identifiers per batch, at most 10,000.
        max_wait: seconds a partition's first identifier may wait before its batch is sealed.
        max_pending: unresolved identifiers allowed before ``submit`` waits (FIFO).
        max_in_flight: issue POSTs in flight at once.
        job_timeout: seconds from acceptance until a job's futures raise ``JobTimeoutError``.
        close_timeout: seconds ``aclose()`` waits for outstanding jobs.
        namespace: mixed into every idempotency key, to keep otherwise identical
            batches of different applications apart.

    Example:
        >>> async def main(client: ThanxClient) -> None:
        ...     async with RewardBatcher(client, merchant_id="m", campaign_id="c",
        ...                              variant_id="v") as batcher:
        ...         outcome = await batcher.issue("jane@example.com")
        ...         print(outcome.status)
    """

    def __init__(
        self,
        client: ThanxClient,
        *,
        merchant_id: str | None = None,
        campaign_id: str | None = None,
        variant_id: str | None = None,
        max_batch_size: int = MAX_IDENTIFIERS,
        max_wait: float = 1.0,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_in_flight: int = 4,
        job_timeout: float | None = 600.0,
        close_timeout: float = 60.0,
        namespace: str = "",
    ) -> None:
        if not 1 <= max_batch_size <= MAX_IDENTIFIERS:
            raise ValueError(f"max_batch_size must be 1..{MAX_IDENTIFIERS}, got {max_batch_size}")
        if max_wait < 0:
            raise ValueError("max_wait must be >= 0")
        if max_pending < 1 or max_in_flight < 1:
            raise ValueError("max_pending and max_in_flight must be >= 1")
        self._client = client
        self._defaults = (merchant_id, campaign_id, variant_id)
        self._max_batch_size = max_batch_size
        self._max_wait = max_wait
        self._max_pending = max_pending
        self._close_timeout = close_timeout
        self._namespace = namespace
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._counters = _Counters()
        self._tracker = JobTracker(client, job_timeout=job_timeout, on_poll=self._count_poll)
        self._partitions: dict[tuple[str, str, str], Partition] = {}
        self._open: dict[Partition, OpenBatch] = {}
        self._unresolved: dict[tuple[Partition, str, str | None], Entry] = {}
        self._pending = 0
        self._admission: deque[asyncio.Future[None]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._unposted: dict[SealedBatch, asyncio.Event] = {}
        self._closing = False
        self._closed = asyncio.Event()

    def __repr__(self) -> str:
        return f"<RewardBatcher pending={self._pending} open={len(self._open)}>"

    # -- public API ---------------------------------------------------------

    async def submit(
        self,
        identifier: str | Identifier,
        *,
        merchant_id: str | None = None,
        campaign_id: str | None = None,
        variant_id: str | None = None,
        dedupe_key: str | None = None,
    ) -> asyncio.Future[IssuanceOutcome]:
        """Queue one identifier; returns a future of its outcome.

        The identifier is validated here: an invalid one raises and nothing is
        queued. While ``max_pending`` identifiers are unresolved this waits
        (first come, first served). Cancelling the returned future before its
        batch is sealed takes the identifier out of the batch.

        Raises:
            InvalidIdentifierError: the identifier is not a valid email or E.164 phone.
            ValueError: no merchant, campaign or variant for this submission.
            BatcherClosedError: the batcher is closing or closed.
        """
        self._check_open()
        ident = Identifier.parse(identifier)
        partition = self._partition(merchant_id, campaign_id, variant_id)
        key = (partition, ident.value, dedupe_key)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[IssuanceOutcome] = loop.create_future()
        entry = self._unresolved.get(key)
        if entry is None:
            await self._admit()
            entry = self._unresolved.get(key)  # someone may have added it while we waited
            if entry is None:
                entry = self._add(key, ident, dedupe_key, loop.time())
            else:
                self._release_slot()
        self._counters.submitted += 1
        entry.callers.append(cast("asyncio.Future[object]", future))
        future.add_done_callback(functools.partial(self._caller_done, entry))
        if not entry.sealed:
            batch = self._open.get(partition)
            if batch is not None and len(batch.entries) >= self._max_batch_size:
                self._seal(batch)
        return future

    async def issue(
        self,
        identifier: str | Identifier,
        *,
        merchant_id: str | None = None,
        campaign_id: str | None = None,
        variant_id: str | None = None,
        dedupe_key: str | None = None,
    ) -> IssuanceOutcome:
        """Submit one identifier and wait for its outcome (``submit`` then ``await``)."""
        future = await self.submit(
            identifier,
            merchant_id=merchant_id,
            campaign_id=campaign_id,
            variant_id=variant_id,
            dedupe_key=dedupe_key,
        )
        return await future

    async def flush(self) -> None:
        """Seal every open batch and wait until every sealed batch has been sent.

        Returns once each batch was accepted (its job is being followed) or
        rejected; outcomes arrive on the futures as jobs finish.
        """
        for batch in list(self._open.values()):
            self._seal(batch)
        events = list(self._unposted.values())
        if events:
            await asyncio.gather(*(e.wait() for e in events))

    def job_finished(self, job_id: str) -> bool:
        """Hint that a job ended (e.g. from a webhook): it is polled at once.

        Returns False when no batch of this batcher is waiting on that job.
        """
        return self._tracker.notify_finished(job_id)

    def stats(self) -> BatcherStats:
        """The batcher's counters now."""
        c, client = self._counters, self._client.stats
        return BatcherStats(
            submitted=c.submitted,
            pending=self._pending,
            sealed_batches=c.sealed_batches,
            posts=c.posts,
            polls=c.polls,
            retries=client.retries,
            rate_limited=client.rate_limited,
            issued=c.issued,
            failed=c.failed,
            unknown=c.unknown,
            jobs_tracked=self._tracker.tracked,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop admission, send every open batch, wait for jobs, then fail what is left.

        Waits up to ``close_timeout`` for outstanding jobs. Identifiers still
        unresolved then fail with :class:`BatcherClosedError` (their job may
        still complete on the server). No task of the batcher survives.
        """
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        while self._admission:
            waiter = self._admission.popleft()
            if not waiter.done():
                waiter.set_exception(BatcherClosedError("the batcher closed while waiting"))
        for batch in list(self._open.values()):
            self._seal(batch)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self._close_timeout)
        left = list(self._unresolved.values())
        for entry in left:
            self._fail(
                entry, BatcherClosedError("the batcher closed before this outcome was known")
            )
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._tracker.aclose(BatcherClosedError("the batcher closed"))
        self._closed.set()
        c = self._counters
        log = logger.warning if left else logger.info
        log(
            "batcher closed: %d submitted, %d issued, %d failed, %d unknown, %d unresolved",
            c.submitted, c.issued, c.failed, c.unknown, len(left),
        )  # fmt: skip

    # -- admission ----------------------------------------------------------

    def _check_open(self) -> None:
        if self._closing:
            raise BatcherClosedError("the batcher is closed")

    def _partition(
        self, merchant_id: str | None, campaign_id: str | None, variant_id: str | None
    ) -> Partition:
        merchant = merchant_id or self._defaults[0]
        campaign = campaign_id or self._defaults[1]
        variant = variant_id or self._defaults[2]
        if not (merchant and campaign and variant):
            missing = [
                name
                for name, value in (
                    ("merchant_id", merchant),
                    ("campaign_id", campaign),
                    ("variant_id", variant),
                )
                if not value
            ]
            raise ValueError(
                f"no {', '.join(missing)}: pass it to submit() or set a default on RewardBatcher()"
            )
        key = (merchant, campaign, variant)
        partition = self._partitions.get(key)
        if partition is None:
            partition = self._partitions[key] = Partition(merchant, campaign, variant)
        return partition

    async def _admit(self) -> None:
        """Take one pending slot, waiting FIFO behind earlier submitters when full."""
        if self._pending < self._max_pending and not self._admission:
            self._pending += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._admission.append(waiter)
        try:
            await waiter  # the releaser hands its slot over before waking us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release_slot()  # granted, then cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._admission.remove(waiter)
            raise
        self._check_open()

    def _release_slot(self) -> None:
        self._pending -= 1
        while self._admission and self._pending < self._max_pending:
            waiter = self._admission.popleft()
            if not waiter.done():
                self._pending += 1
                waiter.set_result(None)

    def _add(
        self,
        key: tuple[Partition, str, str | None],
        ident: Identifier,
        dedupe_key: str | None,
        now: float,
    ) -> Entry:
        partition = key[0]
        batch = self._open.get(partition)
        if batch is None:
            batch = self._open[partition] = OpenBatch(partition, now)
            if self._max_wait == 0:
                batch.timer = asyncio.get_running_loop().call_soon(self._seal_due, batch)
            else:
                batch.timer = asyncio.get_running_loop().call_at(
                    now + self._max_wait, self._seal_due, batch
                )
        entry = Entry(key, ident, dedupe_key)
        batch.entries[key] = entry
        self._unresolved[key] = entry
        return entry

    def _caller_done(self, entry: Entry, future: asyncio.Future[IssuanceOutcome]) -> None:
        if not future.cancelled() or entry.sealed:
            return  # resolved normally, or cancelled after the seal: only the waiting stops
        entry.callers.remove(cast("asyncio.Future[object]", future))
        if entry.callers:
            return  # another caller still wants this identifier
        batch = self._open.get(entry.key[0])
        if batch is not None and batch.entries.pop(entry.key, None) is not None:
            if self._unresolved.get(entry.key) is entry:
                del self._unresolved[entry.key]
            self._release_slot()
            if not batch.entries:
                if batch.timer is not None:
                    batch.timer.cancel()
                del self._open[batch.partition]

    # -- sealing and sending ------------------------------------------------

    def _seal_due(self, batch: OpenBatch) -> None:
        if self._open.get(batch.partition) is batch:
            self._seal(batch)

    def _seal(self, batch: OpenBatch) -> None:
        del self._open[batch.partition]
        if batch.timer is not None:
            batch.timer.cancel()
        if not batch.entries:
            return
        sealed = seal(batch.partition, list(batch.entries.values()), self._namespace)
        self._counters.sealed_batches += 1
        logger.info(
            "sealed batch %s: %d identifiers for %s/%s/%s",
            sealed.key, len(sealed.entries), batch.partition.merchant_id,
            batch.partition.campaign_id, batch.partition.variant_id,
        )  # fmt: skip
        self._spawn(sealed)

    def _spawn(self, sealed: SealedBatch) -> None:
        self._unposted[sealed] = asyncio.Event()
        task = asyncio.get_running_loop().create_task(self._run_batch(sealed))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _posted(self, sealed: SealedBatch) -> None:
        event = self._unposted.pop(sealed, None)
        if event is not None:
            event.set()

    async def _run_batch(self, sealed: SealedBatch) -> None:
        try:
            job = await self._post(sealed)
            if job is None:
                return
            try:
                final = await self._tracker.track(job, merchant_id=sealed.partition.merchant_id)
            except ThanxError as exc:
                self._fail_all(sealed.entries, exc)
                return
            if final.state is JobState.FAILED:
                logger.info("job %s (batch %s) failed", final.id, sealed.key)
                self._fail_all(sealed.entries, JobFailedError(final))
                return
            await self._resolve(sealed, final)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not strand futures
            logger.exception("batch %s failed unexpectedly", sealed.key)
            self._fail_all(sealed.entries, exc)
        finally:
            self._posted(sealed)

    async def _post(self, sealed: SealedBatch) -> IssuanceJob | None:
        """POST the batch; returns the accepted job, or None when it resolved otherwise."""
        try:
            async with self._in_flight:
                self._counters.posts += 1
                job = await self._client.issue_rewards_raw(sealed.body, sealed.key)
        except APIError as exc:
            if exc.is_identifier_error:
                self._posted(sealed)  # flush() waits for the halves, not the parent
                await self._bisect(sealed, exc)
            else:
                logger.warning("batch %s rejected: %s", sealed.key, exc)
                self._fail_all(sealed.entries, exc)
            return None
        except ThanxError as exc:
            logger.warning("batch %s not sent: %s", sealed.key, exc)
            self._fail_all(sealed.entries, exc)
            return None
        self._posted(sealed)
        logger.info("batch %s accepted as job %s", sealed.key, job.id)
        return job

    async def _bisect(self, sealed: SealedBatch, exc: APIError) -> None:
        """Resend halves of a batch the server refused over one identifier, until it is isolated."""
        if len(sealed.entries) == 1:
            (entry,) = sealed.entries
            self._settle(
                entry,
                IssuanceOutcome(
                    identifier=entry.identifier, status=OutcomeStatus.FAILED,
                    error=exc.message, dedupe_key=entry.dedupe_key,
                ),
            )  # fmt: skip
            return
        middle = len(sealed.entries) // 2
        halves = [sealed.entries[:middle], sealed.entries[middle:]]
        logger.info("batch %s refused (%s); resending in halves", sealed.key, exc.code)
        for half in halves:
            self._counters.sealed_batches += 1
            self._spawn(seal(sealed.partition, half, self._namespace))

    async def _resolve(self, sealed: SealedBatch, job: IssuanceJob) -> None:
        verdict = JobVerdict.of(job, len(sealed.entries))
        entries = sealed.entries
        for start in range(0, len(entries), RESOLVE_SLICE):
            if start:
                await asyncio.sleep(0)  # let the caller's loop breathe between slices
            for index in range(start, min(start + RESOLVE_SLICE, len(entries))):
                entry = entries[index]
                self._settle(entry, verdict.outcome(index, entry.identifier, entry.dedupe_key))
        logger.info(
            "job %s (batch %s) %s: %d identifiers",
            job.id, sealed.key, job.state.value, len(entries),
        )  # fmt: skip

    # -- resolution ---------------------------------------------------------

    def _forget(self, entry: Entry) -> bool:
        """Drop an entry from the unresolved set; False if it was already resolved."""
        if self._unresolved.get(entry.key) is not entry:
            return False
        del self._unresolved[entry.key]
        self._release_slot()
        return True

    def _settle(self, entry: Entry, outcome: IssuanceOutcome) -> None:
        if not self._forget(entry):
            return
        if outcome.status is OutcomeStatus.ISSUED:
            self._counters.issued += 1
        elif outcome.status is OutcomeStatus.FAILED:
            self._counters.failed += 1
        else:
            self._counters.unknown += 1
        for caller in entry.callers:
            if not caller.done():
                caller.set_result(outcome)

    def _fail(self, entry: Entry, exc: BaseException) -> None:
        if not self._forget(entry):
            return
        self._counters.failed += 1
        for caller in entry.callers:
            if not caller.done():
                caller.set_exception(exc)

    def _fail_all(self, entries: Sequence[Entry], exc: BaseException) -> None:
        for entry in entries:
            self._fail(entry, exc)

    def _count_poll(self) -> None:
        self._counters.polls += 1
