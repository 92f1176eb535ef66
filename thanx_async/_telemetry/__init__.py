"""OpenTelemetry traces and metrics, through the API only, and the batch label on log records.

Everything OpenTelemetry lives in this package; the rest of the SDK calls a
few small methods of :class:`Telemetry` (one per client: HTTP spans and
metrics) and :class:`BatchTelemetry` (one per batcher: batch spans, links,
outcome waits, polls, journal commits). ``opentelemetry`` is imported when the
first client is built, not when ``thanx_async`` is; without the ``otel``
extra, or without an SDK configured, the hooks cost next to nothing
(``python -m benchmarks.telemetry`` measures it). The names reported are
documented in docs/guides/telemetry.md.
"""

from __future__ import annotations

from thanx_async._telemetry._batches import BatchTelemetry, JobScope
from thanx_async._telemetry._core import NO_ATTEMPT, Attempt, Telemetry
from thanx_async._telemetry._logs import LOGGERS, BatchLabel, batch_label, install

__all__ = [
    "LOGGERS",
    "NO_ATTEMPT",
    "Attempt",
    "BatchLabel",
    "BatchTelemetry",
    "JobScope",
    "Telemetry",
    "batch_label",
]

install()
