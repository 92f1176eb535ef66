"""Reading identifiers for ``thanx-async issue``: a CSV with a detected column, or one per line.

Detection looks at the first non-blank line:

* it names a column ``identifier``, ``email`` or ``phone`` (also ``email_address``,
  ``phone_number``; any case), split on ``,``, ``;`` or tab: a CSV with a header;
  each row takes the first non-empty of those columns, in that order;
* it has a delimiter but no such column: an error asking for ``--column``;
* otherwise: one identifier per line (blank lines and ``#`` comments skipped).

Rows carry the line number they start on (the header is line 1), so invalid
ones can be reported where the user will look for them. ``_reader.RowReader``
runs this on a thread.
"""

from __future__ import annotations

import csv
import io
import itertools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal, TextIO

import attrs

from thanx_async._errors import InvalidIdentifierError
from thanx_async._identifiers import Identifier

__all__ = [
    "BadRow",
    "InputError",
    "Row",
    "count_data_lines",
    "open_input",
    "parse_row",
    "read_rows",
]

Kind = Literal["email", "phone"] | None

#: Header names (lower-cased, spaces/dashes as underscores) → the type their values must have.
_COLUMNS: dict[str, Kind] = {
    "identifier": None,
    "email": "email",
    "e_mail": "email",
    "email_address": "email",
    "phone": "phone",
    "phone_number": "phone",
}
_PRIORITY = ("identifier", "email", "phone")
_DELIMITERS = (",", ";", "\t")


class InputError(Exception):
    """The input cannot be read as identifiers at all (not one bad line: the whole file)."""


@attrs.frozen(slots=True)
class Row:
    """One identifier as read, with the line it starts on and the type its column demands."""

    line: int
    value: str
    kind: Kind = None

    def parse(self) -> Identifier:
        """Validate and normalise the value.

        Raises:
            InvalidIdentifierError: the value is not a valid email / E.164 phone.
        """
        if self.kind == "email":
            return Identifier.email(self.value)
        if self.kind == "phone":
            return Identifier.phone(self.value)
        return Identifier.parse(self.value)


@attrs.frozen(slots=True)
class BadRow:
    """A line that holds no usable identifier."""

    line: int
    value: str
    reason: str


def _column_key(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _split(line: str) -> tuple[str | None, list[str]]:
    for delimiter in _DELIMITERS:
        if delimiter in line:
            return delimiter, next(csv.reader([line], delimiter=delimiter))
    return None, [line]


def _header(line: str, column: str | None) -> tuple[str, list[tuple[int, Kind]]] | None:
    """The delimiter and identifier columns if ``line`` is a CSV header, None for a plain list."""
    delimiter, cells = _split(line)
    names = [_column_key(cell) for cell in cells]
    if column is not None:
        wanted = _column_key(column)
        if wanted not in names:
            raise InputError(
                f"no column named {column!r} in the header (columns: {', '.join(cells)})"
            )
        return delimiter or ",", [(names.index(wanted), _COLUMNS.get(wanted))]
    found = [(names.index(name), kind) for name, kind in _COLUMNS.items() if name in names]
    found.sort(key=lambda item: _PRIORITY.index(_kind_name(item[1])))
    if found:
        return delimiter or ",", found
    if delimiter is not None:
        raise InputError(
            "the first line looks like a CSV header but has no column named email, phone "
            f"or identifier (columns: {', '.join(cells)}); choose one with --column"
        )
    return None


def _kind_name(kind: Kind) -> str:
    return "identifier" if kind is None else kind


def read_rows(stream: TextIO, *, column: str | None = None) -> Iterator[Row | BadRow]:
    """Every identifier of ``stream`` as :class:`Row` (or :class:`BadRow`), in order.

    Args:
        stream: text opened with ``newline=""`` (CSV fields may hold newlines).
        column: the header name to read, instead of detecting one.

    Raises:
        InputError: a header without an identifier column, or an unknown ``--column``.
    """
    line_no = 0
    first = ""
    for first in stream:
        line_no += 1
        if first.strip():
            break
    else:
        return
    header = _header(first.rstrip("\r\n"), column)
    if header is None:
        yield from _plain(itertools.chain([first], stream), line_no)
    else:
        delimiter, columns = header
        yield from _csv(stream, line_no, delimiter, columns)


def _plain(lines: Iterator[str], first_line: int) -> Iterator[Row | BadRow]:
    for line_no, raw in enumerate(lines, start=first_line):
        text = raw.strip()
        if text and not text.startswith("#"):
            yield Row(line_no, text)


def _csv(
    stream: TextIO, header_line: int, delimiter: str, columns: list[tuple[int, Kind]]
) -> Iterator[Row | BadRow]:
    reader = csv.reader(stream, delimiter=delimiter)
    last = header_line
    for record in reader:
        line_no, last = last + 1, header_line + reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        for index, kind in columns:
            value = record[index].strip() if index < len(record) else ""
            if value:
                yield Row(line_no, value, kind)
                break
        else:
            yield BadRow(line_no, delimiter.join(record), "no identifier in this row")


def open_input(path: str) -> Callable[[], TextIO]:
    """A function opening ``path`` (``-`` for stdin) as UTF-8 text (a BOM is dropped).

    Raises:
        InputError: the file does not exist or is a directory.
    """
    if path == "-":
        return lambda: io.TextIOWrapper(
            sys.stdin.buffer, encoding="utf-8-sig", newline="", errors="strict"
        )
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{path}: no such file")
    return lambda: file.open(encoding="utf-8-sig", newline="")


def count_data_lines(path: str, column: str | None = None) -> int | None:
    """An estimate of a regular file's rows (non-blank lines, less a header); None for stdin.

    Raises:
        InputError: the header names no identifier column (or not ``column``).
    """
    if path == "-":
        return None
    count = 0
    first: bytes | None = None
    with Path(path).open("rb") as file:
        for line in file:
            if line.strip():
                count += 1
                if first is None:
                    first = line
    if first is None:
        return 0
    text = first.decode("utf-8-sig", errors="replace").rstrip("\r\n")
    return count - 1 if _header(text, column) is not None else count


def parse_row(row: Row) -> Identifier | InvalidIdentifierError:
    """The row's identifier, or the error saying why it is invalid."""
    try:
        return row.parse()
    except InvalidIdentifierError as exc:
        return exc
