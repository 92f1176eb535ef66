"""Live progress and the final summary of ``issue`` and ``demo``.

On a terminal the progress is a rich live panel refreshed four times a second
from the event loop (no refresh thread reads the counters); elsewhere (CI logs,
pipes) it is a plain line every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from types import TracebackType

import attrs
from rich.console import Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from thanx_async._batcher import RewardBatcher
from thanx_async._cli._common import Consoles
from thanx_async._client import ThanxClient

__all__ = ["LiveProgress", "Snapshot", "Tally", "summary_table"]


@attrs.define
class Tally:
    """The counters of one run, kept by the command as rows are read and outcomes arrive.

    Attributes:
        expected: rows expected in all, if known (drives the progress bar).
        read: rows read.
        invalid: rows refused before submission.
        duplicates: rows skipped because the same identifier came earlier.
        submitted: identifiers handed to the batcher.
        issued: outcomes ISSUED.
        failed: outcomes FAILED, or batches that failed.
        unknown: outcomes UNKNOWN.
        unresolved: identifiers whose outcome is not known when the run ends.
        not_sent: rows never handed to the batcher (the command stopped first).
    """

    expected: int | None = None
    read: int = 0
    invalid: int = 0
    duplicates: int = 0
    submitted: int = 0
    issued: int = 0
    failed: int = 0
    unknown: int = 0
    unresolved: int = 0
    not_sent: int = 0
    feeding_done: bool = False
    all_settled: asyncio.Event = attrs.field(factory=asyncio.Event)

    @property
    def settled(self) -> int:
        """Submitted identifiers whose outcome (or failure) is known."""
        return self.issued + self.failed + self.unknown + self.unresolved

    @property
    def finished_rows(self) -> int:
        """Rows that need nothing more: settled, invalid, duplicate or not sent."""
        return self.settled + self.invalid + self.duplicates + self.not_sent

    def check_settled(self) -> None:
        """Set :attr:`all_settled` once feeding is over and every submission is settled."""
        if self.feeding_done and self.settled >= self.submitted:
            self.all_settled.set()


@attrs.frozen
class Snapshot:
    """Everything the display shows, read at one instant."""

    expected: int | None
    finished_rows: int
    submitted: int
    accepted: int
    issued: int
    failed: int
    unknown: int
    invalid: int
    requests: int
    posts: int
    gets: int
    polls: int
    rate_limited: int
    retries: int
    batches: int
    elapsed: float

    @property
    def rate(self) -> float:
        """Identifiers with a server outcome per second so far."""
        done = self.issued + self.failed + self.unknown
        return done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the pace so far, when the total is known and rows have finished."""
        if not self.expected or self.finished_rows <= 0 or self.elapsed <= 0:
            return None
        left = max(0, self.expected - self.finished_rows)
        return left * self.elapsed / self.finished_rows


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    if minutes >= 60:
        hours, minutes = divmod(minutes, 60)
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def _eta(s: Snapshot) -> str:
    eta = s.eta
    return "ETA --:--" if eta is None else f"ETA {_duration(eta + 0.999)}"


def _rows_done(s: Snapshot) -> str:
    """``rows 4,000/10,000 (40%) · ETA 0:12`` when the total is known, else nothing."""
    if not s.expected:
        return ""
    total = max(s.expected, s.finished_rows)
    return f"rows {s.finished_rows:,}/{total:,} ({s.finished_rows * 100 // total}%) · {_eta(s)} · "


class LiveProgress:
    """Shows a run's progress until the block ends.

    Args:
        consoles: where to draw (stderr).
        title: the first line of the panel.
        tally: the run's counters.
        client: the client (requests, 429s).
        batcher: the batcher (batches, polls).
        enabled: False shows nothing.
        plain_interval: seconds between plain lines when stderr is not a terminal.
    """

    def __init__(
        self,
        consoles: Consoles,
        title: str,
        tally: Tally,
        client: ThanxClient,
        batcher: RewardBatcher,
        *,
        enabled: bool = True,
        plain_interval: float = 2.0,
    ) -> None:
        self._consoles = consoles
        self._title = title
        self._tally = tally
        self._client = client
        self._batcher = batcher
        self._enabled = enabled
        self._plain_interval = plain_interval
        self._started = 0.0
        self._ended: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._live: Live | None = None

    @property
    def elapsed(self) -> float:
        """Seconds since the block started (frozen once it ended)."""
        end = self._ended if self._ended is not None else asyncio.get_running_loop().time()
        return end - self._started

    def snapshot(self) -> Snapshot:
        """The counters now."""
        tally, transport, stats = self._tally, self._client.stats, self._batcher.stats()
        return Snapshot(
            expected=tally.expected,
            finished_rows=tally.finished_rows,
            submitted=tally.submitted,
            # A journal can resolve identifiers from jobs accepted by an earlier run.
            accepted=max(stats.accepted, tally.issued + tally.failed + tally.unknown),
            issued=tally.issued,
            failed=tally.failed,
            unknown=tally.unknown,
            invalid=tally.invalid,
            requests=transport.requests,
            posts=transport.posts,
            gets=transport.gets,
            polls=stats.polls,
            rate_limited=transport.rate_limited,
            retries=transport.retries,
            batches=stats.sealed_batches,
            elapsed=self.elapsed,
        )

    async def __aenter__(self) -> LiveProgress:
        self._started = asyncio.get_running_loop().time()
        if not self._enabled:
            return self
        if self._consoles.err.is_terminal:
            live = Live(
                self.render(), console=self._consoles.err, auto_refresh=False, transient=False
            )
            live.start()
            self._live = live
            self._task = asyncio.get_running_loop().create_task(self._refresh(live))
        else:
            self._task = asyncio.get_running_loop().create_task(self._plain())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._ended = asyncio.get_running_loop().time()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        live = self._live
        if live is not None:
            live.update(self.render(), refresh=True)
            live.stop()
        elif self._enabled:
            self._consoles.note(self.line())

    async def _refresh(self, live: Live) -> None:
        while True:
            await asyncio.sleep(0.25)
            live.update(self.render(), refresh=True)

    async def _plain(self) -> None:
        while True:
            await asyncio.sleep(self._plain_interval)
            self._consoles.note(self.line())

    def line(self) -> str:
        """The progress as one plain line."""
        s = self.snapshot()
        return (
            f"[{_duration(s.elapsed)}] {_rows_done(s)}"
            f"submitted {s.submitted:,} · accepted {s.accepted:,} · "
            f"issued {s.issued:,} · failed {s.failed:,} · unknown {s.unknown:,} · "
            f"invalid {s.invalid:,} · {s.rate:,.0f} ids/s · requests {s.requests:,} · "
            f"429s {s.rate_limited:,}"
        )

    def render(self) -> RenderableType:
        """The live panel."""
        s = self.snapshot()
        if s.expected:
            total = max(s.expected, s.finished_rows, 1)
            grid = Table.grid(padding=(0, 1))
            grid.add_row(
                ProgressBar(total=total, completed=s.finished_rows, width=40),
                Text(
                    f"{s.finished_rows * 100 // total:3d}%  {s.finished_rows:,}/{total:,} rows  "
                    f"{_duration(s.elapsed)}  {_eta(s)}"
                ),
            )
            bar: RenderableType = grid
        else:
            bar = Text(f"{_duration(s.elapsed)}")
        counters = Table(box=None, padding=(0, 2), show_edge=False)
        names = ("submitted", "accepted", "issued", "failed", "unknown", "invalid", "ids/s")
        for name in names:
            counters.add_column(name, justify="right", header_style="bold")
        counters.add_row(
            f"{s.submitted:,}",
            f"{s.accepted:,}",
            f"[green]{s.issued:,}[/]",
            f"[red]{s.failed:,}[/]" if s.failed else "0",
            f"{s.unknown:,}",
            f"[yellow]{s.invalid:,}[/]" if s.invalid else "0",
            f"{s.rate:,.0f}",
        )
        footer = Text(
            f"requests {s.requests:,} ({s.posts:,} POST · {s.gets:,} GET) · "
            f"batches {s.batches:,} · 429s {s.rate_limited:,} · retries {s.retries:,}",
            style="dim",
        )
        return Panel(Group(bar, counters, footer), title=self._title, title_align="left")


def summary_table(title: str, rows: Sequence[tuple[str, str]]) -> Table:
    """A two-column table of labelled values."""
    table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(justify="right")
    for label, value in rows:
        table.add_row(label, value)
    return table


def request_rows(s: Snapshot) -> list[tuple[str, str]]:
    """The summary rows about traffic: batches, requests by kind, 429s, identifiers per request."""
    served = s.issued + s.failed + s.unknown
    per_request = served / s.requests if s.requests else 0.0
    return [
        ("batches", f"{s.batches:,}"),
        ("requests", f"{s.requests:,}  ({s.posts:,} POST · {s.gets:,} GET)"),
        ("  issue POSTs · job polls", f"{s.posts:,} · {s.polls:,}"),
        ("429s received", f"{s.rate_limited:,}"),
        ("retries", f"{s.retries:,}"),
        ("identifiers per request", f"{per_request:,.0f}"),
    ]


def outcome_rows(tally: Tally) -> list[tuple[str, str]]:
    """The summary rows about outcomes."""
    return [
        ("issued", f"[green]{tally.issued:,}[/]"),
        ("failed", f"[red]{tally.failed:,}[/]" if tally.failed else "0"),
        ("unknown", f"{tally.unknown:,}"),
        ("unresolved", f"[yellow]{tally.unresolved:,}[/]" if tally.unresolved else "0"),
        *((("not sent", f"[yellow]{tally.not_sent:,}[/]"),) if tally.not_sent else ()),
    ]


def timing_rows(s: Snapshot) -> list[tuple[str, str]]:
    """The summary rows about time."""
    return [
        ("elapsed", f"{s.elapsed:,.1f} s"),
        ("identifiers per second", f"{s.rate:,.0f}"),
    ]
