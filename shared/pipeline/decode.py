"""Decoding landed files into record chunks, in bounded memory.

Every format becomes the same *parsed* frame: the contract's fields as the strings they
arrived as, ``_rescued_data`` (unknown fields as JSON), ``_raw`` (the record's text, kept
for quarantine), ``_malformed``, and lineage. Chunks hold at most ``chunk_rows`` source
records, so memory stays flat however large the file is.

Formats: Event Hubs Capture Avro (codec null or deflate, either Properties schema),
Capture Parquet as the Stream Analytics no-code editor writes it, CSV with a header and
NDJSON, each optionally gzipped.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO, Literal, cast

import cavro
import fastavro
import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from shared.contracts import Contract
from shared.errors import CorruptBlock, QuarantinedFile
from shared.pipeline import capture, fastparse, kernels

Format = Literal["avro", "parquet", "csv", "ndjson"]
#: ``fast`` parses whole chunks with polars and hands only odd bodies to the row builder;
#: ``straightforward`` builds every row in Python. Both yield identical frames.
Parser = Literal["fast", "straightforward"]

AVRO_MAGIC = b"Obj\x01"
PARQUET_MAGIC = b"PAR1"
GZIP_MAGIC = b"\x1f\x8b"

# Capture's record, minus Properties: schema resolution skips the field we never read,
# which also makes both writer variants (map values with and without null) acceptable.
CAPTURE_READER_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "EventData",
    "namespace": "Microsoft.ServiceBus.Messaging",
    "fields": [
        {"name": "SequenceNumber", "type": "long"},
        {"name": "Offset", "type": "string"},
        {"name": "EnqueuedTimeUtc", "type": "string"},
        {
            "name": "SystemProperties",
            "type": {"type": "map", "values": ["long", "double", "string", "bytes"]},
        },
        {"name": "Body", "type": ["null", "bytes"]},
    ],
}
_PARSED_CAPTURE = fastavro.parse_schema(CAPTURE_READER_SCHEMA)

LINEAGE_SCHEMA: dict[str, pl.DataType] = {
    "_sequence_number": pl.Int64(),
    "_offset": pl.String(),
    "_enqueued_time": pl.Datetime("us"),
    "_partition": pl.String(),
    "_row": pl.Int64(),
}

_PARTITION_PATTERNS = (
    re.compile(r"/(\d+)/\d{4}/\d{2}/\d{2}/\d{2}/\d{2}/\d{2}\.[^/]+$"),
    re.compile(r"(?:^|[/_])p(\d+)--\d{4}-\d{2}-\d{2}--"),
)


def parsed_schema(contract: Contract) -> dict[str, pl.DataType]:
    """Column types of a parsed chunk for ``contract``."""
    schema: dict[str, pl.DataType] = {name: pl.String() for name in contract.field_names}
    schema["_rescued_data"] = pl.String()
    schema["_raw"] = pl.String()
    schema["_malformed"] = pl.Boolean()
    schema.update(LINEAGE_SCHEMA)
    return schema


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

    Raises:
        QuarantinedFile: the bytes match no known format.
    """
    compressed = head.startswith(GZIP_MAGIC)
    if compressed:
        head = gzip.GzipFile(fileobj=io.BytesIO(head)).read1(64) if len(head) > 18 else b""
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


def _open_format(stream: BinaryIO, name: str) -> tuple[Format, BinaryIO, bool]:
    buffered: Any = stream if isinstance(stream, io.BufferedReader) else io.BufferedReader(cast(Any, stream))
    head = buffered.peek(64)[:64]
    if not head:
        return "avro", buffered, False  # a zero-byte file: empty whatever it claims to be
    fmt, compressed = detect(head, name)
    if compressed:
        return fmt, gzip.GzipFile(fileobj=buffered), True  # type: ignore[return-value]
    return fmt, buffered, False


def probe(stream: BinaryIO, name: str) -> Probe:
    """Check a whole file is readable and count its records, without parsing bodies.

    Reading and inflating Avro blocks costs a fraction of decoding them, and catches a
    truncated or corrupt file before any table is written.

    Raises:
        QuarantinedFile: the file cannot be read; the reason says where and why.
    """
    fmt, fh, compressed = _open_format(stream, name)
    try:
        if fmt == "avro":
            records = _probe_avro(fh, name)
        elif fmt == "parquet":
            records = _parquet_file(fh, name).metadata.num_rows
        else:
            records = _count_text_records(fh, fmt)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise QuarantinedFile(name, f"{fmt}: unreadable ({exc})") from exc
    return Probe(fmt, compressed, records)


def _probe_avro(fh: BinaryIO, name: str) -> int:
    """Walk the blocks (count, size, sync marker) without inflating them."""
    if not fh.peek(1):  # type: ignore[attr-defined]
        return 0
    header = _capture_header(fh, name)
    records = 0
    try:
        for count, _ in capture.blocks(fh, header, inflate=False):
            records += count
    except CorruptBlock as exc:
        raise _avro_failure(name, exc.cause, exc.block - 1) from exc
    return records


def _capture_header(fh: BinaryIO, name: str) -> capture.Header:
    try:
        header = capture.read_header(fh)
    except Exception as exc:  # fastavro raises bare ValueError/EOFError on a bad header
        raise QuarantinedFile(name, f"avro: bad header ({exc})") from exc
    _check_capture_schema(header.schema, name)
    return header


def _avro_blocks(fh: BinaryIO, name: str, reader_schema: Any = None) -> fastavro.block_reader:
    """A block reader over a Capture file, failing with a reason if the header is bad."""
    try:
        reader = fastavro.block_reader(fh, reader_schema=reader_schema)
    except Exception as exc:
        schema_error = "schema" in str(exc).lower() or "resolv" in str(exc).lower()
        reason = (
            f"avro: not an Event Hubs Capture schema ({exc})" if schema_error else f"avro: bad header ({exc})"
        )
        raise QuarantinedFile(name, reason) from exc
    _check_capture_schema(reader.writer_schema, name)
    return reader


def _avro_failure(name: str, exc: Exception, good_blocks: int) -> QuarantinedFile:
    """Name what broke, counting blocks from 1: block N's data, or the sync marker ending it."""
    text = str(exc) or type(exc).__name__
    block = good_blocks + 1
    if "sync" in text.lower():
        return QuarantinedFile(name, f"avro: bad sync marker after block {block}")
    if isinstance(exc, EOFError) or "eof" in text.lower() or "truncat" in text.lower():
        return QuarantinedFile(name, f"avro: truncated in block {block} (after block {good_blocks})")
    return QuarantinedFile(name, f"avro: {text} in block {block} (after block {good_blocks})")


def _check_capture_schema(schema: Any, name: str) -> None:
    fields = {f["name"] for f in schema.get("fields", [])} if isinstance(schema, dict) else set()
    missing = {"SequenceNumber", "Offset", "EnqueuedTimeUtc", "SystemProperties", "Body"} - fields
    if missing:
        raise QuarantinedFile(
            name, f"avro: not an Event Hubs Capture schema (missing {', '.join(sorted(missing))})"
        )


def _count_text_records(fh: BinaryIO, fmt: Format) -> int:
    lines = sum(1 for line in fh if line.strip())
    return max(0, lines - 1) if fmt == "csv" else lines


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
    partition = partition_of(name)
    if fmt == "avro":
        if parser == "fast":
            yield from _decode_avro_fast(fh, name, contract, chunk_rows, partition)
        else:
            yield from _decode_avro(fh, name, contract, chunk_rows, partition)
    elif fmt == "parquet":
        yield from _decode_parquet(fh, name, contract, chunk_rows)
    elif fmt == "csv":
        yield from _decode_csv(fh, name, contract, chunk_rows)
    elif parser == "fast":
        yield from _decode_ndjson_fast(fh, contract, chunk_rows)
    else:
        yield from _decode_ndjson(fh, name, contract, chunk_rows)


# -- Capture Avro -------------------------------------------------------------------------
def _decode_avro(
    fh: BinaryIO, name: str, contract: Contract, chunk_rows: int, partition: str | None
) -> Iterator[pl.DataFrame]:
    if not fh.peek(1):  # type: ignore[attr-defined]
        return
    builder = _ChunkBuilder(contract)
    blocks = 0
    reader = _avro_blocks(fh, name, _PARSED_CAPTURE)
    try:
        for block in reader:
            for message in block:
                record = cast(dict[str, Any], message)
                builder.add_body(
                    record["Body"],
                    record["SequenceNumber"],
                    record["Offset"],
                    _enqueued_ms(record),
                    partition,
                )
            blocks += 1
            if builder.pending >= chunk_rows:
                yield builder.take()
    except Exception as exc:
        raise _avro_failure(name, exc, blocks) from exc
    if builder.pending:
        yield builder.take()


def _decode_avro_fast(
    fh: BinaryIO, name: str, contract: Contract, chunk_rows: int, partition: str | None
) -> Iterator[pl.DataFrame]:
    """The Avro path of ``parser="fast"``: ``capture`` scans records, ``fastparse`` parses bodies.

    A writer schema in Capture's exact layout is scanned into columns by compiled code;
    any other (fields reordered, unexpected union branches) is decoded record by record
    with cavro through the projection that skips Properties. Failures read as in the
    straightforward path.
    """
    if not fh.peek(1):  # type: ignore[attr-defined]
        return
    header = _capture_header(fh, name)
    shape = capture.layout(header.schema)
    first_row = 0
    try:
        if shape is not None:
            for columns in capture.chunks(fh, header, shape, chunk_rows):
                frame = _parse_columns(columns, contract, partition, first_row)
                first_row += len(columns.body)
                yield frame
            return
        read = cavro.Schema(CAPTURE_READER_SCHEMA).reader_for_writer(cavro.Schema(header.schema)).binary_read
        chunk = _RecordColumns(partition)
        for block, (count, data) in enumerate(capture.blocks(fh, header), start=1):
            try:
                chunk.add_block(read, data, count)
            except Exception as exc:  # cavro raises bare errors on bad record data
                raise CorruptBlock(block, exc) from exc
            if len(chunk.bodies) >= chunk_rows:
                yield chunk.parse(contract)
        if chunk.bodies:
            yield chunk.parse(contract)
    except CorruptBlock as exc:
        raise _avro_failure(name, exc.cause, exc.block - 1) from exc


def _parse_columns(
    columns: capture.Columns, contract: Contract, partition: str | None, first_row: int
) -> pl.DataFrame:
    """One scanned chunk -> the parsed frame (``fastparse``; odd bodies take the builder)."""
    n = len(columns.body)
    enqueued = columns.enqueued_ms
    if enqueued.null_count:
        exact = enqueued.to_pylist()
        enqueued = pa.array(
            [
                v if v is not None else _enqueued_at(None, t)
                for v, t in zip(exact, columns.enqueued_text, strict=True)
            ],
            pa.int64(),
        )
    lineage = [
        pl.Series("_sequence_number", columns.sequence_number),
        pl.Series("_offset", columns.offset),
        pl.Series("_enqueued_time", enqueued).cast(pl.Datetime("ms")).cast(pl.Datetime("us")),
        pl.repeat(partition, n, dtype=pl.String, eager=True).alias("_partition"),
    ]

    def straightforward(positions: list[int]) -> pl.DataFrame:
        picked = kernels.int64_array(np.array(positions, dtype=np.int64))
        builder = _ChunkBuilder(contract)
        rows = zip(
            positions,
            columns.body.take(picked).to_pylist(),
            columns.sequence_number.take(picked).to_pylist(),
            columns.offset.take(picked).to_pylist(),
            enqueued.take(picked).to_pylist(),
            strict=True,
        )
        for i, body, sequence_number, offset, enqueued_ms in rows:
            builder.sources = first_row + i
            builder.add_body(body, sequence_number, offset, enqueued_ms, partition)
        return builder.take()

    return fastparse.parse_chunk(columns.body, contract, lineage, first_row, straightforward)


class _RecordColumns:
    """One chunk's source records as plain lists, then parsed by ``fastparse``."""

    def __init__(self, partition: str | None, *, strict_single: bool = False) -> None:
        self.partition = partition
        self.strict_single = strict_single
        self.first_row = 0
        self._reset()

    def _reset(self) -> None:
        self.bodies: list[bytes | None] = []
        self.sequence_numbers: list[int | None] = []
        self.offsets: list[str | None] = []
        self.enqueued: list[int | None] = []

    def add_block(self, read: Callable[[Any], Any], data: bytes, records: int) -> None:
        """Decode one block's records with cavro's ``read`` and keep what the frame needs."""
        source = cavro.MemoryReader(data)
        bodies, sequence_numbers = self.bodies.append, self.sequence_numbers.append
        offsets, enqueued = self.offsets.append, self.enqueued.append
        for _ in range(records):
            record = read(source)
            bodies(record.Body)
            sequence_numbers(record.SequenceNumber)
            offsets(record.Offset)
            exact = record.SystemProperties.get("x-opt-enqueued-time")
            enqueued(exact if exact.__class__ is int else _enqueued_at(exact, record.EnqueuedTimeUtc))

    def parse(self, contract: Contract) -> pl.DataFrame:
        n = len(self.bodies)
        lineage = [
            pl.Series("_sequence_number", self.sequence_numbers, dtype=pl.Int64),
            pl.Series("_offset", self.offsets, dtype=pl.String),
            pl.Series("_enqueued_time", self.enqueued, dtype=pl.Int64)
            .cast(pl.Datetime("ms"))
            .cast(pl.Datetime("us")),
            pl.repeat(self.partition, n, dtype=pl.String, eager=True).alias("_partition"),
        ]

        def straightforward(positions: list[int]) -> pl.DataFrame:
            builder = _ChunkBuilder(contract)
            for i in positions:
                builder.sources = self.first_row + i
                builder.add_body(
                    self.bodies[i],
                    self.sequence_numbers[i],
                    self.offsets[i],
                    self.enqueued[i],
                    self.partition,
                    strict_single=self.strict_single,
                )
            return builder.take()

        frame = fastparse.parse_chunk(self.bodies, contract, lineage, self.first_row, straightforward)
        self.first_row += n
        self._reset()
        return frame


_DOTNET_FORMAT = "%m/%d/%Y %I:%M:%S %p"


def _enqueued_ms(record: dict[str, Any]) -> int | None:
    return _enqueued_at(record["SystemProperties"].get("x-opt-enqueued-time"), record["EnqueuedTimeUtc"])


def _enqueued_at(exact: Any, dotnet: str | None) -> int | None:
    if isinstance(exact, int):
        return exact
    # Older Capture files only carry the .NET invariant-culture string, to the second.
    try:
        parsed = datetime.strptime(dotnet, _DOTNET_FORMAT)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return int(parsed.replace(tzinfo=UTC).timestamp() * 1000)


# -- Parquet (Stream Analytics no-code editor) ---------------------------------------------
_SA_ENQUEUED = "EventEnqueuedUtcTime"
_SA_PARTITION = "PartitionId"
_SA_DROPPED = {"EventProcessedUtcTime"}


def _parquet_file(fh: BinaryIO, name: str) -> pq.ParquetFile:
    # Parquet needs random access; blob streams are forward-only.
    source: Any = fh if fh.seekable() else io.BytesIO(fh.read())
    try:
        return pq.ParquetFile(source)
    except (pa.ArrowInvalid, OSError) as exc:
        raise QuarantinedFile(name, f"parquet: {exc}") from exc


def _decode_parquet(fh: BinaryIO, name: str, contract: Contract, chunk_rows: int) -> Iterator[pl.DataFrame]:
    pfile = _parquet_file(fh, name)
    row = 0
    try:
        for batch in pfile.iter_batches(batch_size=chunk_rows):
            frame = pl.from_arrow(batch)
            assert isinstance(frame, pl.DataFrame)
            yield _structured_chunk(frame, contract, row)
            row += frame.height
    except (pa.ArrowInvalid, OSError) as exc:
        raise QuarantinedFile(name, f"parquet: {exc} after row {row}") from exc


def _structured_chunk(frame: pl.DataFrame, contract: Contract, first_row: int) -> pl.DataFrame:
    """A chunk from a columnar source whose columns are already the event's fields."""
    fields = set(contract.field_names)
    rows = frame.select(c for c in frame.columns if c not in _SA_DROPPED).to_dicts()
    builder = _ChunkBuilder(contract)
    for i, record in enumerate(rows):
        enqueued = record.pop(_SA_ENQUEUED, None)
        partition = record.pop(_SA_PARTITION, None)
        payload = {k: v for k, v in record.items() if v is not None or k in fields}
        builder.add_record(
            _jsonable(payload),
            _raw_json(payload),
            first_row + i,
            None,
            _epoch_ms(enqueued),
            None if partition is None else str(partition),
            first_row + i,
        )
    return builder.take()


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(_raw_json(record))


def _raw_json(record: dict[str, Any]) -> str:
    return orjson.dumps(record, default=str).decode()


def _epoch_ms(value: Any) -> int | None:
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(aware.timestamp() * 1000)
    if isinstance(value, str):
        try:
            return _epoch_ms(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


# -- CSV and NDJSON --------------------------------------------------------------------------
def _decode_csv(fh: BinaryIO, name: str, contract: Contract, chunk_rows: int) -> Iterator[pl.DataFrame]:
    header_line = fh.readline()
    if not header_line.strip():
        return
    header = next(csv.reader([header_line.decode("utf-8-sig")]))
    options = pacsv.ConvertOptions(
        column_types={c: pa.string() for c in header},
        strings_can_be_null=True,
        null_values=[""],
    )
    reader = pacsv.open_csv(
        fh,
        read_options=pacsv.ReadOptions(column_names=header, block_size=8 * 1024 * 1024),
        convert_options=options,
    )
    row = 1
    try:
        for batch in reader:
            frame = pl.from_arrow(batch)
            assert isinstance(frame, pl.DataFrame)
            for start in range(0, frame.height, chunk_rows):
                part = frame.slice(start, chunk_rows)
                yield _structured_chunk(part, contract, row)
                row += part.height
    except pa.ArrowInvalid as exc:
        raise QuarantinedFile(name, f"csv: {exc} after line {row}") from exc


def _decode_ndjson(fh: BinaryIO, name: str, contract: Contract, chunk_rows: int) -> Iterator[pl.DataFrame]:
    builder = _ChunkBuilder(contract)
    for line_no, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        builder.add_body(line.rstrip(b"\r\n"), line_no, None, None, None, strict_single=True)
        if builder.pending >= chunk_rows:
            yield builder.take()
    if builder.pending:
        yield builder.take()


def _decode_ndjson_fast(fh: BinaryIO, contract: Contract, chunk_rows: int) -> Iterator[pl.DataFrame]:
    chunk = _RecordColumns(None, strict_single=True)
    for line_no, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        chunk.bodies.append(line.rstrip(b"\r\n"))
        chunk.sequence_numbers.append(line_no)
        chunk.offsets.append(None)
        chunk.enqueued.append(None)
        if len(chunk.bodies) >= chunk_rows:
            yield chunk.parse(contract)
    if chunk.bodies:
        yield chunk.parse(contract)


# -- Body parsing ----------------------------------------------------------------------------
def parse_body(body: bytes | None, *, strict_single: bool = False) -> list[dict[str, Any]] | None:
    """The events in one body, or None when the body is malformed.

    A body is one JSON object (compact or pretty-printed), an array of objects, or
    newline-delimited objects. Anything else - invalid UTF-8, invalid JSON, a JSON
    scalar, an array holding a non-object - is malformed.
    """
    if body is None:
        return None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        if strict_single:
            return None
        return _parse_ndjson_body(body)
    if isinstance(value, dict):
        return [value]
    if not strict_single and isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return value
    return None


def _parse_ndjson_body(body: bytes) -> list[dict[str, Any]] | None:
    lines = [line for line in body.splitlines() if line.strip()]
    if len(lines) < 2:
        return None
    events = []
    for line in lines:
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(value, dict):
            return None
        events.append(value)
    return events


def field_text(value: Any) -> str | None:
    """A JSON value as the string bronze keeps: strings as-is, anything else as JSON."""
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


class _ChunkBuilder:
    """Accumulates parsed records column by column."""

    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.fields = contract.field_names
        self.field_set = frozenset(self.fields)
        self.schema = parsed_schema(contract)
        self.sources = 0  # source records seen in the whole file: numbers `_row`
        self.pending = 0  # source records in the chunk being built
        self._reset()

    def _reset(self) -> None:
        self.columns: dict[str, list[Any]] = {name: [] for name in self.schema}
        self.enqueued: list[int | None] = []

    def add_body(
        self,
        body: bytes | None,
        sequence_number: int | None,
        offset: str | None,
        enqueued_ms: int | None,
        partition: str | None,
        *,
        strict_single: bool = False,
    ) -> None:
        events = parse_body(body, strict_single=strict_single)
        row = self.sources
        if events is None:
            self._append(None, _body_text(body), True, sequence_number, offset, enqueued_ms, partition, row)
        elif len(events) == 1:
            self._append(
                events[0], _body_text(body), False, sequence_number, offset, enqueued_ms, partition, row
            )
        else:
            for event in events:
                self._append(
                    event, _raw_json(event), False, sequence_number, offset, enqueued_ms, partition, row
                )
        self.sources += 1
        self.pending += 1

    def add_record(
        self,
        record: dict[str, Any],
        raw: str,
        sequence_number: int | None,
        offset: str | None,
        enqueued_ms: int | None,
        partition: str | None,
        row: int,
    ) -> None:
        self._append(record, raw, False, sequence_number, offset, enqueued_ms, partition, row)
        self.sources += 1
        self.pending += 1

    def _append(
        self,
        event: dict[str, Any] | None,
        raw: str,
        malformed: bool,
        sequence_number: int | None,
        offset: str | None,
        enqueued_ms: int | None,
        partition: str | None,
        row: int,
    ) -> None:
        cols = self.columns
        if event is None:
            for name in self.fields:
                cols[name].append(None)
            cols["_rescued_data"].append(None)
        else:
            for name in self.fields:
                cols[name].append(field_text(event.get(name)))
            extra = {k: v for k, v in event.items() if k not in self.field_set}
            cols["_rescued_data"].append(orjson.dumps(extra).decode() if extra else None)
        cols["_raw"].append(raw)
        cols["_malformed"].append(malformed)
        cols["_sequence_number"].append(sequence_number)
        cols["_offset"].append(offset)
        self.enqueued.append(enqueued_ms)
        cols["_partition"].append(partition)
        cols["_row"].append(row)

    def take(self) -> pl.DataFrame:
        cols = self.columns
        cols["_enqueued_time"] = []
        frame = pl.DataFrame(
            {k: v for k, v in cols.items() if k != "_enqueued_time"},
            schema={k: v for k, v in self.schema.items() if k != "_enqueued_time"},
        ).with_columns(
            pl.Series("_enqueued_time", self.enqueued, dtype=pl.Int64)
            .cast(pl.Datetime("ms"))
            .cast(pl.Datetime("us"))
        )
        frame = frame.select(list(self.schema))
        self.pending = 0
        self._reset()
        return frame


def _body_text(body: bytes | None) -> str:
    if body is None:
        return ""
    return body.decode("utf-8", errors="backslashreplace")


def concat(chunks: Iterable[pl.DataFrame]) -> pl.DataFrame:
    """All chunks of a (small) file as one frame; for tests and small inputs."""
    frames = list(chunks)
    return pl.concat(frames) if frames else pl.DataFrame()
