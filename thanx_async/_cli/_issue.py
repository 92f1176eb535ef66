"""``thanx-async issue``: identifiers from a file or stdin, through RewardBatcher, with a report.

Order of events: check the credential and the campaign (two requests, so a
typo fails in a second rather than batch by batch), then read, validate and
submit row by row while outcomes arrive, then flush and wait for every
outcome. Invalid lines and repeats of an identifier already read are reported
with their line numbers and skipped. With ``--journal`` the batcher journals
every identifier before ``submit`` returns, so a rerun of the same command
after Ctrl-C, a kill or a crash finishes the work without issuing anyone twice.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
from pathlib import Path
from typing import Any

import attrs

from thanx_async._batcher import RewardBatcher
from thanx_async._cli._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CLIError,
    Consoles,
    Credentials,
    describe_error,
)
from thanx_async._cli._drive import Outstanding, StopSignal, drive
from thanx_async._cli._input import (
    BadRow,
    InputError,
    Row,
    count_data_lines,
    open_input,
    parse_row,
)
from thanx_async._cli._progress import (
    LiveProgress,
    Snapshot,
    Tally,
    outcome_rows,
    request_rows,
    summary_table,
    timing_rows,
)
from thanx_async._cli._reader import RowReader
from thanx_async._cli._report import Report, ReportFormat, Status
from thanx_async._client import ThanxClient
from thanx_async._errors import InvalidIdentifierError, JournalError, NotFoundError
from thanx_async._identifiers import Identifier

__all__ = ["IssueOptions", "journal_supported", "preflight", "run_issue"]

#: Invalid lines printed one by one; the rest are counted (and all are in the report).
MAX_SHOWN_INVALID = 20
ISSUE_SCOPE = "rewards.issue"


@attrs.frozen(kw_only=True)
class IssueOptions:
    """What ``thanx-async issue`` was asked to do."""

    source: str
    merchant_id: str
    campaign_id: str
    variant_id: str
    report: Path | None = None
    report_format: str | None = None
    journal: Path | None = None
    column: str | None = None
    batch_size: int = 10_000
    max_wait: float = 5.0
    grace: float = 10.0
    progress: bool = True


def journal_supported() -> bool:
    """Whether this thanx_async's RewardBatcher takes ``journal=``."""
    return "journal" in inspect.signature(RewardBatcher).parameters


async def preflight(client: ThanxClient, *, campaign_id: str, variant_id: str) -> None:
    """Fail fast on a credential without ``rewards.issue`` or a variant not in the campaign.

    Raises:
        CLIError: what is wrong, in one line.
        ThanxError: the API could not be asked (401, unreachable, ...).
    """
    scopes = await client.get_scopes()
    if ISSUE_SCOPE not in scopes:
        raise CLIError(
            f"this credential lacks the {ISSUE_SCOPE} scope (it has: {', '.join(scopes) or 'none'})"
        )
    try:
        campaign = await client.get_campaign(campaign_id)
    except NotFoundError:
        raise CLIError(f"campaign {campaign_id!r} not found", EXIT_USAGE) from None
    variants = [variant.id for variant in campaign.variants]
    if variant_id not in variants:
        raise CLIError(
            f"{variant_id!r} is not a variant of campaign {campaign_id!r} "
            f"(its variants: {', '.join(variants) or 'none'})",
            EXIT_USAGE,
        )


def _batcher_options(journal: Path | None) -> dict[str, Any]:
    if journal is None:
        return {}
    if not journal_supported():
        raise CLIError(
            "--journal needs a thanx_async whose RewardBatcher supports journal=", EXIT_USAGE
        )
    return {"journal": os.fspath(journal)}


def _open_report(options: IssueOptions) -> Report | None:
    if options.report is None:
        return None
    fmt = ReportFormat.for_path(options.report, options.report_format)
    try:
        return Report(options.report, fmt)
    except OSError as exc:
        raise CLIError(f"cannot write the report {options.report}: {exc.strerror}") from None


async def run_issue(options: IssueOptions, credentials: Credentials, consoles: Consoles) -> int:
    """Run the command; returns the exit status."""
    if not 1 <= options.batch_size <= 10_000:
        raise CLIError("--batch-size must be between 1 and 10000", EXIT_USAGE)
    if options.source == "-" and sys.stdin.isatty():
        raise CLIError("no input: pass a FILE, or pipe identifiers on stdin", EXIT_USAGE)
    try:
        opener = open_input(options.source)
        expected = count_data_lines(options.source, options.column)
    except InputError as exc:
        raise CLIError(str(exc), EXIT_USAGE) from None
    batcher_options = _batcher_options(options.journal)
    report = _open_report(options)
    try:
        async with credentials.client() as client:
            await preflight(client, campaign_id=options.campaign_id, variant_id=options.variant_id)
            batcher = RewardBatcher(
                client,
                merchant_id=options.merchant_id,
                campaign_id=options.campaign_id,
                variant_id=options.variant_id,
                max_batch_size=options.batch_size,
                max_wait=options.max_wait,
                close_timeout=options.grace,
                **batcher_options,
            )
            run = _IssueRun(options, consoles, report, RowReader(opener, column=options.column))
            run.tally.expected = expected
            return await run.execute(client, batcher)
    finally:
        if report is not None:
            report.close()


class _IssueRun:
    def __init__(
        self, options: IssueOptions, consoles: Consoles, report: Report | None, reader: RowReader
    ) -> None:
        self.options = options
        self.consoles = consoles
        self.report = report
        self.reader = reader
        self.tally = Tally()
        self.outstanding = Outstanding(self.tally, self._write_outcome)
        self.seen: dict[str, int] = {}
        self.input_error: InputError | None = None

    async def execute(self, client: ThanxClient, batcher: RewardBatcher) -> int:
        o = self.options
        title = f"thanx-async issue · {o.merchant_id} / {o.campaign_id} / {o.variant_id}"
        progress = LiveProgress(
            self.consoles, title, self.tally, client, batcher, enabled=o.progress
        )
        with StopSignal() as stop:
            async with progress:
                try:
                    async with batcher:
                        interrupted = await drive(self._feed(batcher), batcher, self.tally, stop)
                        if interrupted:
                            self.reader.stop()
                            self.consoles.note(
                                f"Stopping: no more lines are read; sending what is batched and "
                                f"waiting up to {o.grace:g} s for outcomes (Ctrl-C again aborts)."
                            )
                except JournalError as exc:
                    raise CLIError(describe_error(exc)) from None
                await self.outstanding.abandon()
        snapshot = progress.snapshot()
        self.consoles.out.print(summary_table("Summary", self._summary_rows(snapshot)))
        return self._finish(interrupted=interrupted)

    async def _feed(self, batcher: RewardBatcher) -> None:
        async def submit(line: int, ident: Identifier) -> None:
            future = await batcher.submit(ident)
            self.outstanding.add(future, line, ident)  # at once: Ctrl-C may cancel the rest

        try:
            async for chunk in self.reader:
                # Submitted together: with a journal, one commit (one fsync) per chunk.
                await asyncio.gather(*(submit(line, ident) for line, ident in self._screen(chunk)))
        except InputError as exc:
            self.input_error = exc
        self.tally.expected = self.tally.read

    def _screen(self, chunk: list[Row | BadRow]) -> list[tuple[int, Identifier]]:
        """The chunk's valid identifiers not seen before; the rest is reported."""
        valid: list[tuple[int, Identifier]] = []
        for row in chunk:
            self.tally.read += 1
            if isinstance(row, BadRow):
                self._invalid(row.line, row.value, row.reason)
                continue
            parsed = parse_row(row)
            if isinstance(parsed, InvalidIdentifierError):
                self._invalid(row.line, row.value, parsed.reason)
                continue
            first = self.seen.setdefault(parsed.value, row.line)
            if first != row.line:
                self._duplicate(row.line, parsed, first)
                continue
            valid.append((row.line, parsed))
        return valid

    def _invalid(self, line: int, value: str, reason: str) -> None:
        self.tally.invalid += 1
        if self.tally.invalid <= MAX_SHOWN_INVALID:
            self.consoles.warn(f"line {line}: {value!r} skipped: {reason}")
        if self.report is not None:
            self.report.write(
                line=line, identifier=value, kind=None, status=Status.INVALID, error=reason
            )

    def _duplicate(self, line: int, ident: Identifier, first: int) -> None:
        self.tally.duplicates += 1
        if self.report is not None:
            self.report.write(
                line=line,
                identifier=ident.value,
                kind=ident.type,
                status=Status.DUPLICATE,
                error=f"same identifier as line {first}",
            )

    def _write_outcome(
        self,
        line: int,
        ident: Identifier | None,
        status: Status,
        job_id: str | None,
        error: str | None,
    ) -> None:
        if self.report is not None and ident is not None:
            self.report.write(
                line=line,
                identifier=ident.value,
                kind=ident.type,
                status=status,
                job_id=job_id,
                error=error,
            )

    def _summary_rows(self, snapshot: Snapshot) -> list[tuple[str, str]]:
        o, t = self.options, self.tally
        rows = [
            ("input", "stdin" if o.source == "-" else o.source),
            ("rows read", f"{t.read:,}"),
            ("invalid (skipped)", f"[yellow]{t.invalid:,}[/]" if t.invalid else "0"),
            ("duplicates (skipped)", f"{t.duplicates:,}"),
            ("submitted", f"{t.submitted:,}"),
            *outcome_rows(t),
            *request_rows(snapshot),
            *timing_rows(snapshot),
        ]
        if self.report is not None:
            rows.append(("report", f"{self.report.path} ({self.report.rows:,} rows)"))
        if o.journal is not None:
            rows.append(("journal", str(o.journal)))
        return rows

    def _finish(self, *, interrupted: bool) -> int:
        t = self.tally
        if t.invalid > MAX_SHOWN_INVALID:
            where = "the report lists them all" if self.report else "use --report to list them all"
            self.consoles.warn(f"{t.invalid - MAX_SHOWN_INVALID:,} more invalid lines ({where})")
        if self.input_error is not None:
            self.consoles.error(
                f"stopped reading after line {self.reader.last_line}: {self.input_error}"
            )
            return EXIT_USAGE if t.read == 0 else EXIT_FAILED
        if interrupted:
            self._explain_interruption()
            return EXIT_INTERRUPTED
        if t.unresolved:
            self.consoles.warn(f"{t.unresolved:,} identifiers have no known outcome")
        if t.invalid or t.failed or t.unknown or t.unresolved:
            return EXIT_FAILED
        return EXIT_OK

    def _explain_interruption(self) -> None:
        t, o = self.tally, self.options
        if t.feeding_done:
            read = f"all {t.read:,} rows were read"
        else:
            read = f"reading stopped after line {self.reader.last_line:,}"
        message = f"Interrupted: {read}; {t.unresolved:,} identifiers unresolved."
        if o.journal is not None:
            message += (
                f" The journal {o.journal} holds them: run the same command again to "
                "finish without issuing anyone twice."
            )
        else:
            message += (
                " Their batches may still be processed by Thanx. Without --journal, running "
                "again may issue some of them twice."
            )
        self.consoles.warn(message)
