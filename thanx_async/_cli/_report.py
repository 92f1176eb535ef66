"""The per-identifier report of ``thanx-async issue --report``: CSV or JSON Lines.

One row per input row that held something (the header, blank lines and
comments excluded), written as outcomes arrive; ``line`` gives each row's
place in the input (sort by it for input order):

=========== ===============================================================
line        the input line the row starts on
identifier  the normalised identifier (or the raw text of an invalid line)
type        ``email`` / ``phone`` (empty for invalid lines)
status      ``issued``, ``failed``, ``unknown``, ``invalid``, ``duplicate``,
            ``unresolved`` or ``not_sent``
job_id      the issuance job that carried it, if any
error       why it is not ``issued``, if it is not
=========== ===============================================================

``--report -`` writes the report on stdout (the summary then goes to stderr).
"""

from __future__ import annotations

import asyncio
import csv
import enum
import sys
from pathlib import Path
from typing import IO

import orjson

from thanx_async._errors import BatcherClosedError, JobFailedError, JobTimeoutError, TransportError
from thanx_async._outcomes import IssuanceOutcome

__all__ = ["FIELDS", "STDOUT", "Report", "ReportFormat", "Status", "classify"]

FIELDS = ("line", "identifier", "type", "status", "job_id", "error")


class Status(enum.StrEnum):
    """What happened to one input row."""

    ISSUED = "issued"
    FAILED = "failed"
    UNKNOWN = "unknown"
    INVALID = "invalid"
    DUPLICATE = "duplicate"
    UNRESOLVED = "unresolved"
    #: Never handed to the batcher (the command stopped first): nothing was sent for it.
    NOT_SENT = "not_sent"


class ReportFormat(enum.StrEnum):
    """The report's file format."""

    CSV = "csv"
    JSONL = "jsonl"

    @classmethod
    def for_path(cls, path: Path, explicit: str | None = None) -> ReportFormat:
        """``explicit`` if given, else from the suffix (``.jsonl`` / ``.ndjson``; CSV otherwise)."""
        if explicit:
            return cls(explicit)
        return cls.JSONL if path.suffix.lower() in (".jsonl", ".ndjson") else cls.CSV


#: ``--report -``: the report goes to stdout.
STDOUT = Path("-")


class Report:
    """Writes report rows as outcomes arrive; the file is replaced, not appended to.

    Args:
        path: where to write; ``-`` (:data:`STDOUT`) is stdout.
        fmt: the format.

    Raises:
        OSError: the file cannot be created.
    """

    def __init__(self, path: Path, fmt: ReportFormat) -> None:
        self.path = path
        self.format = fmt
        self.rows = 0
        self.to_stdout = path == STDOUT
        self._file: IO[str] = (
            sys.stdout if self.to_stdout else path.open("w", encoding="utf-8", newline="")
        )
        self._csv = csv.writer(self._file) if fmt is ReportFormat.CSV else None
        if self._csv is not None:
            self._csv.writerow(FIELDS)

    def write(
        self,
        *,
        line: int,
        identifier: str,
        kind: str | None,
        status: Status,
        job_id: str | None = None,
        error: str | None = None,
    ) -> None:
        """Append one row."""
        self.rows += 1
        if self._csv is not None:
            self._csv.writerow(
                (line, identifier, kind or "", status.value, job_id or "", error or "")
            )
            return
        record = {
            "line": line,
            "identifier": identifier,
            "type": kind,
            "status": status.value,
            "job_id": job_id,
            "error": error,
        }
        self._file.write(orjson.dumps(record).decode() + "\n")

    @property
    def label(self) -> str:
        """How the summary names the report."""
        return "stdout" if self.to_stdout else str(self.path)

    def close(self) -> None:
        """Flush and close the file (idempotent; stdout is only flushed)."""
        if self.to_stdout:
            self._file.flush()
        elif not self._file.closed:
            self._file.close()


def classify(future: asyncio.Future[IssuanceOutcome]) -> tuple[Status, str | None, str | None]:
    """The status, job id and error of a settled submission future.

    A closed batcher or an unknown fate (timeout, no answer) is ``unresolved``:
    the server may still issue it. A refused batch or a failed job is ``failed``.
    """
    if future.cancelled():
        return Status.UNRESOLVED, None, "cancelled"
    exc = future.exception()
    if exc is None:
        outcome = future.result()
        return Status(outcome.status.value), outcome.job_id, outcome.error
    if isinstance(exc, JobFailedError):
        return Status.FAILED, exc.job.id, f"job {exc.job.id} failed"
    if isinstance(exc, BatcherClosedError | JobTimeoutError | TransportError):
        return Status.UNRESOLVED, None, str(exc)
    return Status.FAILED, None, str(exc)
