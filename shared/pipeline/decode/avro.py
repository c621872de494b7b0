"""Event Hubs Capture Avro into parsed chunks, by either parser, and the probe's block walk.

Both parsers frame the file with ``capture`` (header and blocks read within bounds, every
count and size checked before it is used), so a file that lies fails the same way on
either. The fast parser scans Capture's own layout in compiled code
(``capture.chunks``) and any other writer schema record by record with cavro; the
straightforward one reads every record with fastavro. Both check that a block's records
use exactly its bytes.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO

import cavro
import fastavro
import numpy as np
import polars as pl

from shared.contracts import Contract
from shared.errors import CorruptBlock, QuarantinedFile
from shared.pipeline import capture, fastparse, kernels
from shared.pipeline.decode.rows import ChunkBuilder, RecordColumns, built_rows, enqueued_column

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
_DOTNET_FORMAT = "%m/%d/%Y %I:%M:%S %p"


def probe(fh: BinaryIO, name: str) -> int:
    """The records a Capture file declares, its framing checked block by block (not inflated)."""
    if not fh.peek(1):  # type: ignore[attr-defined]
        return 0
    header = _header(fh, name)
    records = 0
    try:
        for count, _ in capture.blocks(fh, header, inflate=False):
            records += count
    except CorruptBlock as exc:
        raise failure(name, exc) from exc
    return records


def decode_fast(
    fh: BinaryIO, name: str, contract: Contract, chunk_rows: int, partition: str | None
) -> Iterator[pl.DataFrame]:
    """The Avro path of ``parser="fast"``: ``capture`` scans records, ``fastparse`` parses bodies.

    A writer schema in Capture's exact layout is scanned into columns by compiled code;
    any other (fields reordered, unexpected union branches) is decoded record by record
    with cavro through the projection that skips Properties.
    """
    if not fh.peek(1):  # type: ignore[attr-defined]
        return
    header = _header(fh, name)
    shape = capture.layout(header.schema)
    try:
        if shape is not None:
            first_row = 0
            for columns in capture.chunks(fh, header, shape, chunk_rows):
                yield _parse_columns(columns, contract, partition, first_row)
                first_row += len(columns.body)
            return
        read = _cavro_reader(header.schema, name)
        chunk = RecordColumns(partition)
        for block, (count, data) in enumerate(capture.blocks(fh, header), start=1):
            _add_cavro_block(chunk, read, data, count, block)
            if len(chunk) >= chunk_rows:
                yield chunk.parse(contract)
        if len(chunk):
            yield chunk.parse(contract)
    except CorruptBlock as exc:
        raise failure(name, exc) from exc


def decode_straightforward(
    fh: BinaryIO, name: str, contract: Contract, chunk_rows: int, partition: str | None
) -> Iterator[pl.DataFrame]:
    """The Avro path of ``parser="straightforward"``: fastavro reads each record, the builder each body."""
    if not fh.peek(1):  # type: ignore[attr-defined]
        return
    header = _header(fh, name)
    try:
        writer = fastavro.parse_schema(header.schema)
    except Exception as exc:  # fastavro raises bare errors for schemas it cannot parse
        raise QuarantinedFile(name, f"avro: not an Event Hubs Capture schema ({exc})") from exc
    builder = ChunkBuilder(contract)
    try:
        for block, (count, data) in enumerate(capture.blocks(fh, header), start=1):
            source = io.BytesIO(data)
            try:
                for _ in range(count):
                    record: Any = fastavro.schemaless_reader(source, writer, _PARSED_CAPTURE)
                    exact = record["SystemProperties"].get("x-opt-enqueued-time")
                    enqueued = enqueued_at(exact, record["EnqueuedTimeUtc"])
                    builder.add_body(
                        record["Body"], record["SequenceNumber"], record["Offset"], enqueued, partition
                    )
            except Exception as exc:  # fastavro raises bare errors on bad record data
                raise CorruptBlock(block, exc) from exc
            _check_used(source, data, block)
            if builder.pending >= chunk_rows:
                yield builder.take()
    except CorruptBlock as exc:
        raise failure(name, exc) from exc
    if builder.pending:
        yield builder.take()


def _header(fh: BinaryIO, name: str) -> capture.Header:
    try:
        header = capture.read_header(fh)
    except (ValueError, EOFError, UnicodeDecodeError, RecursionError) as exc:
        raise QuarantinedFile(name, f"avro: bad header ({exc})") from exc
    try:
        capture.check_schema(header.schema)
    except ValueError as exc:
        raise QuarantinedFile(name, f"avro: not an Event Hubs Capture schema ({exc})") from exc
    return header


def _cavro_reader(schema: Any, name: str) -> Any:
    try:
        return cavro.Schema(CAPTURE_READER_SCHEMA).reader_for_writer(cavro.Schema(schema)).binary_read
    except Exception as exc:  # cavro raises bare errors for schemas it cannot read or resolve
        raise QuarantinedFile(name, f"avro: not an Event Hubs Capture schema ({exc})") from exc


def _add_cavro_block(chunk: RecordColumns, read: Any, data: bytes, count: int, block: int) -> None:
    """Decode one block's records with cavro's ``read`` into ``chunk``."""
    stream = io.BytesIO(data)
    source = cavro.FileReader(stream)  # reads only what it decodes, so the position tells
    try:
        for _ in range(count):
            record = read(source)
            exact = record.SystemProperties.get("x-opt-enqueued-time")
            enqueued = exact if exact.__class__ is int else enqueued_at(exact, record.EnqueuedTimeUtc)
            chunk.add(record.Body, record.SequenceNumber, record.Offset, enqueued)
    except Exception as exc:  # cavro raises bare errors on bad record data
        raise CorruptBlock(block, exc) from exc
    _check_used(stream, data, block)


def _check_used(source: io.BytesIO, data: bytes, block: int) -> None:
    if source.tell() != len(data):
        raise CorruptBlock(block, ValueError(kernels.SCAN_PROBLEMS[kernels.LEFTOVER]))


def _parse_columns(
    columns: capture.Columns, contract: Contract, partition: str | None, first_row: int
) -> pl.DataFrame:
    """One scanned chunk -> the parsed frame (``fastparse``; odd bodies take the builder)."""
    n = len(columns.body)
    enqueued = columns.enqueued_ms
    if enqueued.null_count:
        exact = enqueued.to_pylist()
        enqueued_ms = [
            v if v is not None else enqueued_at(None, t)
            for v, t in zip(exact, columns.enqueued_text, strict=True)
        ]
        enqueued = kernels.int64_array(
            np.array([v or 0 for v in enqueued_ms], dtype=np.int64),
            np.array([v is not None for v in enqueued_ms], dtype=np.bool_),
        )
    lineage = [
        pl.Series("_sequence_number", columns.sequence_number),
        pl.Series("_offset", columns.offset),
        enqueued_column(pl.Series(enqueued)),
        pl.repeat(partition, n, dtype=pl.String, eager=True).alias("_partition"),
    ]

    def straightforward(positions: list[int]) -> pl.DataFrame:
        picked = kernels.int64_array(np.array(positions, dtype=np.int64))
        records = zip(
            [first_row + i for i in positions],
            columns.body.take(picked).to_pylist(),
            columns.sequence_number.take(picked).to_pylist(),
            columns.offset.take(picked).to_pylist(),
            enqueued.take(picked).to_pylist(),
            strict=True,
        )
        return built_rows(contract, list(records), partition)

    return fastparse.parse_chunk(columns.body, contract, lineage, first_row, straightforward)


def enqueued_at(exact: Any, dotnet: str | None) -> int | None:
    """Epoch ms of ``x-opt-enqueued-time``, else of the .NET ``EnqueuedTimeUtc`` string."""
    if isinstance(exact, int):
        return exact
    # Older Capture files only carry the .NET invariant-culture string, to the second.
    try:
        parsed = datetime.strptime(dotnet, _DOTNET_FORMAT)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return int(parsed.replace(tzinfo=UTC).timestamp() * 1000)


def failure(name: str, exc: CorruptBlock) -> QuarantinedFile:
    """Name what broke, counting blocks from 1: block N's data, or the sync marker ending it."""
    cause = exc.cause
    text = str(cause) or type(cause).__name__
    block, good_blocks = exc.block, exc.block - 1
    if "sync" in text.lower():
        return QuarantinedFile(name, f"avro: bad sync marker after block {block}")
    if isinstance(cause, EOFError) or "eof" in text.lower() or "truncat" in text.lower():
        return QuarantinedFile(name, f"avro: truncated in block {block} (after block {good_blocks})")
    return QuarantinedFile(name, f"avro: {text} in block {block} (after block {good_blocks})")
