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

The CSV is read strictly: a quote left open, a quoted field followed by more
text, or an identifier running over several lines is an :class:`InputError`
naming the line, never a row that silently swallows the rest of the file.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterable, Iterator
from typing import Literal

import attrs

from thanx_async._errors import InvalidIdentifierError
from thanx_async._identifiers import Identifier

__all__ = ["BadRow", "InputError", "Row", "parse_row", "read_rows"]

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


def read_rows(
    lines: Iterable[str],
    *,
    column: str | None = None,
    spans: list[tuple[int, int]] | None = None,
) -> Iterator[Row | BadRow]:
    """Every identifier of ``lines`` as :class:`Row` (or :class:`BadRow`), in order.

    Args:
        lines: text lines with their endings (a file opened with ``newline=""``,
            or :func:`thanx_async._cli._source.text_lines`).
        column: the header name to read, instead of detecting one.
        spans: if given, ``(first, last)`` lines of every CSV record running
            over several lines are appended to it.

    Raises:
        InputError: a header without an identifier column, an unknown
            ``--column``, or CSV that cannot be read to the end.
    """
    stream = iter(lines)
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
        yield from _csv(stream, line_no, delimiter, columns, spans)


def _plain(lines: Iterator[str], first_line: int) -> Iterator[Row | BadRow]:
    for line_no, raw in enumerate(lines, start=first_line):
        text = raw.strip()
        if text and not text.startswith("#"):
            yield Row(line_no, text)


def _csv_error(exc: csv.Error, start: int, end: int) -> InputError:
    """What a CSV error means for the user, naming the line of the record."""
    text = str(exc)
    if "unexpected end of data" in text:
        return InputError(
            f"line {start}: a quoted field is never closed: from its opening quote to the "
            f"end of the input (line {end}) everything would be one field. Remove or close "
            'the stray quote (a quote inside a field is written twice, "")'
        )
    if "field larger than field limit" in text:
        return InputError(
            f"line {start}: a field runs on for over {csv.field_size_limit():,} characters: "
            "is a quote left open?"
        )
    return InputError(
        f'line {end}: not valid CSV ({text}); a quote inside a field is written twice, ""'
    )


def _csv(
    stream: Iterator[str],
    header_line: int,
    delimiter: str,
    columns: list[tuple[int, Kind]],
    spans: list[tuple[int, int]] | None,
) -> Iterator[Row | BadRow]:
    reader = csv.reader(stream, delimiter=delimiter, strict=True)
    last = header_line
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise _csv_error(exc, last + 1, header_line + reader.line_num) from None
        line_no, last = last + 1, header_line + reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        if last > line_no and spans is not None:
            spans.append((line_no, last))
        values = [(record[i].strip() if i < len(record) else "", kind) for i, kind in columns]
        for value, kind in values:
            if "\n" in value or "\r" in value:
                # No identifier holds a line break: an unmatched quote opened this field.
                raise InputError(
                    f"line {line_no}: the {_kind_name(kind)} field runs over lines "
                    f"{line_no}-{last}: is a quote left open on line {line_no}?"
                )
        chosen = next(((value, kind) for value, kind in values if value), None)
        if chosen is None:
            yield BadRow(line_no, delimiter.join(record), "no identifier in this row")
        else:
            yield Row(line_no, *chosen)


def parse_row(row: Row) -> Identifier | InvalidIdentifierError:
    """The row's identifier, or the error saying why it is invalid."""
    try:
        return row.parse()
    except InvalidIdentifierError as exc:
        return exc
