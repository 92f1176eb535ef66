"""Recording telemetry in tests: the OpenTelemetry SDK's in-memory exporter and reader.

Providers are passed to each client explicitly (``tracer_provider=``,
``meter_provider=``): the global ones can be set once per process, so tests
that need them run in a subprocess.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, Metric
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import thanx_async as ta
from thanx_async.testing import DEFAULT_ACCESS_TOKEN, DEFAULT_CLIENT_ID, ThanxEmulator

#: A short window of 50 ms: a 429 pauses the client for that long, not for a second.
FAST_LIMIT = ta.RateLimit(per_second=1_000, second=0.05, per_window=100_000, window=60.0)
INSTANT_RETRY = ta.RetryPolicy(max_attempts=4, initial_backoff=0.0, max_backoff=0.0)


class Recorder:
    """A tracer and a meter provider recording into memory."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.finished() if s.name == name]

    def metrics(self) -> dict[str, Metric]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return {
            metric.name: metric
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }

    def points(self, name: str) -> list[Any]:
        metric = self.metrics().get(name)
        return [] if metric is None else list(metric.data.data_points)

    def histogram(self, name: str, **attributes: Any) -> HistogramDataPoint:
        """The one data point of histogram ``name`` with exactly these attributes."""
        matching = [p for p in self.points(name) if dict(p.attributes) == attributes]
        assert len(matching) == 1, (
            name,
            attributes,
            [dict(p.attributes) for p in self.points(name)],
        )
        point: HistogramDataPoint = matching[0]
        return point

    def value(self, name: str, **attributes: Any) -> Any:
        """The value of the data point of a sum or gauge with exactly these attributes."""
        matching = [p for p in self.points(name) if dict(p.attributes) == attributes]
        assert len(matching) == 1, (
            name,
            attributes,
            [dict(p.attributes) for p in self.points(name)],
        )
        return matching[0].value

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def every_attribute_value(recorder: Recorder) -> Iterator[str]:
    """Every text a span or metric carries: names, attribute values, links', events', status."""
    for span in recorder.finished():
        yield span.name
        yield str(span.status.description or "")
        yield from (str(v) for v in (span.attributes or {}).values())
        for link in span.links:
            yield from (str(v) for v in (link.attributes or {}).values())
        for event in span.events:
            yield from (str(v) for v in (event.attributes or {}).values())
    for metric in recorder.metrics().values():
        for point in metric.data.data_points:
            yield from (str(v) for v in (point.attributes or {}).values())


@asynccontextmanager
async def recorded_client(
    emulator: ThanxEmulator, recorder: Recorder, **options: Any
) -> AsyncIterator[ta.ThanxClient]:
    """A client of ``emulator`` whose spans and metrics go to ``recorder``."""
    options.setdefault("rate_limit", FAST_LIMIT)
    options.setdefault("retry", INSTANT_RETRY)
    async with ta.ThanxClient(
        client_id=DEFAULT_CLIENT_ID,
        access_token=DEFAULT_ACCESS_TOKEN,
        base_url=emulator.url,
        tracer_provider=recorder.tracer_provider,
        meter_provider=recorder.meter_provider,
        **options,
    ) as client:
        yield client
