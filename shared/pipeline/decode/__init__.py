"""Decoding landed files into record chunks, in bounded memory, whatever the bytes say.

Every format becomes the same *parsed* frame (``parsed_schema``): the contract's fields
as the strings they arrived as, ``_rescued_data`` (unknown fields as JSON), ``_raw`` (the
record's text, kept for quarantine), ``_malformed``, and lineage. Chunks hold at most
``chunk_rows`` source records (and, for Avro, ``capture.CHUNK_BYTES``), so memory stays
flat however large the file is.

Formats: Event Hubs Capture Avro (codec null or deflate, either Properties schema;
``avro``), Capture Parquet as the Stream Analytics no-code editor writes it
(``parquet``), CSV with a header and NDJSON (``text``), each optionally gzipped.

No input is trusted. A count, size or length read from a file is checked against what
holds it before it is used; inflating, a line and a block are bounded. A file that cannot
be read, or lies about itself, raises ``QuarantinedFile`` with a reason naming where and
what; a record that cannot be read becomes a ``_malformed`` row; nothing else is dropped.
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal, cast

import polars as pl

from shared.contracts import Contract
from shared.errors import QuarantinedFile
from shared.pipeline.decode import avro, parquet, text
from shared.pipeline.decode.avro import enqueued_at
from shared.pipeline.decode.parquet import structured_chunk
from shared.pipeline.decode.rows import LINEAGE_SCHEMA, RecordColumns, field_text, parse_body, parsed_schema

__all__ = [
    "LINEAGE_SCHEMA",
    "Format",
    "Parser",
    "Probe",
    "RecordColumns",
    "concat",
    "decode",
    "detect",
    "enqueued_at",
    "field_text",
    "parse_body",
    "parsed_schema",
    "partition_of",
    "probe",
    "structured_chunk",
]

Format = Literal["avro", "parquet", "csv", "ndjson"]
#: ``fast`` parses whole chunks with compiled scans and hands only odd bodies to the row
#: builder; ``straightforward`` builds every row in Python. Both yield identical frames.
Parser = Literal["fast", "straightforward"]

AVRO_MAGIC = b"Obj\x01"
PARQUET_MAGIC = b"PAR1"
GZIP_MAGIC = b"\x1f\x8b"
#: How many times its own size a gzipped file may inflate to (past a first
#: ``_GZIP_ALLOWANCE``). Text and Avro compress 5 to 20 times; a file past this bound is a
#: decompression bomb, whose reading would take hours at best.
MAX_GZIP_RATIO = 256
_GZIP_ALLOWANCE = 64 << 20
_HEAD = 64

_PARTITION_PATTERNS = (
    re.compile(r"/(\d+)/\d{4}/\d{2}/\d{2}/\d{2}/\d{2}/\d{2}\.[^/]+$"),
    re.compile(r"(?:^|[/_])p(\d+)--\d{4}-\d{2}-\d{2}--"),
)


@dataclass(frozen=True, slots=True)
class Probe:
    """What a cheap pass over a file found: its format and how many records it holds."""

    format: Format
    compressed: bool
    records: int


def partition_of(name: str) -> str | None:
    """The Event Hubs partition id in a Capture blob name, if the name carries one."""
    for pattern in _PARTITION_PATTERNS:
        match = pattern.search(name)
        if match:
            return match.group(1)
    return None


def detect(head: bytes, name: str) -> tuple[Format, bool]:
    """Identify a file's format from its first bytes and, for text, its name.

    For a gzipped file ``head`` must hold enough of it to inflate a few bytes (a few
    hundred suffice; ``_open_format`` passes up to 64 KiB).

    Raises:
        QuarantinedFile: the bytes match no known format, or are gzip that does not inflate.
    """
    compressed = head.startswith(GZIP_MAGIC)
    if compressed:
        try:  # a stream inflater gives what the bytes at hand hold, with no end-of-stream error
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, _HEAD)
        except zlib.error as exc:
            raise QuarantinedFile(name, f"gzip: does not inflate ({exc})") from exc
        name = name[: -len(".gz")] if name.endswith(".gz") else name
    if head.startswith(AVRO_MAGIC):
        return "avro", compressed
    if head.startswith(PARQUET_MAGIC) and not compressed:
        return "parquet", False
    lower = name.lower()
    if lower.endswith(".csv"):
        return "csv", compressed
    if lower.endswith((".json", ".jsonl", ".ndjson")) or head.lstrip()[:1] in (b"{", b"["):
        return "ndjson", compressed
    raise QuarantinedFile(name, "not a known format")


class _Counted:
    """The compressed side of a gzip stream, counting what gzip reads of it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        return data


class _Gunzipped(io.RawIOBase):
    """A gzipped stream, inflated; it fails with ``QuarantinedFile`` past ``MAX_GZIP_RATIO``."""

    def __init__(self, raw: BinaryIO, name: str) -> None:
        self.source = _Counted(raw)
        self.gzip = gzip.GzipFile(fileobj=cast(Any, self.source))
        self.label = name
        self.given = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.gzip.read(len(buffer))
        self.given += len(data)
        if self.given > _GZIP_ALLOWANCE + MAX_GZIP_RATIO * self.source.count:
            raise QuarantinedFile(self.label, f"gzip: inflates past {MAX_GZIP_RATIO} times its size")
        buffer[: len(data)] = data
        return len(data)


# Errors of a gzip stream that does not inflate; not OSError, which a failing read of the
# stream itself (a transient storage error) would also raise.
_GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)


def _open_format(stream: BinaryIO, name: str) -> tuple[Format, BinaryIO, bool]:
    buffered: Any = (
        stream if isinstance(stream, io.BufferedReader) else io.BufferedReader(cast(Any, stream), 1 << 16)
    )
    head = buffered.peek(_HEAD)
    if not head:
        return "avro", buffered, False  # a zero-byte file: empty whatever it claims to be
    fmt, compressed = detect(head, name)
    if compressed:
        return fmt, cast(BinaryIO, io.BufferedReader(_Gunzipped(buffered, name), 1 << 16)), True
    return fmt, buffered, False


def probe(stream: BinaryIO, name: str) -> Probe:
    """Check a whole file is readable and count its records, without parsing bodies.

    Walking Avro blocks (count, size, sync marker) costs a fraction of decoding them,
    and catches a truncated or lying file before any table is written.

    Raises:
        QuarantinedFile: the file cannot be read; the reason says where and why.
    """
    fmt, fh, compressed = _open_format(stream, name)
    try:
        if fmt == "avro":
            records = avro.probe(fh, name)
        elif fmt == "parquet":
            records = parquet.parquet_file(fh, name).metadata.num_rows
        elif fmt == "csv":
            records = text.count_csv(fh, name)
        else:
            records = text.count_ndjson(fh, name)
    except _GZIP_ERRORS as exc:
        raise QuarantinedFile(name, f"{fmt}: unreadable ({exc})") from exc
    return Probe(fmt, compressed, records)


def decode(
    stream: BinaryIO,
    name: str,
    contract: Contract,
    *,
    chunk_rows: int = 100_000,
    parser: Parser = "fast",
) -> Iterator[pl.DataFrame]:
    """Decode a landed file into parsed chunks (see module docstring).

    Args:
        stream: The file, read forward only.
        name: Its blob path or URL; names the partition and, for text, the format.
        contract: Dataset contract.
        chunk_rows: Source records per chunk, at whole Avro blocks.
        parser: How JSON bodies (Avro, NDJSON) are parsed; both give identical frames.

    Raises:
        QuarantinedFile: the file is unreadable part-way through.
    """
    fmt, fh, _ = _open_format(stream, name)
    try:
        if fmt == "avro":
            partition = partition_of(name)
            if parser == "fast":
                yield from avro.decode_fast(fh, name, contract, chunk_rows, partition)
            else:
                yield from avro.decode_straightforward(fh, name, contract, chunk_rows, partition)
        elif fmt == "parquet":
            yield from parquet.decode_parquet(fh, name, contract, chunk_rows)
        elif fmt == "csv":
            yield from text.decode_csv(fh, name, contract, chunk_rows)
        else:
            yield from text.decode_ndjson(fh, name, contract, chunk_rows, fast=parser == "fast")
    except _GZIP_ERRORS as exc:  # a gzip stream that breaks part-way
        raise QuarantinedFile(name, f"{fmt}: unreadable ({exc})") from exc


def concat(chunks: Iterable[pl.DataFrame]) -> pl.DataFrame:
    """All chunks of a (small) file as one frame; for tests and small inputs."""
    frames = list(chunks)
    return pl.concat(frames) if frames else pl.DataFrame()
