"""The per-identifier report of ``thanx-async issue --report``: CSV or JSON Lines.

One row per input row that held something, in the order outcomes arrive:

=========== ===============================================================
line        the input line the identifier starts on
identifier  the normalised identifier (or the raw text of an invalid line)
type        ``email`` / ``phone`` (empty for invalid lines)
status      ``issued``, ``failed``, ``unknown``, ``invalid``, ``duplicate``
            or ``unresolved``
job_id      the issuance job that carried it, if any
error       why it is not ``issued``, if it is not
=========== ===============================================================
"""

from __future__ import annotations

import asyncio
import csv
import enum
from pathlib import Path
from typing import IO

import orjson

from thanx_async._errors import BatcherClosedError, JobFailedError, JobTimeoutError, TransportError
from thanx_async._outcomes import IssuanceOutcome

__all__ = ["FIELDS", "Report", "ReportFormat", "Status", "classify"]

FIELDS = ("line", "identifier", "type", "status", "job_id", "error")


class Status(enum.StrEnum):
    """What happened to one input row."""

    ISSUED = "issued"
    FAILED = "failed"
    UNKNOWN = "unknown"
    INVALID = "invalid"
    DUPLICATE = "duplicate"
    UNRESOLVED = "unresolved"


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


class Report:
    """Writes report rows as outcomes arrive; the file is replaced, not appended to.

    Args:
        path: where to write.
        fmt: the format.

    Raises:
        OSError: the file cannot be created.
    """

    def __init__(self, path: Path, fmt: ReportFormat) -> None:
        self.path = path
        self.format = fmt
        self.rows = 0
        self._file: IO[str] = path.open("w", encoding="utf-8", newline="")
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

    def close(self) -> None:
        """Flush and close the file (idempotent)."""
        if not self._file.closed:
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
