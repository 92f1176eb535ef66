"""``thanx-async issue``: identifiers from a file or stdin, through RewardBatcher, with a report.

Order of events: read and check the whole input (``_source``: nothing is sent
if any line cannot be read), check the credential, merchant, campaign and
variant (``_preflight``), then read, validate and submit row by row while
outcomes arrive, then flush and wait for every outcome. Invalid lines and
repeats of an identifier already read are reported with their line numbers
and skipped. With ``--journal`` the batcher journals every identifier before
``submit`` returns, so a rerun of the same command after Ctrl-C, a kill or a
crash finishes the work without issuing anyone twice.

Every input row ends up in exactly one report row: issued, failed, unknown,
invalid, duplicate, unresolved (submitted, outcome unknown when the command
stopped) or not_sent (the command stopped before submitting it).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import attrs
from rich.markup import escape

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
    plural,
)
from thanx_async._cli._drive import Outstanding, StopSignal, drive
from thanx_async._cli._input import BadRow, InputError, Row, parse_row, read_rows
from thanx_async._cli._preflight import confirm, preflight
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
from thanx_async._cli._source import InputSource, ScanResult, scan
from thanx_async._client import ThanxClient
from thanx_async._errors import InvalidIdentifierError, JournalError
from thanx_async._identifiers import Identifier

__all__ = ["IssueOptions", "run_issue"]

#: Invalid lines printed one by one; the rest are counted (and all are in the report).
MAX_SHOWN_INVALID = 20
#: Identifiers not issued listed at the end when there is no report.
MAX_SHOWN_NOT_ISSUED = 10
#: Multi-line CSV records named before the run.
MAX_SHOWN_SPANS = 5
_NOT_ISSUED = frozenset({Status.FAILED, Status.UNKNOWN, Status.UNRESOLVED})


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
    yes: bool = False


def _open_source(options: IssueOptions) -> InputSource:
    if options.source == "-" and sys.stdin.isatty():
        raise CLIError("no input: pass a FILE, or pipe identifiers on stdin", EXIT_USAGE)
    try:
        return InputSource.open(options.source)
    except InputError as exc:
        raise CLIError(str(exc), EXIT_USAGE) from None


def _scan(source: InputSource, options: IssueOptions, consoles: Consoles) -> ScanResult:
    """Read the whole input once; stop with exit 2 before anything is sent if it is broken."""
    try:
        scanned = scan(source, options.column)
    except InputError as exc:
        raise CLIError(f"{source.label}: {exc}. Nothing was sent.", EXIT_USAGE) from None
    for first, last in scanned.spans[:MAX_SHOWN_SPANS]:
        consoles.warn(
            f"line {first}: a quoted field runs over lines {first}-{last} "
            "(fine if it is meant to; a stray quote does this too)"
        )
    if len(scanned.spans) > MAX_SHOWN_SPANS:
        more = plural(len(scanned.spans) - MAX_SHOWN_SPANS, "more row")
        consoles.warn(f"{more} run over several lines")
    return scanned


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
    source = _open_source(options)
    try:
        scanned = _scan(source, options, consoles)
        if scanned.rows == 0:
            consoles.warn(f"{source.label} holds no identifiers: nothing to issue")
            return EXIT_OK
        async with credentials.client() as client:
            warnings = await preflight(
                client,
                merchant_id=options.merchant_id,
                campaign_id=options.campaign_id,
                variant_id=options.variant_id,
            )
            confirm(
                warnings,
                yes=options.yes,
                interactive=sys.stdin.isatty(),
                ask=lambda prompt: consoles.err.input(escape(prompt)),
                warn=consoles.warn,
            )
            report = _open_report(options)
            try:
                batcher = RewardBatcher(
                    client,
                    merchant_id=options.merchant_id,
                    campaign_id=options.campaign_id,
                    variant_id=options.variant_id,
                    max_batch_size=options.batch_size,
                    max_wait=options.max_wait,
                    close_timeout=options.grace,
                    journal=None if options.journal is None else os.fspath(options.journal),
                )
                run = _IssueRun(options, consoles, report, source, scanned.rows)
                return await run.execute(client, batcher)
            finally:
                if report is not None:
                    report.close()
    finally:
        source.close()


class _IssueRun:
    def __init__(
        self,
        options: IssueOptions,
        consoles: Consoles,
        report: Report | None,
        source: InputSource,
        rows: int,
    ) -> None:
        self.options = options
        self.consoles = consoles
        self.report = report
        self.source = source
        self.reader = RowReader(source.lines, column=options.column)
        self.tally = Tally(expected=rows)
        self.outstanding = Outstanding(self.tally, self._write_outcome)
        self.seen: dict[str, int] = {}
        self.input_error: InputError | None = None
        #: The last line handed to _screen: every row up to it has its report row (or will).
        self.screened_to = 0
        #: Screened rows whose submit() has not returned (cut short by Ctrl-C).
        self.submitting: dict[int, Identifier] = {}
        #: The first identifiers not issued (status, line), for the terminal without a report.
        self.not_issued: list[tuple[Status, str]] = []
        self.not_issued_count: dict[Status, int] = dict.fromkeys(_NOT_ISSUED, 0)
        #: Where the summary goes: stderr when the report takes stdout.
        self.summary_console = (
            consoles.err if report is not None and report.to_stdout else consoles.out
        )

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
                if interrupted:
                    self._account_unsent()
        snapshot = progress.snapshot()
        self.summary_console.print(summary_table("Summary", self._summary_rows(snapshot)))
        return self._finish(interrupted=interrupted)

    async def _feed(self, batcher: RewardBatcher) -> None:
        async def submit(line: int, ident: Identifier) -> None:
            future = await batcher.submit(ident)
            del self.submitting[line]
            self.outstanding.add(future, line, ident)  # at once: Ctrl-C may cancel the rest

        try:
            async for chunk in self.reader:
                valid = self._screen(chunk)
                self.submitting = dict(valid)
                # Submitted together: with a journal, one commit (one fsync) per chunk.
                await asyncio.gather(*(submit(line, ident) for line, ident in valid))
        except InputError as exc:
            self.input_error = exc

    def _screen(self, chunk: list[Row | BadRow]) -> list[tuple[int, Identifier]]:
        """The chunk's valid identifiers not seen before; the rest is reported."""
        valid: list[tuple[int, Identifier]] = []
        for row in chunk:
            self.tally.read += 1
            self.screened_to = row.line
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

    def _account_unsent(self) -> None:
        """After Ctrl-C: a report row for every row that never reached the batcher."""
        # Without a journal a submit() cut short queued nothing; with one, the
        # identifier may already be journaled (and so sent by a rerun): unresolved.
        cut_short = Status.NOT_SENT if self.options.journal is None else Status.UNRESOLVED
        for line, ident in sorted(self.submitting.items()):
            self._record(cut_short, line, ident.value, ident.type, "stopped while submitting it")
        self.submitting.clear()
        if self.tally.feeding_done or self.input_error is not None:
            return
        unread = max(0, (self.tally.expected or 0) - self.tally.read)
        if self.report is None:
            self.tally.not_sent += unread
            return
        self.reader.close()  # the input is read once more, from the start
        with self.source.lines() as lines:
            for row in read_rows(lines, column=self.options.column):
                if row.line <= self.screened_to:
                    continue
                parsed = parse_row(row) if isinstance(row, Row) else None
                if isinstance(parsed, Identifier):
                    value, kind = parsed.value, parsed.type
                else:
                    value, kind = row.value, None
                self._record(Status.NOT_SENT, row.line, value, kind, "not read: stopped before")

    def _record(self, status: Status, line: int, value: str, kind: str | None, error: str) -> None:
        if status is Status.UNRESOLVED:
            self.tally.unresolved += 1
            self.tally.submitted += 1
        else:
            self.tally.not_sent += 1
        if self.report is not None:
            self.report.write(line=line, identifier=value, kind=kind, status=status, error=error)

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
        if ident is None:
            return
        if status in _NOT_ISSUED:
            self.not_issued_count[status] += 1
            if len(self.not_issued) < MAX_SHOWN_NOT_ISSUED:
                because = f" ({error})" if error else ""
                self.not_issued.append(
                    (status, f"line {line}: {ident.value} {status.value}{because}")
                )
        if self.report is not None:
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
            ("input", f"{self.source.label} ({t.expected or 0:,} rows)"),
            ("invalid (skipped)", f"[yellow]{t.invalid:,}[/]" if t.invalid else "0"),
            ("duplicates (skipped)", f"{t.duplicates:,}"),
            ("submitted", f"{t.submitted:,}"),
            *outcome_rows(t),
            *request_rows(snapshot),
            *timing_rows(snapshot),
        ]
        if self.report is not None:
            rows.append(("report", f"{self.report.label} ({self.report.rows:,} rows)"))
        if o.journal is not None:
            rows.append(("journal", str(o.journal)))
        return rows

    def _finish(self, *, interrupted: bool) -> int:
        t = self.tally
        if t.invalid > MAX_SHOWN_INVALID:
            where = "the report lists them all" if self.report else "use --report to list them all"
            more = plural(t.invalid - MAX_SHOWN_INVALID, "more invalid line")
            self.consoles.warn(f"{more} ({where})")
        self._show_not_issued(interrupted=interrupted)
        if self.input_error is not None:
            self.consoles.error(
                f"stopped reading after line {self.reader.last_line}: {self.input_error} "
                "(did the input change while it was being read?)"
            )
            return EXIT_FAILED
        if interrupted:
            self._explain_interruption()
            return EXIT_INTERRUPTED
        if t.unresolved:
            self.consoles.warn(f"{plural(t.unresolved, 'identifier')} without a known outcome")
        if t.invalid or t.failed or t.unknown or t.unresolved:
            return EXIT_FAILED
        return EXIT_OK

    def _show_not_issued(self, *, interrupted: bool) -> None:
        """Failed and unknown outcomes (and unresolved ones, unless interrupted: said below)."""
        statuses = _NOT_ISSUED - {Status.UNRESOLVED} if interrupted else _NOT_ISSUED
        count = sum(self.not_issued_count[status] for status in statuses)
        if not count:
            return
        if self.report is not None:
            self.consoles.warn(f"{plural(count, 'identifier')} not issued: see {self.report.label}")
            return
        lines = [text for status, text in self.not_issued if status in statuses]
        first = "" if len(lines) == count else f" (the first {len(lines)})"
        self.consoles.warn(f"{plural(count, 'identifier')} not issued{first}:")
        for line in lines:
            self.consoles.note(f"  {line}")
        if len(lines) < count:
            self.consoles.note("  ... --report PATH lists them all")

    def _explain_interruption(self) -> None:
        t, o = self.tally, self.options
        if t.feeding_done:
            read = f"all {t.expected or t.read:,} rows were read"
        else:
            read = f"reading stopped after line {self.screened_to:,}"
        message = f"Interrupted: {read}; {plural(t.unresolved, 'identifier')} unresolved"
        message += f", {plural(t.not_sent, 'row')} not sent." if t.not_sent else "."
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
