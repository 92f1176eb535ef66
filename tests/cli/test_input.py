"""Reading identifiers for `thanx-async issue`: format detection, line numbers, errors."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from thanx_async._cli._input import (
    BadRow,
    InputError,
    Row,
    count_data_lines,
    open_input,
    parse_row,
    read_rows,
)
from thanx_async._cli._reader import RowReader
from thanx_async._errors import InvalidIdentifierError
from thanx_async._identifiers import Identifier


def rows(text: str, column: str | None = None) -> list[Row | BadRow]:
    return list(read_rows(io.StringIO(text, newline=""), column=column))


def test_plain_list_skips_blanks_and_comments() -> None:
    """One identifier per line: blank lines and # comments are skipped, line numbers kept."""
    assert rows("\n a@example.com \n# note\n\n+14155551234\n") == [
        Row(2, "a@example.com"),
        Row(5, "+14155551234"),
    ]


def test_csv_header_is_detected_and_columns_prioritised() -> None:
    """A header naming email and phone: each row takes its email, else its phone."""
    text = "Name,Phone Number,E-mail\nJane,+14155551234,jane@example.com\nBob,+14155550000,\n"
    assert rows(text) == [
        Row(2, "jane@example.com", "email"),
        Row(3, "+14155550000", "phone"),
    ]


def test_identifier_column_beats_email_and_semicolons_work() -> None:
    """'identifier' comes first; ';' is a delimiter too."""
    text = "email;identifier\nx@example.com;+14155551234\n"
    assert rows(text) == [Row(2, "+14155551234", None)]


def test_single_column_header() -> None:
    """A lone 'email' line is a header, not an identifier."""
    assert rows("email\r\na@example.com\r\n") == [Row(2, "a@example.com", "email")]


def test_multiline_fields_keep_the_starting_line() -> None:
    """A quoted field spanning lines: the next row's number still matches the file."""
    text = 'note,email\n"two\nlines",a@example.com\nok,b@example.com\n'
    assert rows(text) == [Row(2, "a@example.com", "email"), Row(4, "b@example.com", "email")]


def test_rows_without_an_identifier_are_bad_rows() -> None:
    """A row whose identifier columns are empty is a BadRow; an all-empty row is skipped."""
    assert rows("name,email\nJane,\n,\n") == [BadRow(2, "Jane,", "no identifier in this row")]


def test_header_without_identifier_column_needs_column() -> None:
    """A CSV header with no known column is an error that mentions --column."""
    with pytest.raises(InputError, match="--column"):
        rows("name,contact\nJane,jane@example.com\n")
    assert rows("name,contact\nJane,jane@example.com\n", column="Contact") == [
        Row(2, "jane@example.com", None)
    ]
    with pytest.raises(InputError, match="no column named 'mail'"):
        rows("name,contact\n", column="mail")


def test_empty_input_has_no_rows() -> None:
    """Empty or blank input yields nothing."""
    assert rows("") == []
    assert rows("\n\n") == []


def test_parse_row_respects_the_column_type() -> None:
    """An email column refuses a phone; an identifier column infers the type."""
    assert isinstance(parse_row(Row(1, "+14155551234", "email")), InvalidIdentifierError)
    assert parse_row(Row(1, "+14155551234", "phone")) == Identifier("phone", "+14155551234")
    assert parse_row(Row(1, "A@Example.com")) == Identifier("email", "a@example.com")


def test_count_data_lines(tmp_path: Path) -> None:
    """The row estimate counts non-blank lines, less a header; stdin has none."""
    plain = tmp_path / "plain.txt"
    plain.write_text("a@example.com\n\nb@example.com\n")
    assert count_data_lines(str(plain)) == 2
    csv_file = tmp_path / "people.csv"
    csv_file.write_text("\ufeffemail\na@example.com\n")
    assert count_data_lines(str(csv_file)) == 1
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert count_data_lines(str(empty)) == 0
    assert count_data_lines("-") is None


def test_open_input_refuses_a_missing_file(tmp_path: Path) -> None:
    """A path that is not a file is an InputError naming it."""
    with pytest.raises(InputError, match="no such file"):
        open_input(str(tmp_path / "nope.csv"))


async def test_reader_hands_over_chunks(tmp_path: Path) -> None:
    """RowReader delivers every row in chunks and remembers the last line."""
    source = tmp_path / "many.txt"
    source.write_text("".join(f"g{i}@example.com\n" for i in range(2500)))
    reader = RowReader(open_input(str(source)), chunk=1000, depth=1)
    sizes = [len(chunk) async for chunk in reader]
    assert sizes == [1000, 1000, 500]
    assert reader.last_line == 2500


async def test_reader_reports_undecodable_input(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 end the reading with an InputError."""
    source = tmp_path / "latin1.txt"
    source.write_bytes(b"a@example.com\n\xe9t\xe9@example.com\n")
    reader = RowReader(open_input(str(source)))
    with pytest.raises(InputError, match="not UTF-8"):
        async for _ in reader:
            pass


async def test_reader_stops_when_asked(tmp_path: Path) -> None:
    """After stop() the thread hands over nothing more and ends."""
    source = tmp_path / "many.txt"
    source.write_text("".join(f"g{i}@example.com\n" for i in range(50_000)))
    reader = RowReader(open_input(str(source)), chunk=100, depth=1)
    chunks = aiter(reader)
    assert len(await anext(chunks)) == 100
    reader.stop()
    await asyncio.sleep(0.3)
    assert reader._thread is not None
    reader._thread.join(2)
    assert not reader._thread.is_alive()
