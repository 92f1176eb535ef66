"""The command line's parts on their own: reports, statuses, progress, signals, secrets."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path

import pytest
from rich.console import Console

import thanx_async as ta
from thanx_async._cli._common import (
    EXIT_USAGE,
    CLIError,
    Consoles,
    RedactingFilter,
    add_secret,
    configure_logging,
    describe_error,
    redact,
    resolve_credentials,
    secrets_in_argv,
)
from thanx_async._cli._drive import Outstanding, StopSignal, drive, race
from thanx_async._cli._progress import LiveProgress, Tally, request_rows, summary_table
from thanx_async._cli._report import Report, ReportFormat, Status, classify
from thanx_async.testing import (
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
)

FAST = pytest.mark.thanx_emulator(start_delay=0.0, speed=1_000_000.0)


def test_report_formats(tmp_path: Path) -> None:
    """The suffix picks the format; CSV has a header row, JSONL one object per line."""
    assert ReportFormat.for_path(Path("r.JSONL")) is ReportFormat.JSONL
    assert ReportFormat.for_path(Path("r.txt")) is ReportFormat.CSV
    assert ReportFormat.for_path(Path("r.txt"), "jsonl") is ReportFormat.JSONL
    for name in ("r.csv", "r.jsonl"):
        path = tmp_path / name
        report = Report(path, ReportFormat.for_path(path))
        report.write(line=3, identifier="a@example.com", kind="email", status=Status.ISSUED)
        report.write(line=4, identifier="x", kind=None, status=Status.INVALID, error="bad")
        report.close()
        report.close()
        assert report.rows == 2
    assert (tmp_path / "r.csv").read_text().splitlines() == [
        "line,identifier,type,status,job_id,error",
        "3,a@example.com,email,issued,,",
        "4,x,,invalid,,bad",
    ]
    first = json.loads((tmp_path / "r.jsonl").read_text().splitlines()[0])
    assert first == {
        "line": 3, "identifier": "a@example.com", "type": "email",
        "status": "issued", "job_id": None, "error": None,
    }  # fmt: skip


async def test_classify_every_way_a_submission_ends() -> None:
    """Outcomes keep their status; closed, timed-out and unanswered ones are unresolved."""
    loop = asyncio.get_running_loop()
    job = ta.IssuanceJob(id="job_1", state=ta.JobState.FAILED)
    ident = ta.Identifier.parse("a@example.com")
    cases: list[tuple[object, tuple[Status, str | None]]] = [
        (ta.IssuanceOutcome(identifier=ident, status=ta.OutcomeStatus.UNKNOWN, job_id="j"),
         (Status.UNKNOWN, "j")),
        (ta.JobFailedError(job), (Status.FAILED, "job_1")),
        (ta.BatcherClosedError("closed"), (Status.UNRESOLVED, None)),
        (ta.JobTimeoutError("job_2"), (Status.UNRESOLVED, None)),
        (ta.TransportError("down"), (Status.UNRESOLVED, None)),
        (ta.APIError(403, "FORBIDDEN", "no"), (Status.FAILED, None)),
    ]  # fmt: skip
    for value, expected in cases:
        future: asyncio.Future[ta.IssuanceOutcome] = loop.create_future()
        if isinstance(value, BaseException):
            future.set_exception(value)
        else:
            assert isinstance(value, ta.IssuanceOutcome)
            future.set_result(value)
        status, job_id, _ = classify(future)
        assert (status, job_id) == expected
    cancelled: asyncio.Future[ta.IssuanceOutcome] = loop.create_future()
    cancelled.cancel()
    assert classify(cancelled)[0] is Status.UNRESOLVED


def test_redaction_of_secrets() -> None:
    """Registered secrets are masked in text and log records; short values are not secrets."""
    secrets_in_argv(["--access-token", "tok_from_flag_123", "--access-token=tok_equals_456"], {})
    add_secret("abc")
    assert redact("a tok_from_flag_123 b tok_equals_456 abc") == "a *** b *** abc"
    record = logging.LogRecord("x", logging.INFO, "f", 1, "value %s", ("tok_from_flag_123",), None)
    assert RedactingFilter().filter(record)
    assert record.getMessage() == "value ***"


def test_credentials_from_flags_then_environment() -> None:
    """Flags win over the environment; the base URL defaults to the sandbox."""
    env = {"THANX_CLIENT_ID": "env-id", "THANX_ACCESS_TOKEN": "env-token-123"}
    creds = resolve_credentials("flag-id", None, None, env)
    assert (creds.client_id, creds.access_token, creds.base_url) == (
        "flag-id", "env-token-123", ta.SANDBOX_URL,
    )  # fmt: skip
    assert "env-token-123" not in repr(creds)
    with pytest.raises(CLIError) as caught:
        resolve_credentials(None, None, None, {})
    assert caught.value.status == EXIT_USAGE


def test_describe_error_gives_hints() -> None:
    """Each error kind reads as one line with a hint, never a stack trace."""
    assert "check THANX_CLIENT_ID" in describe_error(ta.AuthenticationError(401, None, "no"))
    assert describe_error(ta.PermissionDeniedError(403, "FORBIDDEN", "scope")).startswith(
        "permission denied"
    )
    assert "refused the request" in describe_error(ta.ServerError(500, None, "boom"))
    assert "at http://x" in describe_error(ta.TransportError("down"), "http://x")
    assert describe_error(ta.JournalError("locked")) == "locked"
    assert describe_error(RuntimeError("odd")) == "RuntimeError: odd"


def test_logging_goes_through_rich_and_is_restored() -> None:
    """configure_logging routes SDK logs to stderr and its return value undoes it."""
    logger = logging.getLogger("thanx_async")
    before = (list(logger.handlers), logger.level, logger.propagate)
    restore = configure_logging(Consoles(), 2)
    assert logger.level == logging.DEBUG
    assert not logger.propagate
    restore()
    assert (list(logger.handlers), logger.level, logger.propagate) == before


async def test_stop_signal_first_sets_second_cancels() -> None:
    """The first signal asks to stop; the second cancels the command's task."""

    async def command(stop: StopSignal) -> None:
        stop.trigger()
        assert stop.is_set
        stop.trigger()
        await asyncio.sleep(10)

    with StopSignal() as stop:
        task = asyncio.ensure_future(command(stop))
        stop._task = task
        with pytest.raises(asyncio.CancelledError):
            await task


@FAST
async def test_drive_stops_when_signalled(thanx_client: ta.ThanxClient) -> None:
    """A stop during feeding ends drive() early; abandon() counts what is left unresolved."""
    tally = Tally()
    outstanding = Outstanding(tally)
    stop = StopSignal()
    async with ta.RewardBatcher(
        thanx_client, merchant_id=DEFAULT_MERCHANT_ID, campaign_id=DEFAULT_CAMPAIGN_ID,
        variant_id=DEFAULT_VARIANT_ID, max_wait=60.0, close_timeout=0.0,
    ) as batcher:  # fmt: skip

        async def feed() -> None:
            future = await batcher.submit("a@example.com")
            outstanding.add(future, 1)
            stop.event.set()
            await asyncio.sleep(30)

        assert await drive(feed(), batcher, tally, stop)
    assert await outstanding.abandon() == 0  # the close already failed it: counted once
    assert (tally.submitted, tally.unresolved) == (1, 1)
    done = asyncio.get_running_loop().create_future()
    done.set_result(None)
    assert not await race(done, stop)


@FAST
async def test_live_progress_renders_on_a_terminal(thanx_client: ta.ThanxClient) -> None:
    """On a terminal the panel shows the counters; the summary rows count requests."""
    buffer = io.StringIO()
    consoles = Consoles(
        out=Console(file=io.StringIO()),
        err=Console(file=buffer, force_terminal=True, width=120, color_system=None),
    )
    tally = Tally(expected=2)
    async with ta.RewardBatcher(
        thanx_client, merchant_id=DEFAULT_MERCHANT_ID, campaign_id=DEFAULT_CAMPAIGN_ID,
        variant_id=DEFAULT_VARIANT_ID, max_wait=0.0,
    ) as batcher:  # fmt: skip
        progress = LiveProgress(consoles, "test run", tally, thanx_client, batcher)
        async with progress:
            outcome = await batcher.issue("a@example.com")
            tally.submitted, tally.issued, tally.invalid = 1, 1, 1
            await asyncio.sleep(0.3)
        assert outcome.issued
    text = buffer.getvalue()
    assert "test run" in text
    assert "submitted" in text
    assert "100%" in text
    assert "2/2 rows" in text
    assert "ETA 0:00" in text
    rows = dict(request_rows(progress.snapshot()))
    assert rows["batches"] == "1"
    table = summary_table("Summary", [("issued", "1")])
    assert table.row_count == 1
    no_total = LiveProgress(consoles, "t", Tally(), thanx_client, batcher, enabled=False)
    async with no_total:
        assert no_total.render() is not None
