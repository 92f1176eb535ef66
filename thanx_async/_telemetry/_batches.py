"""One batcher's telemetry: a span per batch, links from its callers, outcome waits, polls.

A batch's span (``thanx.batch``) starts when the batch is sealed and ends
when its last outcome is given: it is a root span (a batch serves many
callers, so it belongs to none of their traces) and links to the span each
submitting caller was in, when that span was recording; each such caller
span, while it is still open, gets a link back to the batch. A batch split
by the server's refusal of one identifier becomes child batches of the
refused one. The batch's HTTP requests (its POST, its job's polls) are
children of its span.

Per identifier, nothing is done unless an SDK records: a submit then looks
at the caller's current span (tracing) and times its wait for the outcome
(metrics). Everything per batch is a few calls per 10,000 identifiers.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
import weakref
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from thanx_async._telemetry._api import BATCH_SPAN
from thanx_async._telemetry._core import Telemetry
from thanx_async._telemetry._logs import BatchLabel, batch_label

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span

    from thanx_async._accumulator import Partition, SealedBatch

__all__ = ["MAX_LINKS", "BatchTelemetry", "JobScope", "journal_kind"]

T = TypeVar("T")

#: Links a batch span takes from its callers (the SDK's default link limit).
MAX_LINKS = 128


class _Batch:
    """What a batch's telemetry holds from its seal to its outcome."""

    __slots__ = ("callers", "label", "span", "state")

    def __init__(self, span: Span | None, callers: list[Span]) -> None:
        self.span = span
        self.callers = callers
        self.label: BatchLabel | None = None
        self.state: str | None = None


class JobScope:
    """Where a job's polls belong: its batch's log label and trace context."""

    __slots__ = ("context", "label", "span")

    def __init__(
        self, label: BatchLabel | None, context: Context | None, span: Span | None
    ) -> None:
        self.label = label
        self.context = context
        self.span = span


class BatchTelemetry:
    """What one :class:`~thanx_async.RewardBatcher` reports, through its client's telemetry.

    Args:
        telemetry: the client's.
    """

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        #: Read by ``submit()``: whether :meth:`submitted` has anything to do.
        self.per_item = telemetry.per_item
        self._links: dict[Partition, dict[Span, None]] = {}
        self._batches: weakref.WeakKeyDictionary[SealedBatch, _Batch] = weakref.WeakKeyDictionary()
        # Done-callbacks run in this context instead of a copy of the caller's
        # (a copy per identifier would cost more than the callback).
        self._callback_context = contextvars.Context()
        self._status_attributes: dict[str, dict[str, str]] = {}

    def refresh(self) -> None:
        """Look again whether an SDK records (once per batch: an SDK may be set up late)."""
        telemetry = self.telemetry
        telemetry.refresh()
        self.per_item = telemetry.per_item

    def watch(self, resolver: object) -> None:
        """Report ``resolver.pending`` as ``thanx.batcher.pending``."""
        if self.telemetry.enabled:
            self.telemetry.instruments.batchers.add(resolver)

    # -- per identifier (only while an SDK records) ----------------------------

    def submitted(self, partition: Partition, future: asyncio.Future[Any]) -> None:
        """A caller submitted an identifier into ``partition``; ``future`` is its outcome."""
        telemetry = self.telemetry
        if telemetry.tracing:
            span = telemetry.api.trace.get_current_span()
            if span.is_recording():
                links = self._links.get(partition)
                if links is None:
                    links = self._links[partition] = {}
                if len(links) < MAX_LINKS:
                    links[span] = None
        if telemetry.timing:
            future.add_done_callback(
                functools.partial(self._answered, time.perf_counter()),
                context=self._callback_context,
            )

    def _answered(self, started: float, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return  # the caller stopped waiting: no outcome to time
        # Not future.exception(): that would mark the error as retrieved and
        # silence asyncio's report of a future nobody awaited.
        error = getattr(future, "_exception", None)
        if error is not None:
            status, error_type = "error", type(error).__name__
        else:
            status, error_type = str(future.result().status), None
        key = status if error_type is None else error_type
        attributes = self._status_attributes.get(key)
        if attributes is None:
            attributes = {"thanx.outcome.status": status}
            if error_type is not None:
                attributes["error.type"] = error_type
            self._status_attributes[key] = attributes
        self.telemetry.instruments.outcome_duration.record(
            time.perf_counter() - started, attributes
        )

    # -- per batch -------------------------------------------------------------

    def sealed(self, sealed: SealedBatch) -> None:
        """A batch was sealed: count its size and start its span (linked to its callers)."""
        telemetry = self.telemetry
        if not telemetry.enabled:
            return
        self.refresh()
        telemetry.instruments.batch_size.record(len(sealed.entries))
        callers = self._links.pop(sealed.partition, None)
        if telemetry.tracing:
            self._start(sealed, list(callers or ()), telemetry.api.root)

    def _start(self, sealed: SealedBatch, callers: list[Span], parent: Context | None) -> _Batch:
        api = self.telemetry.api
        merchant, campaign, variant = sealed.partition.ids
        attributes: dict[str, Any] = {
            "thanx.batch.size": len(sealed.entries),
            "thanx.merchant.id": merchant,
            "thanx.campaign.id": campaign,
            "thanx.variant.id": variant,
        }
        if sealed.key is not None:
            attributes["thanx.batch.idempotency_key"] = sealed.key
        if sealed.job_id is not None:
            attributes["thanx.job.id"] = sealed.job_id
        span = self.telemetry.tracer.start_span(
            BATCH_SPAN,
            context=parent,
            kind=api.INTERNAL,
            attributes=attributes,
            links=[api.Link(c.get_span_context()) for c in callers],
        )
        batch = self._batches[sealed] = _Batch(span, callers)
        context = span.get_span_context()
        for caller in callers:
            # Still open: it links to the batch that serves it (an API before 1.23 cannot).
            if caller.is_recording() and hasattr(caller, "add_link"):
                caller.add_link(context, {"thanx.link": "batch"})
        return batch

    def started(self, sealed: SealedBatch) -> None:
        """The batch's task starts: label its logs, make its span current.

        Called in the batch's own task, so what it sets lasts until the task ends.
        """
        batch = self._batches.get(sealed)
        telemetry = self.telemetry
        if batch is None and telemetry.tracing:
            # Not sealed here: a split of a refused batch (a child of its span, the
            # current one) or a batch resumed from the journal (a root of its own).
            parent = None if sealed.origin is not None else telemetry.api.root
            batch = self._start(sealed, [], parent)
        if batch is None:
            batch = self._batches[sealed] = _Batch(None, [])
        batch.label = BatchLabel(sealed, sealed.job_id)
        batch_label.set(batch.label)
        span = batch.span
        if span is not None:
            api = telemetry.api
            api.context.attach(api.trace.set_span_in_context(span))

    def accepted(self, sealed: SealedBatch, job_id: str) -> None:
        """The server accepted the batch as job ``job_id``."""
        batch = self._batches.get(sealed)
        if batch is None:
            return
        if batch.label is not None:
            batch.label.job_id = job_id
        if batch.span is not None:
            batch.span.set_attribute("thanx.job.id", job_id)
            if sealed.key is not None:  # frozen since the span started
                batch.span.set_attribute("thanx.batch.idempotency_key", sealed.key)

    def ended(self, sealed: SealedBatch, state: str, error: BaseException | None = None) -> None:
        """How the batch ended (the span ends in :meth:`finished`); the first call counts."""
        batch = self._batches.get(sealed)
        if batch is None or batch.state is not None:
            return
        batch.state = state
        span = batch.span
        if span is not None and span.is_recording():
            span.set_attribute("thanx.batch.state", state)
            if sealed.key is not None:
                span.set_attribute("thanx.batch.idempotency_key", sealed.key)
            if error is not None:
                span.set_attribute("error.type", type(error).__name__)
                span.set_status(self.telemetry.api.ERROR, str(error)[:500])

    def finished(self, sealed: SealedBatch) -> None:
        """The batch's task is done: end its span (as ``unfinished`` if no ending was said)."""
        batch = self._batches.pop(sealed, None)
        if batch is None or batch.span is None:
            return
        if batch.state is None:
            self.ended(sealed, "unfinished")
        batch.span.end()

    # -- jobs ------------------------------------------------------------------

    def capture(self) -> JobScope:
        """Where the current task's work belongs (called when a job starts being followed)."""
        telemetry = self.telemetry
        if not telemetry.tracing:
            return JobScope(batch_label.get(), None, None)
        api = telemetry.api
        span = api.trace.get_current_span()
        return JobScope(batch_label.get(), api.context.get_current(), span)

    def enter(self, scope: JobScope | None) -> None:
        """The current task works for a job's batch: its logs are labelled, its spans children.

        Only for a task of its own (a poll): nothing is reset, the task's end does it.
        """
        if scope is None:
            return
        batch_label.set(scope.label)
        if scope.context is not None:
            self.telemetry.api.context.attach(scope.context)

    def job_done(self, scope: JobScope | None, polls: int, state: str) -> None:
        """A followed job ended after ``polls`` (``state``: its state, or why following ended)."""
        telemetry = self.telemetry
        if not telemetry.enabled:
            return
        telemetry.instruments.job_polls.record(polls, {"thanx.job.state": state})
        if scope is not None and scope.span is not None and scope.span.is_recording():
            scope.span.set_attribute("thanx.job.polls", polls)

    # -- journal ---------------------------------------------------------------

    def journal_write(self, write: asyncio.Future[Any], journal: object, operation: str) -> None:
        """Time a journal write from now until it is answered (committed or failed)."""
        if self.telemetry.enabled:
            write.add_done_callback(
                functools.partial(self._committed, time.perf_counter(), journal, operation)
            )

    async def journal_timed(self, write: Awaitable[T], journal: object, operation: str) -> T:
        """Await a journal write, timing it."""
        started = time.perf_counter()
        try:
            return await write
        finally:
            self._committed(started, journal, operation, None)

    def _committed(self, started: float, journal: object, operation: str, _: object) -> None:
        telemetry = self.telemetry
        if telemetry.enabled:
            telemetry.instruments.journal_commit.record(
                time.perf_counter() - started,
                {
                    "thanx.journal.backend": journal_kind(journal),
                    "thanx.journal.operation": operation,
                },
            )


def journal_kind(journal: object) -> str:
    """``sqlite``, ``redis``, or the class name of a journal of the user's own."""
    cls = type(journal)
    if cls.__module__.startswith("thanx_async.redis"):
        return "redis"
    if cls.__module__.startswith("thanx_async."):
        return "sqlite"
    return cls.__qualname__
