"""Landing text files - CSV with a header, NDJSON - into parsed chunks, in bounded memory.

A text file is read a line at a time, each line at most ``MAX_LINE_BYTES``. Its first
line must be UTF-8 text (no control characters but TAB and CR), else the file is not
text at all and is quarantined whole. After that a line is judged alone: a CSV record
that is not UTF-8 or has the wrong number of fields, or an NDJSON line that is not a
JSON object, becomes a malformed row carrying its raw text (and, for CSV, why), and the
rest of the file lands.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from typing import Any, BinaryIO, Literal

import polars as pl

from shared.contracts import Contract
from shared.errors import QuarantinedFile
from shared.pipeline.decode.rows import ChunkBuilder, RecordColumns, json_text

#: The longest line a text file may hold. A line is held whole (an NDJSON event, a CSV
#: row), and a landing file's events are small: a longer line is a file that is not
#: line-oriented text, so it is quarantined rather than read into memory.
MAX_LINE_BYTES = 16 << 20

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def lines(fh: BinaryIO, name: str, fmt: Literal["csv", "ndjson"]) -> Iterator[tuple[int, bytes]]:
    """(line number from 1, line with its terminator) of every line, the first checked as text.

    Raises:
        QuarantinedFile: a line is longer than ``MAX_LINE_BYTES``, or the first non-blank
            line is not UTF-8 text.
    """
    number = 0
    first = True
    while line := fh.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(line) > MAX_LINE_BYTES:
            raise QuarantinedFile(name, f"{fmt}: line {number} is longer than {MAX_LINE_BYTES >> 20} MiB")
        if first and line.strip():
            _check_text(line, name, fmt)
            first = False
        yield number, line


def _check_text(line: bytes, name: str, fmt: str) -> None:
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise QuarantinedFile(name, f"{fmt}: not text (its first line is not UTF-8)") from None
    if _CONTROL.search(text):
        raise QuarantinedFile(name, f"{fmt}: not text (its first line holds control characters)")


# -- NDJSON ----------------------------------------------------------------------------------
def count_ndjson(fh: BinaryIO, name: str) -> int:
    """The records of an NDJSON file: its non-blank lines."""
    return sum(1 for _, line in lines(fh, name, "ndjson") if line.strip())


def decode_ndjson(
    fh: BinaryIO, name: str, contract: Contract, chunk_rows: int, *, fast: bool
) -> Iterator[pl.DataFrame]:
    """Each non-blank line is one body (a single JSON object), numbered by its line."""
    if fast:
        chunk = RecordColumns(None, strict_single=True)
        for number, line in lines(fh, name, "ndjson"):
            if line.strip():
                chunk.add(line.rstrip(b"\r\n"), number, None, None)
                if len(chunk) >= chunk_rows:
                    yield chunk.parse(contract)
        if len(chunk):
            yield chunk.parse(contract)
        return
    builder = ChunkBuilder(contract)
    for number, line in lines(fh, name, "ndjson"):
        if line.strip():
            builder.add_body(line.rstrip(b"\r\n"), number, None, None, None, strict_single=True)
            if builder.pending >= chunk_rows:
                yield builder.take()
    if builder.pending:
        yield builder.take()


# -- CSV -------------------------------------------------------------------------------------
class _Held:
    """The file's lines as ``csv.reader`` reads them, each held until its record is taken,
    so a record's raw bytes (however many lines it spans) are known.

    A bare CR ends a line too, as in a file opened with ``newline=""``: outside quotes it
    is a line break, inside them part of the value.
    """

    def __init__(self, numbered: Iterator[tuple[int, bytes]]) -> None:
        self.numbered = numbered
        self.pieces: list[bytes] = []
        self.number = 0
        self.held: list[bytes] = []
        self.first = 0

    def __iter__(self) -> _Held:
        return self

    def __next__(self) -> str:
        if not self.pieces:
            self.number, line = next(self.numbered)
            self.pieces = line.splitlines(keepends=True)[::-1]
        piece = self.pieces.pop()
        if not self.held:
            self.first = self.number
        self.held.append(piece)
        # Undecodable bytes pass through as lone surrogates; the record is judged on its raw bytes.
        return piece.decode("utf-8", "surrogateescape")

    def take(self) -> tuple[int, bytes]:
        raw, self.held = b"".join(self.held), []
        return self.first, raw


Record = tuple[int, bytes, list[str] | str]


def _records(fh: BinaryIO, name: str) -> Iterator[Record]:
    """(first line number, raw bytes, cells or why ``csv`` cannot read them) of each
    record that is not blank; the header first."""
    held = _Held(lines(fh, name, "csv"))
    reader = csv.reader(held)
    while True:
        try:
            cells: list[str] | str = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # a field past csv's size limit
            cells = str(exc)
        number, raw = held.take()
        if isinstance(cells, str) or len(cells) > 1 or (cells and cells[0].strip()):  # else a blank line
            yield number, raw, cells


def _header(records: Iterator[Record], name: str) -> list[str] | None:
    first = next(records, None)
    if first is None:
        return None
    _, raw, cells = first
    if isinstance(cells, str) or _problem(raw, cells, len(cells)) is not None:
        raise QuarantinedFile(name, "csv: the header is not a CSV line of UTF-8 text")
    header = [cells[0].removeprefix("\ufeff"), *cells[1:]]
    seen: set[str] = set()
    for column in header:
        if column in seen:
            raise QuarantinedFile(name, f"csv: the header names {column!r} twice")
        seen.add(column)
    return header


def _problem(raw: bytes, cells: list[str] | str, width: int) -> str | None:
    """Why a record is malformed, or None."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 (byte {exc.start})"
    if isinstance(cells, str):
        return f"not a CSV record ({cells})"
    if len(cells) != width:
        return f"{len(cells)} fields where the header has {width}"
    return None


def count_csv(fh: BinaryIO, name: str) -> int:
    """The records of a CSV file after its header, malformed ones included."""
    records = _records(fh, name)
    if _header(records, name) is None:
        return 0
    return sum(1 for _ in records)


def decode_csv(fh: BinaryIO, name: str, contract: Contract, chunk_rows: int) -> Iterator[pl.DataFrame]:
    """Each record after the header is one row, numbered from 1; an empty cell is null.

    Raises:
        QuarantinedFile: the file is not text, a line is too long, or the header does
            not read or names a column twice.
    """
    records = _records(fh, name)
    header = _header(records, name)
    if header is None:
        return
    fields = set(contract.field_names)
    builder = ChunkBuilder(contract)
    for row, (number, raw, cells) in enumerate(records, start=1):
        problem = _problem(raw, cells, len(header))
        if problem is not None or isinstance(cells, str):
            text = raw.rstrip(b"\r\n").decode("utf-8", "backslashreplace")
            builder.add_malformed(text, f"csv line {number}: {problem}", row, row)
        else:
            payload: dict[str, Any] = {
                column: cell or None
                for column, cell in zip(header, cells, strict=True)
                if cell or column in fields
            }
            builder.add_record(payload, json_text(payload), row, None, None, row)
        if builder.pending >= chunk_rows:
            yield builder.take()
    if builder.pending:
        yield builder.take()
