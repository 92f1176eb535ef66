"""Telemetry when nothing listens: no SDK, or no OpenTelemetry at all, and an SDK set up late.

OpenTelemetry's global providers can be set once per process, and whether
``opentelemetry`` can be imported is a property of the process: each test runs
its scenario in a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.cli.support import ROOT

#: A batch of three against the emulator; prints the outcomes' statuses.
RUN_A_BATCH = """
import asyncio
import thanx_async as ta
from thanx_async.testing import (
    DEFAULT_ACCESS_TOKEN, DEFAULT_CAMPAIGN_ID, DEFAULT_CLIENT_ID, DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID, ThanxEmulator,
)

async def batch(emulator, client, people):
    async with ta.RewardBatcher(
        client, merchant_id=DEFAULT_MERCHANT_ID, campaign_id=DEFAULT_CAMPAIGN_ID,
        variant_id=DEFAULT_VARIANT_ID, max_wait=0.01,
    ) as batcher:
        outcomes = await asyncio.gather(*(batcher.issue(p) for p in people))
        return [o.status.value for o in outcomes], batcher._telemetry

def client_of(emulator):
    return ta.ThanxClient(
        client_id=DEFAULT_CLIENT_ID, access_token=DEFAULT_ACCESS_TOKEN, base_url=emulator.url,
        retry=ta.RetryPolicy(initial_backoff=0.0, max_backoff=0.0),
    )
"""


def run(*pieces: str) -> str:
    """Run the script made of ``pieces`` in a fresh interpreter; its stdout (it must exit 0)."""
    script = "\n".join(textwrap.dedent(piece) for piece in pieces)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_importing_the_package_does_not_import_opentelemetry() -> None:
    """``import thanx_async`` (and the emulator) stays cheap: OpenTelemetry is not loaded."""
    out = run(
        """
        import sys
        import thanx_async, thanx_async.testing
        thanx_async.Identifier
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
        """
    )
    assert out.strip() == "[]"


def test_without_opentelemetry_installed_everything_works_and_nothing_is_reported() -> None:
    """With ``opentelemetry`` not importable, batches run and every hook is a no-op."""
    out = run(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
        """,
        RUN_A_BATCH,
        """
        async def main():
            async with ThanxEmulator(start_delay=0.0, speed=1e6) as emulator:
                emulator.state.faults.add("issue", status=503)
                async with client_of(emulator) as client:
                    statuses, telemetry = await batch(
                        emulator, client, ["a@example.com", "unknown.b@example.com"]
                    )
            print(statuses, telemetry.telemetry.enabled, telemetry.per_item)
            print(sorted(m for m in sys.modules if m.startswith("opentelemetry.")))

        asyncio.run(main())
        """,
    )
    assert out.splitlines() == ["['issued', 'failed'] False False", "[]"]


def test_without_an_sdk_nothing_is_recorded_and_a_late_sdk_is_honoured() -> None:
    """API alone: nothing is recorded; an SDK set up after the client was built gets later ones."""
    out = run(
        RUN_A_BATCH,
        """
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        def recorded(reader):
            data = reader.get_metrics_data()
            return sorted(
                (m.name, sum(getattr(p, "count", 0) for p in m.data.data_points))
                for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics
                if m.name in ("thanx.batch.size", "thanx.outcome.duration")
            )

        async def main():
            async with ThanxEmulator(start_delay=0.0, speed=1e6) as emulator:
                async with client_of(emulator) as client:
                    before = await batch(emulator, client, ["a@example.com", "b@example.com"])
                    print(before[0], before[1].per_item)
                    # Set up only now, after the client and its first batch.
                    spans = InMemorySpanExporter()
                    tracer_provider = TracerProvider()
                    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
                    trace.set_tracer_provider(tracer_provider)
                    reader = InMemoryMetricReader()
                    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
                    print([s.name for s in spans.get_finished_spans()], recorded(reader))
                    after = await batch(emulator, client, ["c@example.com"])
                    print(after[0], after[1].per_item)
            names = sorted({s.name for s in spans.get_finished_spans()})
            print(names, recorded(reader))

        asyncio.run(main())
        """,
    )
    assert out.splitlines() == [
        "['issued', 'issued'] False",
        "[] []",
        "['issued'] True",
        "['GET /partner/issuance_jobs/{job_id}', 'POST /partner/campaigns/issue', 'thanx.batch']"
        " [('thanx.batch.size', 1), ('thanx.outcome.duration', 1)]",
    ]
