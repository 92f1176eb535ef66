"""The OpenTelemetry API, imported on first use, and the names this package reports under.

Nothing here imports ``opentelemetry`` at import time: :func:`load` does, once,
when the first client is built. Without the ``otel`` extra it returns ``None``
and every hook of :mod:`thanx_async._telemetry` does nothing.
"""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any

__all__ = ["SCOPE", "Api", "load", "provider_records"]

#: The instrumentation scope: the name of our tracer and meter.
SCOPE = "thanx_async"

# -- names (documented in docs/guides/telemetry.md) ---------------------------

HTTP_DURATION = "http.client.request.duration"
RETRIES = "thanx.client.retries"
RATE_LIMITED = "thanx.client.rate_limited"
BUDGET_WAIT = "thanx.client.budget_wait"
BUDGET_USED = "thanx.limiter.budget_used"
LIMITER_QUEUED = "thanx.limiter.queued"
PENDING = "thanx.batcher.pending"
BATCH_SIZE = "thanx.batch.size"
OUTCOME_DURATION = "thanx.outcome.duration"
JOB_POLLS = "thanx.job.polls"
JOURNAL_COMMIT = "thanx.journal.commit.duration"

BATCH_SPAN = "thanx.batch"

#: The semantic conventions' advice for ``http.client.request.duration``.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
#: Waits for rate budget: none at all, up to a long window's pause.
WAIT_BUCKETS = (0.0, 0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
#: From submit to outcome: a batch's max_wait, a POST, a job of seconds to minutes.
OUTCOME_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
BATCH_SIZE_BUCKETS = (1, 10, 100, 500, 1000, 2000, 5000, 7500, 9999, 10000)
POLL_BUCKETS = (0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30)
#: A journal commit: a group commit with fsync, or a Redis round trip.
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Api:
    """The parts of the OpenTelemetry API this package uses."""

    def __init__(self) -> None:
        from opentelemetry import context, metrics, trace  # noqa: PLC0415 - the lazy import

        self.context = context
        self.metrics = metrics
        self.trace = trace
        self.root = context.Context()  # an empty context: a span started in it is a root
        self.Link = trace.Link
        self.CLIENT = trace.SpanKind.CLIENT
        self.INTERNAL = trace.SpanKind.INTERNAL
        self.ERROR = trace.StatusCode.ERROR
        # The extra asks for 1.30, but an application may have an older API from
        # elsewhere: it gets no bucket advice rather than an error.
        self.bucket_advice = (
            "explicit_bucket_boundaries_advisory"
            in inspect.signature(metrics.Meter.create_histogram).parameters
        )


_api: Api | None = None
_loaded = False


def load() -> Api | None:
    """The OpenTelemetry API, or None when the ``otel`` extra is not installed."""
    global _api, _loaded  # noqa: PLW0603 - one import per process
    if not _loaded:
        _loaded = True
        try:
            _api = Api()
        except ImportError:
            _api = None
    return _api


def provider_records(provider: Any, api_module: ModuleType) -> bool:
    """Whether a tracer or meter provider records anything.

    The API's own providers (the global proxy before an SDK is installed, and
    the no-op ones) are defined in the API package; any other (the SDK's, a
    vendor's) records. Public classes only, so this holds across API versions.
    """
    return not type(provider).__module__.startswith(api_module.__name__)
