"""Reading identifiers for `thanx-async issue`: format detection, line numbers, errors."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import pytest

from thanx_async._cli._input import BadRow, InputError, Row, parse_row, read_rows
from thanx_async._cli._reader import RowReader
from thanx_async._cli._source import InputSource, ScanResult, scan, text_lines
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


def lines_of(data: bytes) -> list[str]:
    return list(text_lines(io.BytesIO(data)))


def test_text_lines_split_like_universal_newlines() -> None:
    """LF, CRLF and a lone CR all end a line, as in an editor; a BOM is dropped."""
    assert lines_of(b"\xef\xbb\xbfemail\r\na@x.com\rb@x.com\nc@x.com") == [
        "email\r\n",
        "a@x.com\r",
        "b@x.com\n",
        "c@x.com",
    ]


def test_text_lines_name_the_exact_line_of_a_bad_byte() -> None:
    """A Latin-1 byte deep in a file is reported on its own line and column, not a chunk's."""
    data = b"email\n" + b"g@example.com\n" * 20_000 + b"caf\xe9@example.com\n"
    with pytest.raises(InputError, match=r"^line 20002: not UTF-8 text \(byte 0xe9 at column 4\)"):
        lines_of(data)
    with pytest.raises(InputError, match=r"^line 3: .* column 2\)"):
        lines_of(b"a\rb\rx\xffy\n")


def test_scan_counts_rows_and_names_multiline_records(tmp_path: Path) -> None:
    """The first pass counts rows (not lines) and lists records spanning lines."""
    path = tmp_path / "people.csv"
    path.write_text('note,email\n"two\nlines",a@example.com\n\nok,b@example.com\n')
    source = InputSource.open(str(path))
    assert scan(source) == ScanResult(rows=2, spans=((2, 3),))
    empty = tmp_path / "empty.csv"
    empty.write_text("email\n\n")
    assert scan(InputSource.open(str(empty))).rows == 0


def test_a_stray_quote_is_an_error_naming_its_line() -> None:
    """An unclosed quote, text after a closing quote, or a multi-line identifier stop the read."""
    body = "".join(f"g{i}@example.com\n" for i in range(5))
    with pytest.raises(InputError, match=r"^line 4: a quoted field is never closed.*line 9\)"):
        rows('email\na@example.com\nb@example.com\n"stray@example.com\n' + body)
    with pytest.raises(InputError, match=r"^line 2: not valid CSV"):
        rows('name,email\n"Jane" Doe,jane@example.com\n')
    with pytest.raises(InputError, match=r"^line 3: the email field runs over lines 3-5"):
        rows('name,email\nA,a@example.com\nB,"b@example.com\nC,c@example.com\nD,d@example.com"\n')


def test_open_refuses_missing_files_and_directories(tmp_path: Path) -> None:
    """A missing path or a directory is an InputError saying which."""
    with pytest.raises(InputError, match="no such file"):
        InputSource.open(str(tmp_path / "nope.csv"))
    with pytest.raises(InputError, match="is a directory"):
        InputSource.open(str(tmp_path))


def test_a_pipe_is_spooled_and_read_twice(tmp_path: Path) -> None:
    """Stdin (or a named pipe) is copied once, then read from the start as often as needed."""
    stdin = io.BytesIO(b"a@example.com\nb@example.com\n")
    source = InputSource.open("-", stdin)
    for _ in range(2):
        with source.lines() as lines:
            assert [row.line for row in read_rows(lines)] == [1, 2]
    source.close()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(b"c@example.com\n",), daemon=True)
    writer.start()  # blocks in open() until the reader opens the other end
    source = InputSource.open(str(fifo))
    writer.join(5)
    assert source.label == str(fifo)
    assert scan(source).rows == 1
    source.close()


def reader_for(path: Path, *, chunk: int = 1000, depth: int = 4) -> RowReader:
    return RowReader(InputSource.open(str(path)).lines, chunk=chunk, depth=depth)


async def test_reader_hands_over_chunks(tmp_path: Path) -> None:
    """RowReader delivers every row in chunks and remembers the last line."""
    source = tmp_path / "many.txt"
    source.write_text("".join(f"g{i}@example.com\n" for i in range(2500)))
    reader = reader_for(source, chunk=1000, depth=1)
    sizes = [len(chunk) async for chunk in reader]
    assert sizes == [1000, 1000, 500]
    assert reader.last_line == 2500


async def test_reader_reports_undecodable_input(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 end the reading with an InputError."""
    source = tmp_path / "latin1.txt"
    source.write_bytes(b"a@example.com\n\xe9t\xe9@example.com\n")
    reader = reader_for(source)
    with pytest.raises(InputError, match="line 2: not UTF-8"):
        async for _ in reader:
            pass


async def test_reader_stops_when_asked(tmp_path: Path) -> None:
    """After stop() the thread hands over nothing more and ends."""
    source = tmp_path / "many.txt"
    source.write_text("".join(f"g{i}@example.com\n" for i in range(50_000)))
    reader = reader_for(source, chunk=100, depth=1)
    chunks = aiter(reader)
    assert len(await anext(chunks)) == 100
    reader.close()
    assert reader._thread is not None
    assert not reader._thread.is_alive()
