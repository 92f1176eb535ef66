r"""The input of ``thanx-async issue``, read in full and checked before anything is sent.

The command never issues half a file. Before the first request it reads the
whole input once (:func:`scan`): every line must be UTF-8, the CSV must be
well formed (no quote left open, no identifier running over several lines),
and its rows are counted (the progress bar's total). Only then does the real
read start, from the beginning.

A regular file is simply read twice. A pipe (``-``, or a named pipe such as
``<(cut ...)``) cannot be, so it is first copied into an anonymous temporary
file (unlinked at once on POSIX: nothing is left behind, even after
``kill -9``) and every pass reads that copy. ``issue`` is therefore for
finite lists: it sends nothing before its input has ended.

Both passes split lines the same way (``\n``, ``\r\n`` or a lone ``\r``,
as Python's universal newlines do), so a line number in an error, a warning
or the report is the line an editor shows.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO

import attrs

from thanx_async._cli._input import InputError, read_rows

__all__ = ["InputSource", "ScanResult", "scan", "text_lines"]

#: Splits after a carriage return that is not part of ``\r\n`` (old Mac line ends).
_LONE_CR = re.compile(r"(?<=\r)(?!\n)(?=.)", re.DOTALL)


def text_lines(binary: IO[bytes]) -> Iterator[str]:
    """The lines of ``binary`` as text, each with its line ending; a UTF-8 BOM is dropped.

    Raises:
        InputError: a line is not UTF-8; the message names its line and column.
    """
    number = 0
    for raw in binary:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            prefix = raw[: exc.start].decode("utf-8")
            line = number + 1 + prefix.count("\r")  # the line's own ending is not in prefix
            column = len(prefix.rpartition("\r")[2]) + 1
            raise InputError(
                f"line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {column}); "
                "save the file as UTF-8 and run the command again"
            ) from None
        if number == 0 and text.startswith("\ufeff"):
            text = text[1:]
        # Cheap test first: only a \r before the line's own ending needs the split.
        if text.find("\r", 0, len(text) - 2) >= 0:
            for piece in _LONE_CR.split(text):
                number += 1
                yield piece
        else:
            number += 1
            yield text


@attrs.define
class InputSource:
    """The command's input, which can be read from the start as often as needed.

    Use :meth:`open` to build one, :meth:`lines` to read it, :meth:`close` at the end.

    Attributes:
        label: what to call it in messages (the path, or ``stdin``).
    """

    label: str
    _path: Path | None = None
    _spool: IO[bytes] | None = None

    @classmethod
    def open(cls, name: str, stdin: BinaryIO | None = None) -> InputSource:
        """The input named ``name`` on the command line (``-`` is stdin).

        Stdin and other pipes are copied to an anonymous temporary file first
        (this blocks until the writer closes the pipe).

        Raises:
            InputError: no such file, a directory, or an unreadable file.
        """
        if name == "-":
            return cls._spooled("stdin", stdin if stdin is not None else sys.stdin.buffer)
        path = Path(name)
        if path.is_dir():
            raise InputError(f"{name} is a directory, not a file of identifiers")
        if not path.exists():
            raise InputError(f"{name}: no such file")
        if not path.is_file():  # a named pipe, /dev/stdin, process substitution
            try:
                with path.open("rb") as pipe:
                    return cls._spooled(name, pipe)
            except OSError as exc:
                raise InputError(f"cannot read {name}: {exc.strerror}") from None
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise InputError(f"cannot read {name}: {exc.strerror}") from None
        return cls(name, path=path)

    @classmethod
    def _spooled(cls, label: str, stream: IO[bytes]) -> InputSource:
        spool = tempfile.TemporaryFile()  # noqa: SIM115 - kept open until close()
        try:
            shutil.copyfileobj(stream, spool, 1 << 20)
            spool.flush()  # lines() reads the file descriptor, not this buffer
        except BaseException:
            spool.close()
            raise
        return cls(label, spool=spool)

    @contextlib.contextmanager
    def lines(self) -> Iterator[Iterator[str]]:
        """The input's lines from the start (see :func:`text_lines`).

        One reader at a time: a spooled pipe is one file with one position.
        """
        if self._spool is not None:
            fd = self._spool.fileno()
            os.lseek(fd, 0, os.SEEK_SET)
            binary: IO[bytes] = open(fd, "rb", closefd=False)  # noqa: SIM115 - closed below
        else:
            assert self._path is not None  # one of the two is always set
            binary = self._path.open("rb")
        with binary:
            yield text_lines(binary)

    def close(self) -> None:
        """Drop the spooled copy, if any (idempotent)."""
        if self._spool is not None:
            self._spool.close()


@attrs.frozen
class ScanResult:
    """What the first pass found.

    Attributes:
        rows: rows holding something (the header, blank lines and comments excluded).
        spans: ``(first, last)`` lines of records whose quoted fields run over
            several lines (legal CSV, but worth a look: a stray quote does it).
    """

    rows: int
    spans: tuple[tuple[int, int], ...] = ()


def scan(source: InputSource, column: str | None = None) -> ScanResult:
    """Read the whole input once, checking that it can be read to the end.

    Raises:
        InputError: undecodable bytes, broken CSV (an unclosed quote), a header
            without an identifier column; the message names the line.
    """
    spans: list[tuple[int, int]] = []
    rows = 0
    with source.lines() as lines:
        for _ in read_rows(lines, column=column, spans=spans):
            rows += 1
    return ScanResult(rows, tuple(spans))
