"""Telemetry: the OpenTelemetry SDK wired to the console, around one batch of rewards.

Run it against the emulator (``thanx-async emulator`` prints the variables to set):

    THANX_CLIENT_ID=... THANX_ACCESS_TOKEN=... THANX_BASE_URL=http://127.0.0.1:8400 \\
        python examples/telemetry_console.py

thanx_async reports through OpenTelemetry's API only (``pip install
'thanx-async[otel]'``); the application chooses the SDK and the exporters. Here
spans go to the console as they end, one line each, and metrics are read once
at the end from an in-memory reader. In production, use an OTLP exporter and a
``PeriodicExportingMetricReader`` instead: nothing in thanx_async changes.
"""

import asyncio
import logging
import os

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

import thanx_async as ta


def one_line(span: ReadableSpan) -> str:
    """A span as one line: name, kind, parent, links, its attributes."""
    attributes = " ".join(f"{k}={v!s}" for k, v in sorted((span.attributes or {}).items()))
    where = f"{span.kind.name.lower()}, {'root' if span.parent is None else 'child'}"
    return f"span {span.name!r} ({where}, {len(span.links)} links) {attributes}\n"


def set_up_telemetry() -> InMemoryMetricReader:
    """Global providers: what an application sets up once, at start-up."""
    resource = Resource.create({"service.name": "rewards-example"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(formatter=one_line)))
    trace.set_tracer_provider(tracer_provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))
    # Logs stay stdlib logging; records about a batch carry its key and job id.
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter(
            "log %(name)s [batch=%(thanx_batch_key)s job=%(thanx_job_id)s] %(message)s",
            defaults={"thanx_batch_key": None, "thanx_job_id": None},  # other libraries' records
        )
    )
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    return reader


def print_metrics(reader: InMemoryMetricReader) -> None:
    data = reader.get_metrics_data()
    assert data is not None
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    labels = ",".join(
                        f"{k}={v!s}" for k, v in sorted((point.attributes or {}).items())
                    )
                    if isinstance(point, HistogramDataPoint):
                        shown = f"count={point.count} sum={point.sum:.4g}"
                    elif isinstance(point, NumberDataPoint):
                        shown = f"value={point.value:.4g}"
                    else:
                        continue
                    print(f"metric {metric.name} [{metric.unit}] {labels} {shown}")


async def main() -> None:
    reader = set_up_telemetry()
    tracer = trace.get_tracer("rewards-example")
    async with ta.ThanxClient.from_env() as client:  # THANX_CLIENT_ID, _ACCESS_TOKEN, _BASE_URL
        batcher = ta.RewardBatcher(
            client,
            merchant_id=os.environ.get("THANX_MERCHANT_ID", "merchant_demo"),
            campaign_id=os.environ.get("THANX_CAMPAIGN_ID", "camp_welcome"),
            variant_id=os.environ.get("THANX_VARIANT_ID", "var_welcome_treat"),
        )
        async with batcher:
            # The application's own span: the batch span links to it, and it to the batch.
            with tracer.start_as_current_span("signup wave"):
                people = ["jane@example.com", "+14155551234", "unknown.sam@example.com"]
                outcomes = await asyncio.gather(*(batcher.issue(p) for p in people))
    for outcome in outcomes:
        print("outcome", outcome.identifier, outcome.status.value)
    print_metrics(reader)


asyncio.run(main())
