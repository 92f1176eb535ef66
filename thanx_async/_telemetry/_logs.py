"""The batch a log record is about: its key and job id on every record, from context.

The SDK logs through stdlib ``logging`` under ``thanx_async`` (see
docs/guides/telemetry.md for the hierarchy). While a batch's own task runs, or
a job's poll, a context variable names the batch; a filter on our loggers puts
its idempotency key and job id on every record as ``thanx_batch_key`` and
``thanx_job_id`` (``None`` when a record is about no batch), for formatters
and structured handlers (``%(thanx_batch_key)s``). Messages about a batch name
both in their text as well.
"""

from __future__ import annotations

import contextvars
import logging
import weakref
from typing import Protocol

__all__ = ["LOGGERS", "BatchLabel", "batch_label", "install"]

#: The loggers whose records can be about a batch.
LOGGERS = (
    "thanx_async.batcher",
    "thanx_async.jobs",
    "thanx_async.journal",
    "thanx_async.transport",
    "thanx_async.redis",
    "thanx_async.webhooks",
)


class _Keyed(Protocol):
    @property
    def key(self) -> str | None: ...


class BatchLabel:
    """What a record about one batch carries: the batch's key and, once known, its job id.

    The key is read from the batch when a record is made: it is known only once
    the batch is frozen, after its task started. The batch is held weakly: a
    context that holds the label can outlive the batch's task by far (aiohttp
    keeps the context of the task that opened a connection for as long as the
    connection lives), and must not keep the batch's entries alive.
    """

    __slots__ = ("_batch", "_key", "job_id")

    def __init__(self, batch: _Keyed, job_id: str | None = None) -> None:
        self._batch = weakref.ref(batch)
        self._key = batch.key
        self.job_id = job_id

    @property
    def key(self) -> str | None:
        """The batch's idempotency key (None until it is frozen)."""
        if self._key is None:
            batch = self._batch()
            if batch is not None:
                self._key = batch.key
        return self._key


#: The batch the running task works on (None: no batch).
batch_label: contextvars.ContextVar[BatchLabel | None] = contextvars.ContextVar(
    "thanx_async_batch", default=None
)


class _BatchFilter(logging.Filter):
    """Puts the current batch's key and job id on a record (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        label = batch_label.get()
        if not hasattr(record, "thanx_batch_key"):  # an explicit extra= wins
            record.thanx_batch_key = None if label is None else label.key
        if not hasattr(record, "thanx_job_id"):
            record.thanx_job_id = None if label is None else label.job_id
        return True


_FILTER = _BatchFilter()


def install() -> None:
    """Put the filter on our loggers (idempotent: a logger keeps one copy of a filter)."""
    for name in LOGGERS:
        logging.getLogger(name).addFilter(_FILTER)
