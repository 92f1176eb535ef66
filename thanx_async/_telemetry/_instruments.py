"""The instruments, made once per meter provider, and what the observable ones read.

Observable instruments are read by the SDK's reader, often in a thread of its
own: the sources they read (batchers' pending counts, limiters' stats) are
registered here behind a lock, as weak references, and each callback reads
only plain numbers from them.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from thanx_async._telemetry import _api as names
from thanx_async._telemetry._api import Api

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation

__all__ = ["Instruments", "instruments_for"]


class _Sources:
    """Weakly held objects to observe, safe to read from the reader's thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refs: list[weakref.ref[Any]] = []

    def add(self, source: object) -> None:
        with self._lock:
            self._refs = [r for r in self._refs if r() is not None]
            self._refs.append(weakref.ref(source))

    def __iter__(self) -> Iterator[Any]:
        with self._lock:
            live = [r() for r in self._refs]
        return iter([s for s in live if s is not None])


class Instruments:
    """Every instrument of this package on one meter."""

    def __init__(self, api: Api, meter: Any) -> None:
        self._api = api
        self.http_duration = self._histogram(
            meter,
            names.HTTP_DURATION,
            unit="s",
            description="Duration of HTTP client requests.",
            buckets=names.HTTP_BUCKETS,
        )
        self.retries = meter.create_counter(
            names.RETRIES,
            unit="{retry}",
            description="Requests sent again after a failed attempt (by that attempt's error).",
        )
        self.rate_limited = meter.create_counter(
            names.RATE_LIMITED, unit="{response}", description="429 answers received."
        )
        self.budget_wait = self._histogram(
            meter,
            names.BUDGET_WAIT,
            unit="s",
            description="Time a request attempt waited for rate budget before it was sent.",
            buckets=names.WAIT_BUCKETS,
        )
        self.batch_size = self._histogram(
            meter,
            names.BATCH_SIZE,
            unit="{identifier}",
            description="Identifiers in a batch when it was sealed.",
            buckets=names.BATCH_SIZE_BUCKETS,
        )
        self.outcome_duration = self._histogram(
            meter,
            names.OUTCOME_DURATION,
            unit="s",
            description="Time from an identifier's submit() to its outcome.",
            buckets=names.OUTCOME_BUCKETS,
        )
        self.job_polls = self._histogram(
            meter,
            names.JOB_POLLS,
            unit="{poll}",
            description="Polls an issuance job took until it ended.",
            buckets=names.POLL_BUCKETS,
        )
        self.journal_commit = self._histogram(
            meter,
            names.JOURNAL_COMMIT,
            unit="s",
            description="Time a journal write took to commit.",
            buckets=names.COMMIT_BUCKETS,
        )
        self.batchers = _Sources()
        self.limiters = _Sources()
        meter.create_observable_up_down_counter(
            names.PENDING,
            callbacks=[self._observe_pending],
            unit="{identifier}",
            description="Identifiers submitted and not resolved yet (all batchers of the process).",
        )
        meter.create_observable_gauge(
            names.BUDGET_USED,
            callbacks=[self._observe_budget],
            unit="1",
            description="Share of the long rate window's budget in use (0 to 1).",
        )
        meter.create_observable_up_down_counter(
            names.LIMITER_QUEUED,
            callbacks=[self._observe_queued],
            unit="{request}",
            description="Requests waiting for rate budget in this process.",
        )

    def _histogram(
        self, meter: Any, name: str, *, unit: str, description: str, buckets: Sequence[float]
    ) -> Any:
        if self._api.bucket_advice:
            return meter.create_histogram(
                name,
                unit=unit,
                description=description,
                explicit_bucket_boundaries_advisory=buckets,
            )
        return meter.create_histogram(name, unit=unit, description=description)

    def _observe_pending(self, options: CallbackOptions) -> Iterable[Observation]:
        total = sum(int(source.pending) for source in self.batchers)
        return [self._api.metrics.Observation(total)]

    def _limiter_stats(self) -> dict[str, list[Any]]:
        by_kind: dict[str, list[Any]] = {}
        for limiter in self.limiters:
            stats: Callable[[], Any] | None = getattr(limiter, "stats", None)
            if stats is not None:
                by_kind.setdefault(limiter_kind(limiter), []).append(stats())
        return by_kind

    def _observe_budget(self, options: CallbackOptions) -> Iterable[Observation]:
        observations = []
        for kind, all_stats in self._limiter_stats().items():
            used = [s.budget_used for s in all_stats if getattr(s, "budget_used", None) is not None]
            if used:
                # Several limiters of one kind (several credentials): the fullest one.
                observations.append(
                    self._api.metrics.Observation(max(used), {"thanx.limiter.kind": kind})
                )
        return observations

    def _observe_queued(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            self._api.metrics.Observation(
                sum(s.queued for s in all_stats), {"thanx.limiter.kind": kind}
            )
            for kind, all_stats in self._limiter_stats().items()
        ]


def limiter_kind(limiter: object) -> str:
    """``in_process``, ``redis``, or the class name of a limiter of the user's own."""
    cls = type(limiter)
    if cls.__module__.startswith("thanx_async.redis"):
        return "redis"
    if cls.__module__.startswith("thanx_async."):
        return "in_process"
    return cls.__qualname__


_made: list[tuple[object, Instruments]] = []
_global: Instruments | None = None
_lock = threading.Lock()


def instruments_for(api: Api, provider: Any | None) -> Instruments:
    """This package's instruments on a meter provider (None: the global one), made once.

    One set per provider, shared by every client: an SDK hands back the first
    instrument registered under a name (so a second set's observable callbacks
    would never run), and the global provider is one set whether it was still
    the API's proxy when first asked or already an SDK's.
    """
    global _global  # noqa: PLW0603 - one set for the global provider
    with _lock:
        if provider is None and _global is not None:
            return _global
        resolved = api.metrics.get_meter_provider() if provider is None else provider
        made = next((m for known, m in _made if known is resolved), None)
        if made is None:
            from thanx_async._version import __version__  # noqa: PLC0415 - a leaf module

            made = Instruments(api, resolved.get_meter(names.SCOPE, __version__))
            _made.append((resolved, made))
        if provider is None:
            _global = made
        return made
