"""RewardBatcher: from one identifier to one outcome, exactly once.

Callers submit identifiers one at a time; each partition (merchant, campaign,
variant) has at most one open batch, sealed at ``max_batch_size``, at
``max_wait`` after its first identifier, or on ``flush()`` / ``aclose()``. A
sealed batch is sent once with a deterministic idempotency key (retries reuse
its bytes and key), its job is followed by the tracker, and every caller's
future resolves with that person's :class:`IssuanceOutcome`. With a journal,
admission is durable and work survives a crash (see ``_durable.py``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
import warnings
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Self, cast

import attrs

from thanx_async._accumulator import (
    Entry,
    EntryKey,
    OpenBatch,
    Partition,
    SealedBatch,
    needs_escaping,
    seal,
)
from thanx_async._client import MAX_IDENTIFIERS, ThanxClient
from thanx_async._durable import Durable
from thanx_async._errors import BatcherClosedError, JobFailedError
from thanx_async._identifiers import Identifier, check_raw, check_text_argument, normalise
from thanx_async._jobs import JobTracker
from thanx_async._journal import Journal
from thanx_async._journal_protocol import JournalBackend
from thanx_async._outcomes import IssuanceOutcome
from thanx_async._recent import DEFAULT_RECENT_RESULTS, RecentResults
from thanx_async._resolution import Counters, Resolver
from thanx_async._runner import BatchRunner
from thanx_async._telemetry import BatchTelemetry
from thanx_async._transport._ratelimit import BudgetSignal

if TYPE_CHECKING:
    from thanx_async.webhooks import RewardBatchCompleted

__all__ = ["BatcherStats", "RewardBatcher"]

logger = logging.getLogger("thanx_async.batcher")

#: Seconds a job's safety-net poll waits after its predicted end for its webhook.
DEFAULT_WEBHOOK_GRACE = 2.0
#: Default back-pressure bound: about ten full batches.
DEFAULT_MAX_PENDING = 10 * MAX_IDENTIFIERS
#: Longest a run of submit() calls that never suspend holds the event loop, in seconds.
YIELD_EVERY = 0.001
# The clock is read every this many submissions (~0.1 ms of work), not on each one.
_CHECK_EVERY = 64


@attrs.frozen(kw_only=True)
class BatcherStats:
    """A snapshot of a batcher's counters.

    ``accepted`` counts identifiers whose batch the server accepted.
    ``retries`` and ``rate_limited`` (429s received) are the client's, so they
    include any other traffic on the same client.
    """

    submitted: int
    pending: int
    sealed_batches: int
    posts: int
    polls: int
    accepted: int
    retries: int
    rate_limited: int
    issued: int
    failed: int
    unknown: int
    jobs_tracked: int


class RewardBatcher:
    """Gathers identifiers into batches, issues them once, and resolves one future each.

    Args:
        client: the client (and so the rate budget) to send through.
        merchant_id: default merchant for submissions.
        campaign_id: default campaign.
        variant_id: default variant.
        max_batch_size: identifiers per batch, at most 10,000.
        max_wait: seconds a partition's first identifier may wait before its batch is
            sealed. While the rate budget binds (the limiter says so, or POSTs wait for
            one of ``max_in_flight`` slots), a due batch stays open and keeps filling
            until a POST could go at once or it holds ``max_batch_size``: under
            saturation every POST is as full as the traffic allows.
        max_pending: unresolved identifiers allowed before ``submit`` waits (FIFO).
            The default, 100,000, is about ten full batches.
        max_in_flight: issue POSTs in flight at once.
        job_timeout: seconds from acceptance until a job's callers get
            ``JobTimeoutError`` (None: wait as long as it takes). With a journal
            the job is still followed and a resubmission joins it.
        close_timeout: seconds ``aclose()`` waits for outstanding jobs.
        namespace: mixed into every idempotency key, to keep otherwise identical
            batches of different applications apart.
        journal: a path for a SQLite journal, or a :class:`Journal`, making
            ``submit`` durable and the work crash-safe.
        dedupe_window: seconds a finished result answers a resubmission of the
            same (partition, identifier, dedupe key) instead of issuing again:
            looked up in the journal, or without one in memory (the last
            ``recent_results`` results).
        on_outcome: a plain or async callable given every outcome that has no
            caller waiting for it: work resumed from the journal after a restart
            or adopted from a dead process of the fleet, and outcomes whose
            callers stopped waiting (a deadline passed, a future was cancelled
            after its seal). An identifier whose batch failed comes as a
            ``FAILED`` outcome with the error's text. Called on the event loop;
            an exception it raises is logged, never lost silently; an async
            one runs as a task, awaited (up to ``close_timeout``) by ``aclose()``.
        webhook_grace: when Thanx's webhooks are received (see
            :meth:`expect_webhooks`), seconds after a job's predicted end its
            safety-net poll waits for the ``reward_batch.completed`` delivery.
            None (the default) until a ``WebhookReceiver`` is given this batcher.
        recent_results: without a journal, how many finished results are
            remembered in memory to answer resubmissions (about 190 bytes
            each; 0 remembers none). With a journal the journal remembers.

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
        journal: str | os.PathLike[str] | JournalBackend | None = None,
        dedupe_window: float = 86_400.0,
        recent_results: int = DEFAULT_RECENT_RESULTS,
        on_outcome: Callable[[IssuanceOutcome], object] | None = None,
        webhook_grace: float | None = None,
    ) -> None:
        if not 1 <= max_batch_size <= MAX_IDENTIFIERS:
            raise ValueError(f"max_batch_size must be 1..{MAX_IDENTIFIERS}, got {max_batch_size}")
        if max_wait < 0:
            raise ValueError("max_wait must be >= 0")
        if max_pending < 1 or max_in_flight < 1:
            raise ValueError("max_pending and max_in_flight must be >= 1")
        if isinstance(journal, (str, os.PathLike)):
            journal = Journal(journal, dedupe_window=dedupe_window)
        self._client = client
        self._defaults = (merchant_id, campaign_id, variant_id)
        self._max_batch_size = max_batch_size
        self._max_wait = max_wait
        self._close_timeout = close_timeout
        self._namespace = namespace
        self._counters = Counters()
        # Budget-aware sealing: a due batch stays open while the budget binds,
        # looked at again every _recheck seconds (at most max_wait).
        limiter = client.limiter
        self._budget = limiter if isinstance(limiter, BudgetSignal) else None
        self._recheck = min(max(max_wait, 0.01), 0.05)
        if recent_results < 0 or dedupe_window < 0:
            raise ValueError("recent_results and dedupe_window must be >= 0")
        recent = None if journal is not None else RecentResults(recent_results, dedupe_window)
        self._resolver = Resolver(max_pending, self._counters, recent)
        self._on_outcome = on_outcome
        self._resolver.on_orphan = self._orphan
        self._telemetry = BatchTelemetry(client._telemetry)  # spans and metrics, when an SDK is on
        self._telemetry.watch(self._resolver)
        self._callbacks: set[asyncio.Task[object]] = set()
        self._unreported = 0  # outcomes nobody waited for, with no on_outcome to give them to
        self._tracker = JobTracker(
            client,
            job_timeout=None,
            on_poll=self._count_poll,
            budget=self._budget,
            telemetry=self._telemetry,
        )
        self._webhook_grace = webhook_grace
        if webhook_grace is not None:
            self._tracker.expect_pushes(webhook_grace)
        self._durable = (
            None
            if journal is None
            else Durable(
                journal,
                client=client,
                resolver=self._resolver,
                counters=self._counters,
                partition=self._partition,
                enqueue=self._enqueue,
                spawn=self._spawn,
                closed=lambda: self._final,
                telemetry=self._telemetry,
            )
        )
        self._runner = BatchRunner(
            client=client,
            tracker=self._tracker,
            resolver=self._resolver,
            counters=self._counters,
            journal=journal,
            namespace=namespace,
            max_in_flight=max_in_flight,
            job_timeout=job_timeout,
            spawn=self._spawn,
            posted=self._posted,
            join=None
            if self._durable is None or self._durable.fleet is None
            else self._durable.join,
            telemetry=self._telemetry,
        )
        self._partitions: dict[tuple[str, str, str], Partition] = {}
        self._default_partition: Partition | None = None
        self._open: dict[Partition, OpenBatch] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._unposted: dict[SealedBatch, asyncio.Event] = {}
        self._started: asyncio.Future[None] | None = None
        self._ready = False  # started without error: submit skips the start check
        self._closing = False  # aclose() was called: no more admissions
        self._final = False  # the last seal is done: a late admission stays journaled
        self._closed = False  # every task stopped, the journal released
        self._closer: asyncio.Task[None] | None = None
        self._until_check = _CHECK_EVERY
        self._yielded_at = 0.0

    def __repr__(self) -> str:
        return f"<RewardBatcher pending={self._resolver.pending} open={len(self._open)}>"

    # -- public API ---------------------------------------------------------

    async def submit(  # noqa: PLR0912, PLR0915 - the per-identifier hot path, inlined on purpose
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
        (first come, first served). With a journal it returns only once the
        identifier is committed to disk; a resubmission of a finished
        (partition, identifier, dedupe key) within ``dedupe_window`` gets the
        recorded result and nothing is sent. Cancelling the returned future
        before its batch is sealed takes the identifier out of the batch.

        Raises:
            InvalidIdentifierError: the identifier is not a valid email or E.164 phone.
            ValueError: no merchant, campaign or variant for this submission, or a
                ``dedupe_key`` longer than 1,000 characters or not encodable text.
            TypeError: a ``dedupe_key`` (or merchant, campaign, variant id) that is
                not a ``str``.
            BatcherClosedError: the batcher is closing or closed.
            JournalError: the journal could not record the identifier.
        """
        if self._closing:
            raise BatcherClosedError("the batcher is closed")
        escape = False
        if isinstance(identifier, Identifier):  # validated when built (unless built by hand)
            type_, value = identifier.type, identifier.value
            check_raw(type_, value)
            escape = needs_escaping(value)
        else:
            type_, value = normalise(identifier)
        if dedupe_key is not None:
            check_text_argument("dedupe_key", dedupe_key)
        if merchant_id is None and campaign_id is None and variant_id is None:
            partition = self._default_partition
            if partition is None:  # raises if a default is missing
                partition = self._default_partition = self._partition(None, None, None)
        else:
            partition = self._partition(merchant_id, campaign_id, variant_id)
        if not self._ready:
            await self._start()
            self._check_open()  # closed while we waited for the start?
        key: EntryKey = value if dedupe_key is None else (value, dedupe_key)
        future: asyncio.Future[IssuanceOutcome]
        resolver = self._resolver
        known = resolver.unresolved.get(partition)
        entry = None if known is None else known.get(key)
        recent = resolver.recent
        if entry is None and recent is not None and recent.results:
            result = recent.get(partition, key)
            if result is not None:  # finished within dedupe_window: the same answer again
                self._counters.submitted += 1
                return _answered(result)
        if entry is None:
            if resolver.pending < resolver.max_pending and not resolver.waiting:
                resolver.pending += 1  # Resolver.try_admit(), inline
            else:
                entry = await self._wait_for_slot(partition, key)
                known = None  # the index may have changed while we waited
            if entry is None:
                # The new entry is this caller's future. No done-callback on it
                # (it would cost ~300 bytes each): a cancelled caller is noticed
                # when its batch is sealed, which is when it matters.
                entry = future = Entry(partition, type_, value, dedupe_key, escape=escape)
                if known is None:
                    resolver.add(entry)
                else:
                    known[key] = entry
                batch = self._open.get(partition)
                if batch is None:  # a new batch: an SDK may have been set up since the last one
                    self._telemetry.refresh()
                if self._telemetry.per_item:  # an SDK records: link the caller, time its wait
                    self._telemetry.submitted(partition, entry)
                if (
                    batch is not None
                    and self._durable is None
                    and len(batch.entries) < self._max_batch_size - 1
                ):
                    batch.entries.append(entry)  # _enqueue(), inline: no seal due
                elif self._durable is None:
                    self._enqueue(entry)
                else:
                    self._durable.admit(entry)
            else:
                resolver.release()
                future = asyncio.get_running_loop().create_future()
                entry.add_caller(future)
        else:
            future = asyncio.get_running_loop().create_future()
            entry.add_caller(future)
        self._counters.submitted += 1
        admission = entry.durable
        if admission is not None and not admission.done.done():
            try:
                await admission.wait()  # the durable acknowledgement
            except BaseException:
                future.cancel()  # nobody will ever hold this future
                raise
        else:
            self._until_check -= 1
            if not self._until_check:
                await self._share_the_loop()
        return future

    async def _share_the_loop(self) -> None:
        """Yield to the event loop if this batcher has held it for over ``YIELD_EVERY``.

        ``for x in xs: await batcher.submit(x)`` never suspends on its own (no
        journal, no back-pressure): without this, batches sealed meanwhile would
        not be POSTed and the application's other tasks would starve.
        """
        self._until_check = _CHECK_EVERY
        now = time.perf_counter()
        if now - self._yielded_at >= YIELD_EVERY:
            await asyncio.sleep(0)
            self._yielded_at = time.perf_counter()

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
        await self._start()
        if self._durable is not None:
            await self._durable.settled()
        self._seal_all()
        events = list(self._unposted.values())
        if events:
            await asyncio.gather(*(e.wait() for e in events))

    def job_finished(self, job_id: str) -> bool:
        """Hint that a job ended (e.g. from a webhook): it is polled at once.

        Returns False when no batch of this batcher is waiting on that job.
        """
        return self._tracker.notify_finished(job_id)

    def receive_webhook(self, event: object) -> bool:
        """Apply a verified Thanx webhook (called by a ``WebhookReceiver``).

        A ``reward_batch.completed`` for a job one of this batcher's batches
        waits on resolves that batch at once, without a poll: failures are
        matched by value, everyone else is ``ISSUED`` when the delivery's
        counts account for the whole batch. When they do not (or a failure
        names a value the batch holds several times, under different dedupe
        keys), the job is polled at once instead. Deliveries for other jobs,
        ``reward.issued`` (one per reward) and unknown events are ignored
        cheaply. Duplicates are harmless.

        Returns:
            Whether a batch of this batcher was waiting on that job.
        """
        if getattr(event, "event", None) != "reward_batch.completed":
            return False
        return self._runner.completed(cast("RewardBatchCompleted", event))

    def expect_webhooks(self, grace: float | None = None) -> None:
        """Webhooks will say when jobs end: poll each job only ``grace`` s after its predicted end.

        Called by :class:`~thanx_async.webhooks.WebhookReceiver` (and
        ``thanx_async.redis.WebhookRelay``) for the batchers it is given, or
        pass ``webhook_grace`` to the constructor. A job whose webhook arrives
        then costs no poll; polling stays the safety net, as Thanx never
        retries a webhook.

        Args:
            grace: seconds; None keeps the ``webhook_grace`` given to the
                constructor, or else 2 s.
        """
        if grace is None:
            grace = DEFAULT_WEBHOOK_GRACE if self._webhook_grace is None else self._webhook_grace
        self._webhook_grace = grace
        self._tracker.expect_pushes(grace)

    def stats(self) -> BatcherStats:
        """The batcher's counters now."""
        c, client = self._counters, self._client.stats
        return BatcherStats(
            submitted=c.submitted,
            pending=self._resolver.pending,
            sealed_batches=c.sealed_batches,
            posts=c.posts,
            polls=c.polls,
            accepted=c.accepted,
            retries=client.retries,
            rate_limited=client.rate_limited,
            issued=c.issued,
            failed=c.failed,
            unknown=c.unknown,
            jobs_tracked=self._tracker.tracked,
        )

    async def __aenter__(self) -> Self:
        self._check_open()
        await self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop admission, send every open batch, wait for jobs, then end what is left.

        Waits up to ``close_timeout`` for outstanding jobs. Callers still
        waiting then get :class:`BatcherClosedError`; without a journal their
        job may still complete on the server, with one it stays journaled and
        resumes on the next start. No task of the batcher survives.

        Safe to call more than once and from several tasks: every call returns
        once the batcher is closed. Cancelling a call (``asyncio.wait_for``,
        a timeout around it) skips the waiting, not the cleanup: what is left
        ends as it would after ``close_timeout``, the tasks stop and the
        journal is released before the cancellation propagates.
        """
        closer = self._closer
        if closer is None:
            self._closing = True  # at once: no submit() is admitted from now on
            self._resolver.close()
            closer = self._closer = asyncio.get_running_loop().create_task(
                self._close(), name="thanx_async batcher close"
            )
        try:
            await asyncio.shield(closer)
        except asyncio.CancelledError:
            if not closer.done():
                closer.cancel()  # hurry: from waiting straight to cleanup
                await asyncio.wait([closer])
            raise

    async def _close(self) -> None:
        """The close itself, in a task of its own so a cancelled caller cannot cut it short."""
        try:
            await self._drain()
        except asyncio.CancelledError:
            # Hurried by a cancelled aclose(), or by the loop shutting down:
            # the cleanup below still runs to the end.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        finally:
            await self._finish_close()

    async def _drain(self) -> None:
        """The graceful part of closing: send everything, wait up to ``close_timeout``."""
        if self._started is not None and not self._started.done():
            await asyncio.wait([self._started])
        if self._durable is not None:
            await self._durable.settled()
        self._seal_all()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self._close_timeout)
        if self._callbacks:
            await asyncio.wait(set(self._callbacks), timeout=self._close_timeout)

    async def _finish_close(self) -> None:
        """End what is left, stop every task, release the journal; always runs to the end."""
        self._final = True
        for batch in self._open.values():  # never sealed (a hurried close): no timer may fire
            if batch.timer is not None:
                batch.timer.cancel()
        self._open.clear()
        if self._started is not None and not self._started.done():
            await asyncio.wait([self._started])  # a journal being opened must be closed too
        left = self._resolver.entries()
        where = " (kept in the journal; resumed on the next start)" if self._durable else ""
        error = BatcherClosedError(f"the batcher closed before this outcome was known{where}")
        for entry in left:
            if self._durable is None:
                self._resolver.abandon(entry, error)
            else:
                self._resolver.detach(entry, error)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._tracker.aclose()
        if self._durable is not None:
            await self._durable.close()
        for callback in list(self._callbacks):
            callback.cancel()
        await asyncio.gather(*self._callbacks, return_exceptions=True)
        if self._unreported:
            logger.info(
                "%d outcomes had no caller waiting for them (pass on_outcome to receive them)%s",
                self._unreported, "; they are recorded in the journal" if self._durable else "",
            )  # fmt: skip
        self._closed = True
        c = self._counters
        (logger.warning if left else logger.info)(
            "batcher closed: %d submitted, %d issued, %d failed, %d unknown, %d unresolved%s",
            c.submitted, c.issued, c.failed, c.unknown, len(left), where if left else "",
        )  # fmt: skip

    def __del__(self) -> None:
        # Only a batcher that started (a failed start holds nothing) and was not closed.
        if getattr(self, "_ready", False) and not getattr(self, "_closed", True):
            warnings.warn(
                f"{self!r} was started and never closed; use 'async with' or"
                " 'await batcher.aclose()' (unsent identifiers are lost without a journal)",
                ResourceWarning,
                stacklevel=2,
            )

    # -- outcomes nobody waits for ----------------------------------------------

    def _orphan(self, outcome: IssuanceOutcome) -> None:
        """Hand an outcome no caller waits for to ``on_outcome`` (never lost silently)."""
        callback = self._on_outcome
        if callback is None:
            self._unreported += 1
            return
        try:
            result = callback(outcome)
        except Exception:
            logger.exception("on_outcome raised for %s", outcome.identifier)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._callbacks.add(task)
            task.add_done_callback(self._callback_done)

    def _callback_done(self, task: asyncio.Task[object]) -> None:
        self._callbacks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("on_outcome raised", exc_info=task.exception())

    # -- start and recovery ----------------------------------------------------

    async def _start(self) -> None:
        if self._started is None:
            self._check_open()  # a closed batcher is not started (again)
            self._started = asyncio.get_running_loop().create_future()
            try:
                if self._durable is not None:
                    await self._durable.open()
            except BaseException as exc:
                self._started.set_exception(exc)
                self._started.exception()  # retrieved: raised right here instead
                raise
            self._started.set_result(None)
            self._ready = True
        elif not self._started.done():
            await asyncio.shield(self._started)
        elif self._started.exception() is not None:
            raise cast("BaseException", self._started.exception())

    # -- admission ----------------------------------------------------------

    def _check_open(self) -> None:
        if self._closing:
            raise BatcherClosedError("the batcher is closed")

    async def _wait_for_slot(self, partition: Partition, key: EntryKey) -> Entry | None:
        """Wait for a pending slot (back-pressure); the entry if one arrived meanwhile."""
        await self._resolver.admit()
        if self._closing:
            self._resolver.release()
            raise BatcherClosedError("the batcher is closed")
        return self._resolver.get(partition, key)

    def _partition(
        self, merchant_id: str | None, campaign_id: str | None, variant_id: str | None
    ) -> Partition:
        parts = (
            merchant_id or self._defaults[0],
            campaign_id or self._defaults[1],
            variant_id or self._defaults[2],
        )
        partition = self._partitions.get(parts)  # type: ignore[arg-type]
        if partition is not None:
            return partition
        names = ("merchant_id", "campaign_id", "variant_id")
        missing = [n for n, v in zip(names, parts, strict=True) if not v]
        if missing:
            raise ValueError(
                f"no {', '.join(missing)}: pass it to submit() or set a default on RewardBatcher()"
            )
        for name, value in zip(names, parts, strict=True):
            check_text_argument(name, value)
        merchant, campaign, variant = cast("tuple[str, str, str]", parts)
        partition = self._partitions[(merchant, campaign, variant)] = Partition(
            merchant, campaign, variant
        )
        return partition

    def _enqueue(self, entry: Entry) -> None:
        """Put an admitted entry into its partition's open batch (sealing it when full)."""
        partition = entry.partition
        batch = self._open.get(partition)
        if batch is None:
            loop = asyncio.get_running_loop()
            batch = self._open[partition] = OpenBatch(partition, loop.time())
            if self._max_wait == 0:
                batch.timer = loop.call_soon(self._seal_due, batch)
            else:
                batch.timer = loop.call_at(batch.opened_at + self._max_wait, self._seal_due, batch)
        batch.entries.append(entry)
        if len(batch.entries) >= self._max_batch_size:
            self._seal(batch)

    # -- sealing ---------------------------------------------------------------

    def _seal_all(self) -> None:
        for batch in list(self._open.values()):
            self._seal(batch)

    def _seal_due(self, batch: OpenBatch) -> None:
        """``max_wait`` passed: seal, unless the budget binds (then keep filling, look again)."""
        if self._open.get(batch.partition) is not batch:
            return
        if self._budget_binds():
            # Sealed now, it would only wait for budget behind others; left open it
            # keeps filling, so the POST that gets the next grant carries more people.
            batch.timer = asyncio.get_running_loop().call_later(
                self._recheck, self._seal_due, batch
            )
            return
        self._seal(batch)

    def _budget_binds(self) -> bool:
        """Whether a batch sealed now would wait: for a POST slot, or for rate budget."""
        if self._runner.queued_posts:
            return True
        return self._budget is not None and self._budget.saturated

    def _seal(self, batch: OpenBatch) -> None:
        del self._open[batch.partition]
        if batch.timer is not None:
            batch.timer.cancel()
        sealed, dropped = seal(batch.partition, batch.entries)
        # The cancelled timer can keep the open batch alive for up to max_wait:
        # it must not keep the entries too (they are freed as they resolve).
        batch.entries = []
        if dropped:  # every caller cancelled before the seal: they leave the batch
            for entry in dropped:
                self._resolver.forget(entry)
            if self._durable is not None:
                self._durable.forget(dropped)
        if sealed is None:
            return
        self._counters.sealed_batches += 1
        self._telemetry.sealed(sealed)
        self._spawn(sealed)

    def _spawn(self, sealed: SealedBatch) -> None:
        self._unposted[sealed] = asyncio.Event()
        task = asyncio.get_running_loop().create_task(self._runner.run(sealed))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _posted(self, sealed: SealedBatch) -> None:
        event = self._unposted.pop(sealed, None)
        if event is not None:
            event.set()

    def _count_poll(self) -> None:
        self._counters.polls += 1


def _answered(result: IssuanceOutcome | BaseException) -> asyncio.Future[IssuanceOutcome]:
    """A future already resolved with a remembered result."""
    future: asyncio.Future[IssuanceOutcome] = asyncio.get_running_loop().create_future()
    if isinstance(result, JobFailedError):
        future.set_exception(JobFailedError(result.job))  # a fresh one: tracebacks pile up
    elif isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
    return future
