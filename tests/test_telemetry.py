"""OpenTelemetry spans and metrics of a batch's life, recorded by the SDK's in-memory exporters."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

import thanx_async as ta
from tests.telemetry_support import Recorder, every_attribute_value, recorded_client
from thanx_async._transport._http import Response
from thanx_async.testing import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
    ThanxEmulator,
)

#: Two issued, one the emulator does not know (FAILED).
PEOPLE = ["jane@example.com", "unknown.joe@example.com", "+14155551234"]
ISSUE = "POST /partner/campaigns/issue"
POLL = "GET /partner/issuance_jobs/{job_id}"
SEMCONV_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """Providers recording into memory, shut down after the test."""
    recorder = Recorder()
    yield recorder
    recorder.shutdown()


@pytest.fixture
async def emulator() -> AsyncIterator[ThanxEmulator]:
    """An emulator with instant jobs and no short rate window (the client keeps its own)."""
    async with ThanxEmulator(start_delay=0.0, speed=1_000_000.0, rate_limit_per_second=None) as emu:
        yield emu


@dataclasses.dataclass
class Issued:
    """What :func:`issue_with_faults` did: the batch's key and job, and who did it."""

    key: str
    job_id: str
    # Kept alive: observable instruments report only live limiters and batchers.
    client: ta.ThanxClient
    batcher: ta.RewardBatcher


async def issue_with_faults(emulator: ThanxEmulator, recorder: Recorder) -> Issued:
    """One batch of PEOPLE, submitted inside a caller span: its POST gets a 503, a poll a 429."""
    emulator.state.faults.add("issue", status=503)
    emulator.state.faults.add("get_job", status=429)
    tracer = recorder.tracer_provider.get_tracer("the-app")
    async with (
        recorded_client(emulator, recorder) as client,
        batcher_for(client, max_wait=0.02) as batcher,
    ):
        with tracer.start_as_current_span("handle request"):
            outcomes = await asyncio.gather(*(batcher.issue(p) for p in PEOPLE))
    assert [o.status.value for o in outcomes] == ["issued", "failed", "issued"]
    assert outcomes[0].job_id is not None
    key = emulator.state.requests_for("issue")[-1].headers["X-Idempotency-Key"]
    return Issued(key, outcomes[0].job_id, client, batcher)


def batcher_for(client: ta.ThanxClient, **options: Any) -> ta.RewardBatcher:
    """A batcher on the emulator's default partition."""
    return ta.RewardBatcher(
        client,
        merchant_id=DEFAULT_MERCHANT_ID,
        campaign_id=DEFAULT_CAMPAIGN_ID,
        variant_id=DEFAULT_VARIANT_ID,
        **options,
    )


def only(spans: list[ReadableSpan]) -> ReadableSpan:
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


async def test_a_batch_span_groups_its_requests_and_links_its_callers(
    emulator: ThanxEmulator, recorder: Recorder
) -> None:
    """The batch is one root span (size, key, job, state) over its HTTP spans, linked both ways."""
    issued = await issue_with_faults(emulator, recorder)
    key, job_id = issued.key, issued.job_id
    batch = only(recorder.named("thanx.batch"))
    caller = only(recorder.named("handle request"))
    assert batch.parent is None  # a root: it serves many callers' traces
    assert batch.kind is SpanKind.INTERNAL
    assert dict(batch.attributes or {}) == {
        "thanx.batch.size": 3,
        "thanx.batch.idempotency_key": key,
        "thanx.batch.state": "completed",
        "thanx.job.id": job_id,
        "thanx.job.polls": 1,
        "thanx.merchant.id": DEFAULT_MERCHANT_ID,
        "thanx.campaign.id": DEFAULT_CAMPAIGN_ID,
        "thanx.variant.id": DEFAULT_VARIANT_ID,
    }
    assert batch.status.status_code is StatusCode.UNSET
    # The batch links to its caller's span, and the caller (still open) back to the batch.
    assert [link.context.span_id for link in batch.links] == [caller.context.span_id]
    assert [(link.context.span_id, dict(link.attributes or {})) for link in caller.links] == [
        (batch.context.span_id, {"thanx.link": "batch"})
    ]
    http = [s for s in recorder.finished() if s.kind is SpanKind.CLIENT]
    assert [s.name for s in http] == [ISSUE, ISSUE, POLL, POLL]
    assert all(s.parent is not None and s.parent.span_id == batch.context.span_id for s in http)
    assert batch.start_time is not None
    assert batch.end_time is not None
    assert all(
        batch.start_time <= (s.start_time or 0) <= (s.end_time or 0) <= batch.end_time for s in http
    )


async def test_http_spans_follow_the_semantic_conventions(
    emulator: ThanxEmulator, recorder: Recorder
) -> None:
    """One CLIENT span per attempt: method, server, template, status, error.type, resend count."""
    job_id = (await issue_with_faults(emulator, recorder)).job_id
    port = int(emulator.url.rsplit(":", 1)[1])
    server = {"server.address": "127.0.0.1", "server.port": port}
    issue_url = f"{emulator.url}/partner/campaigns/issue"
    poll_url = f"{emulator.url}/partner/issuance_jobs/{job_id}?merchant_id=REDACTED"
    expected = [
        (ISSUE, "POST", "/partner/campaigns/issue", issue_url, 503, "503", None),
        (ISSUE, "POST", "/partner/campaigns/issue", issue_url, 202, None, 1),
        (POLL, "GET", "/partner/issuance_jobs/{job_id}", poll_url, 429, "429", None),
        (POLL, "GET", "/partner/issuance_jobs/{job_id}", poll_url, 200, None, 1),
    ]
    spans = [s for s in recorder.finished() if s.kind is SpanKind.CLIENT]
    for span, (name, method, template, url, status, error, resent) in zip(
        spans, expected, strict=True
    ):
        attributes = dict(span.attributes or {})
        waited = attributes.pop("thanx.rate_limit.wait")
        assert isinstance(waited, float)
        assert waited >= 0
        wanted = {
            "http.request.method": method,
            **server,
            "url.template": template,
            "url.full": url,
            "http.response.status_code": status,
        }
        if error is not None:
            wanted["error.type"] = error
        if resent is not None:
            wanted["http.request.resend_count"] = resent
        assert span.name == name
        assert attributes == wanted
        assert span.status.status_code is (StatusCode.ERROR if error else StatusCode.UNSET)


async def test_the_metrics_of_a_batch_with_a_retry_a_429_and_a_failed_identifier(
    emulator: ThanxEmulator, recorder: Recorder
) -> None:
    """Request durations, retries, 429s, batch size, outcome waits, polls, pending, budget."""
    issued = await issue_with_faults(emulator, recorder)
    port = int(emulator.url.rsplit(":", 1)[1])
    server = {"server.address": "127.0.0.1", "server.port": port}
    post = {"http.request.method": "POST", **server, "url.template": "/partner/campaigns/issue"}
    get = {
        "http.request.method": "GET",
        **server,
        "url.template": "/partner/issuance_jobs/{job_id}",
    }
    duration = "http.client.request.duration"
    failed_post = recorder.histogram(
        duration, **post, **{"http.response.status_code": 503, "error.type": "503"}
    )
    assert failed_post.count == 1
    assert tuple(failed_post.explicit_bounds) == SEMCONV_BUCKETS
    assert recorder.histogram(duration, **post, **{"http.response.status_code": 202}).count == 1
    assert (
        recorder.histogram(
            duration, **get, **{"http.response.status_code": 429, "error.type": "429"}
        ).count
        == 1
    )
    assert recorder.histogram(duration, **get, **{"http.response.status_code": 200}).count == 1
    assert recorder.metrics()[duration].unit == "s"

    retries = "thanx.client.retries"
    post_retry = {
        "http.request.method": "POST",
        "url.template": "/partner/campaigns/issue",
        "error.type": "503",
    }
    get_retry = {
        "http.request.method": "GET",
        "url.template": "/partner/issuance_jobs/{job_id}",
        "error.type": "429",
    }
    assert recorder.value(retries, **post_retry) == 1
    assert recorder.value(retries, **get_retry) == 1
    assert (
        recorder.value(
            "thanx.client.rate_limited",
            **{"http.request.method": "GET", "url.template": "/partner/issuance_jobs/{job_id}"},
        )
        == 1
    )
    size = recorder.histogram("thanx.batch.size")
    assert (size.count, size.sum) == (1, 3)
    ok = recorder.histogram("thanx.outcome.duration", **{"thanx.outcome.status": "issued"})
    failed = recorder.histogram("thanx.outcome.duration", **{"thanx.outcome.status": "failed"})
    assert (ok.count, failed.count) == (2, 1)
    assert 0 < failed.min <= failed.max < 10
    polls = recorder.histogram("thanx.job.polls", **{"thanx.job.state": "completed"})
    assert (polls.count, polls.sum) == (1, 1)
    waits = recorder.histogram(
        "thanx.client.budget_wait",
        **{
            "http.request.method": "GET",
            "url.template": "/partner/issuance_jobs/{job_id}",
            "thanx.budget.granted": True,
        },
    )
    # The poll after the 429 waited out the limiter's pause (a 50 ms short window).
    assert waits.count == 2
    assert waits.max >= 0.04
    assert recorder.value("thanx.batcher.pending") == 0
    used = recorder.value("thanx.limiter.budget_used", **{"thanx.limiter.kind": "in_process"})
    assert used == pytest.approx(4 / 100_000)  # four requests counted in the long window
    assert recorder.value("thanx.limiter.queued", **{"thanx.limiter.kind": "in_process"}) == 0
    del issued
    gc.collect()
    # A closed batcher and client, once collected, are no longer observed.
    assert recorder.value("thanx.batcher.pending") == 0
    assert recorder.points("thanx.limiter.budget_used") == []


async def test_no_span_or_metric_carries_the_token_or_an_identifier(
    emulator: ThanxEmulator, recorder: Recorder
) -> None:
    """Names, attributes, links, events and data points never hold the token or a person."""
    await issue_with_faults(emulator, recorder)
    texts = list(every_attribute_value(recorder))
    assert texts
    secrets = [DEFAULT_ACCESS_TOKEN, *PEOPLE, "4155551234", "unknown.joe"]
    leaks = [(secret, text) for text in texts for secret in secrets if secret in text]
    assert leaks == []


async def test_pending_counts_identifiers_waiting_for_their_outcome(
    emulator: ThanxEmulator, recorder: Recorder
) -> None:
    """thanx.batcher.pending is read from the batcher when the reader collects."""
    async with (
        recorded_client(emulator, recorder) as client,
        batcher_for(client, max_wait=60.0) as batcher,
    ):
        futures = [await batcher.submit(f"p{i}@example.com") for i in range(5)]
        assert recorder.value("thanx.batcher.pending") == 5
        await batcher.flush()
        await asyncio.gather(*futures)
        assert recorder.value("thanx.batcher.pending") == 0


async def test_a_refused_identifier_splits_its_batch_into_child_batches(
    emulator: ThanxEmulator, recorder: Recorder
) -> None:
    """The refused batch ends 'split'; the batch resent without the offender is its child."""
    emulator.state.server_rejected.add(("email", "blocked@example.com"))
    people = ["a@example.com", "blocked@example.com", "b@example.com"]
    async with (
        recorded_client(emulator, recorder) as client,
        batcher_for(client, max_wait=0.02) as batcher,
    ):
        outcomes = await asyncio.gather(*(batcher.issue(p) for p in people))
    assert [o.status.value for o in outcomes] == ["issued", "failed", "issued"]
    batches = recorder.named("thanx.batch")
    parent = only([b for b in batches if b.parent is None])
    child = only([b for b in batches if b.parent is not None])
    assert parent.attributes is not None
    assert child.attributes is not None
    assert parent.attributes["thanx.batch.state"] == "split"
    assert parent.attributes["thanx.batch.size"] == 3
    assert child.parent is not None
    assert child.parent.span_id == parent.context.span_id
    assert child.attributes["thanx.batch.state"] == "completed"
    assert child.attributes["thanx.batch.size"] == 2
    refused = only([s for s in recorder.named(ISSUE) if s.parent == parent.context])
    assert refused.attributes is not None
    assert refused.attributes["http.response.status_code"] == 400
    sizes = recorder.histogram("thanx.batch.size")
    assert (sizes.count, sizes.sum) == (1, 3)  # batches as sealed: the split is not a seal


async def test_a_batch_that_cannot_be_sent_ends_in_error(
    emulator: ThanxEmulator, recorder: Recorder
) -> None:
    """Server errors past the retries: the batch span says not_sent, outcomes time as errors."""
    emulator.state.faults.add("issue", status=500, times=None)
    async with (
        recorded_client(
            emulator,
            recorder,
            retry=ta.RetryPolicy(max_attempts=2, initial_backoff=0.0, max_backoff=0.0),
        ) as client,
        batcher_for(client, max_wait=0.02) as batcher,
    ):
        futures = [await batcher.submit(p) for p in PEOPLE]
        results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(r, ta.ServerError) for r in results)
    batch = only(recorder.named("thanx.batch"))
    assert batch.attributes is not None
    assert batch.attributes["thanx.batch.state"] == "not_sent"
    assert batch.attributes["error.type"] == "ServerError"
    assert batch.status.status_code is StatusCode.ERROR
    assert "thanx.job.id" not in batch.attributes
    errors = recorder.histogram(
        "thanx.outcome.duration", **{"thanx.outcome.status": "error", "error.type": "ServerError"}
    )
    assert errors.count == 3
    retried = {
        "http.request.method": "POST",
        "url.template": "/partner/campaigns/issue",
        "error.type": "500",
    }
    assert recorder.value("thanx.client.retries", **retried) == 1


async def test_a_timed_out_attempt_is_a_span_with_error_type_timeout(
    emulator: ThanxEmulator, recorder: Recorder
) -> None:
    """No response within the client's timeout: no status code, error.type 'timeout'."""
    emulator.state.faults.add("scopes", delay=1.0)
    async with recorded_client(
        emulator, recorder, timeout=0.05, retry=ta.RetryPolicy(max_attempts=1)
    ) as client:
        with pytest.raises(ta.TransportError):
            await client.get_scopes()
    span = only(recorder.named("GET /partner/scopes"))
    assert span.attributes is not None
    assert span.attributes["error.type"] == "timeout"
    assert "http.response.status_code" not in span.attributes
    assert span.status.status_code is StatusCode.ERROR
    port = int(emulator.url.rsplit(":", 1)[1])
    point = recorder.histogram(
        "http.client.request.duration",
        **{
            "http.request.method": "GET",
            "server.address": "127.0.0.1",
            "server.port": port,
            "url.template": "/partner/scopes",
            "error.type": "timeout",
        },
    )
    assert 0.04 <= point.sum < 1.0


async def test_a_client_call_outside_a_batch_is_a_child_of_the_callers_span(
    emulator: ThanxEmulator, recorder: Recorder
) -> None:
    """Direct client calls join the application's trace; a 404 is an error span."""
    tracer = recorder.tracer_provider.get_tracer("the-app")
    async with recorded_client(emulator, recorder) as client:
        with tracer.start_as_current_span("lookup") as parent, pytest.raises(ta.NotFoundError):
            await client.get_campaign("no-such-campaign")
    span = only(recorder.named("GET /partner/campaigns/{campaign_id}"))
    assert span.parent is not None
    assert span.parent.span_id == parent.get_span_context().span_id
    assert span.attributes is not None
    assert span.attributes["error.type"] == "404"
    assert str(span.attributes["url.full"]).endswith("/partner/campaigns/no-such-campaign")
    assert span.status.status_code is StatusCode.ERROR


async def test_journal_commits_are_timed(
    emulator: ThanxEmulator, recorder: Recorder, tmp_path: Path
) -> None:
    """With a SQLite journal, admissions and seals are timed as journal commits."""
    async with (
        recorded_client(emulator, recorder) as client,
        batcher_for(client, max_wait=0.02, journal=tmp_path / "j.db") as batcher,
    ):
        await asyncio.gather(*(batcher.issue(p) for p in PEOPLE))
    name = "thanx.journal.commit.duration"
    admit = recorder.histogram(
        name, **{"thanx.journal.backend": "sqlite", "thanx.journal.operation": "admit"}
    )
    seal = recorder.histogram(
        name, **{"thanx.journal.backend": "sqlite", "thanx.journal.operation": "seal"}
    )
    assert admit.count >= 1
    assert seal.count == 1
    assert 0 < seal.sum < 5


async def test_records_about_a_batch_carry_its_key_and_job_id(
    emulator: ThanxEmulator, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """Every record logged while working on a batch has thanx_batch_key and thanx_job_id."""
    caplog.set_level(logging.DEBUG, logger="thanx_async")
    issued = await issue_with_faults(emulator, recorder)
    key, job_id = issued.key, issued.job_id
    about = [r for r in caplog.records if key in r.getMessage() or job_id in r.getMessage()]
    assert len(about) >= 4  # sealed, a retried POST, accepted, a retried poll, resolving
    for record in about:
        assert getattr(record, "thanx_batch_key", None) == key, record.getMessage()
    accepted = [r for r in about if "accepted as job" in r.getMessage()]
    after = about[about.index(accepted[0]) :]
    for record in after:
        assert getattr(record, "thanx_job_id", None) == job_id, record.getMessage()
    closing = [r for r in caplog.records if r.getMessage().startswith("batcher closed")]
    assert [getattr(r, "thanx_batch_key", "missing") for r in closing] == [None]


class TokenEchoingServer:
    """A hostile server: it names its job after the caller's token."""

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float,
    ) -> Response:
        token = headers["Authorization"].removeprefix("Bearer ")
        job = {"id": token, "state": "pending", "total_count": 1}
        if method == "GET":
            job = {**job, "state": "completed", "processed_count": 1, "success_count": 1}
        return Response(200 if method == "GET" else 202, {}, orjson.dumps({"issuance_job": job}))

    async def aclose(self) -> None:
        """Nothing to release."""


async def test_a_token_in_a_path_is_redacted_in_url_full(recorder: Recorder) -> None:
    """A job id chosen by the server to echo the token never reaches a span or a metric."""
    token = "tok_SUPERSECRET_telemetry_123"
    async with ta.ThanxClient(
        client_id="c",
        access_token=token,
        base_url="https://api.example.test/v",
        transport=TokenEchoingServer(),
        tracer_provider=recorder.tracer_provider,
        meter_provider=recorder.meter_provider,
    ) as client:
        job = await client.issue_rewards(
            merchant_id="m1", campaign_id="c1", variant_id="v1", identifiers=["a@example.com"]
        )
        await client.get_issuance_job(job.id, merchant_id="m1")
    poll = only(recorder.named(POLL))
    assert poll.attributes is not None
    assert poll.attributes["url.full"] == (
        "https://api.example.test/v/partner/issuance_jobs/<redacted>?merchant_id=REDACTED"
    )
    assert [t for t in every_attribute_value(recorder) if token in t] == []


async def test_an_api_without_bucket_advice_still_records(
    emulator: ThanxEmulator, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An application's older OpenTelemetry API (no advice) gets the SDK's buckets, no error."""
    from thanx_async._telemetry._api import load

    api = load()
    assert api is not None
    monkeypatch.setattr(api, "bucket_advice", False)
    async with recorded_client(emulator, recorder) as client:
        await client.get_scopes()
    point = only_point(recorder, "http.client.request.duration")
    assert tuple(point.explicit_bounds) != SEMCONV_BUCKETS  # the SDK's default boundaries
    assert point.count == 1


def only_point(recorder: Recorder, name: str) -> Any:
    points = recorder.points(name)
    assert len(points) == 1, points
    return points[0]


async def test_timing_an_outcome_keeps_asyncios_report_of_an_unawaited_failure(
    emulator: ThanxEmulator, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed future nobody awaits is still reported by asyncio: timing it retrieves nothing."""
    emulator.state.faults.add("issue", status=400, times=None)  # a batch-wide rejection
    # A record of the rejection would hold the error, and through it the future.
    caplog.set_level(logging.ERROR, logger="thanx_async")
    async with recorded_client(emulator, recorder) as client:
        async with batcher_for(client, max_wait=0.0) as batcher:
            future = await batcher.submit("dropped@example.com")
            await asyncio.wait([future])
        del future, batcher
        for _ in range(3):  # asyncio reports the error when the future is collected
            gc.collect()
            await asyncio.sleep(0.01)
    errors = recorder.histogram(
        "thanx.outcome.duration",
        **{"thanx.outcome.status": "error", "error.type": "BadRequestError"},
    )
    assert errors.count == 1
    assert any("exception was never retrieved" in r.getMessage() for r in caplog.records)


async def test_a_finished_batch_is_not_kept_alive_by_its_log_label(
    emulator: ThanxEmulator, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """The label in the batch task's context (kept by aiohttp's open connection) holds no entry."""
    emulator.state.faults.add("issue", status=400, times=None)  # failed entries stay in the batch
    caplog.set_level(logging.ERROR, logger="thanx_async")  # a record would hold the error
    async with recorded_client(emulator, recorder) as client:
        async with batcher_for(client, max_wait=0.0) as batcher:
            future = await batcher.submit("dropped@example.com")
            with pytest.raises(ta.BadRequestError):
                await future
        gone = weakref.ref(future)
        del future, batcher
        gc.collect()
        assert gone() is None  # while the client, and its pooled connection, are still open
