"""Event Hubs Capture Avro into parsed chunks, by either parser, and the probe's block walk.

Both parsers frame the file with ``capture`` (header and blocks read within bounds, every
count and size checked before it is used), so a file that lies fails the same way on
either. The fast parser scans Capture's own layout in compiled code
(``capture.chunks``); any other writer schema, and every file for the straightforward
parser, is read record by record with fastavro. Either way a block's records must use
exactly its bytes. One refusal is the scan's alone: fastavro reads a varint longer than a
long's 10 bytes (with whatever value its 64-bit shifts leave), which the scan refuses.

Both read the strings they use the same way: an Offset (kept as lineage) must be UTF-8;
``EnqueuedTimeUtc`` and ``SystemProperties`` keys and values are only compared or parsed,
so bytes there that are not UTF-8 make no match rather than a quarantined file.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO

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
    any other (fields reordered, unexpected union branches) is read record by record.
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
        read = _reader(header.schema, name)
        chunk = RecordColumns(partition)
        for block, (count, data) in enumerate(capture.blocks(fh, header), start=1):
            for record in _records(read, data, count, block):
                chunk.add(*record)
            if len(chunk) >= chunk_rows:
                yield chunk.parse(contract)
        if len(chunk):
            yield chunk.parse(contract)
    except CorruptBlock as exc:
        raise failure(name, exc) from exc


def decode_straightforward(
    fh: BinaryIO, name: str, contract: Contract, chunk_rows: int, partition: str | None
) -> Iterator[pl.DataFrame]:
    """The Avro path of ``parser="straightforward"``: each record read, each body built, one by one."""
    if not fh.peek(1):  # type: ignore[attr-defined]
        return
    header = _header(fh, name)
    read = _reader(header.schema, name)
    builder = ChunkBuilder(contract)
    try:
        for block, (count, data) in enumerate(capture.blocks(fh, header), start=1):
            for body, sequence_number, offset, enqueued in _records(read, data, count, block):
                builder.add_body(body, sequence_number, offset, enqueued, partition)
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
        fastavro.parse_schema(header.schema)  # a valid Avro schema, for the scan as for fastavro
    except Exception as exc:  # fastavro raises bare errors for schemas it cannot parse
        raise QuarantinedFile(name, f"avro: not an Event Hubs Capture schema ({exc})") from exc
    return header


Record = tuple[bytes | None, int, str, int | None]
Read = Callable[[io.BytesIO], Any]


def _reader(schema: Any, name: str) -> Read:
    """fastavro's reader of one record of a writer schema, through the projection that
    skips Properties. Strings that are not UTF-8 decode to lone surrogates instead of
    failing the record: only the Offset is kept, and ``_records`` checks it."""
    # Avro resolves records by name; the pipeline, like the compiled scan, goes by the fields.
    named = {key: schema[key] for key in ("name", "namespace") if key in schema}
    projection = {**{k: v for k, v in CAPTURE_READER_SCHEMA.items() if k != "namespace"}, **named}
    try:
        writer = fastavro.parse_schema(schema)
        reader = fastavro.parse_schema(projection)
    except Exception as exc:  # fastavro raises bare errors for schemas it cannot parse
        raise QuarantinedFile(name, f"avro: not an Event Hubs Capture schema ({exc})") from exc

    def read(source: io.BytesIO) -> Any:
        return fastavro.schemaless_reader(source, writer, reader, handle_unicode_errors="surrogateescape")

    return read


def _records(read: Read, data: bytes, count: int, block: int) -> Iterator[Record]:
    """(body, sequence number, offset, enqueued ms) of one block's records.

    Raises:
        CorruptBlock: a record does not read, an Offset is not UTF-8, or bytes are left over.
    """
    source = io.BytesIO(data)
    for number in range(1, count + 1):
        try:
            record = read(source)
        except Exception as exc:  # fastavro raises bare errors on bad record data
            raise CorruptBlock(block, exc) from exc
        offset = record["Offset"]
        if not offset.isascii():
            try:
                offset.encode()
            except UnicodeEncodeError:
                raise CorruptBlock(block, ValueError(f"record {number}: Offset is not UTF-8")) from None
        exact = record["SystemProperties"].get("x-opt-enqueued-time")
        yield record["Body"], record["SequenceNumber"], offset, enqueued_at(exact, record["EnqueuedTimeUtc"])
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
    """Epoch ms of ``x-opt-enqueued-time`` (a long within ``capture.ENQUEUED_LIMIT_MS``),
    else of the .NET ``EnqueuedTimeUtc`` string, else None."""
    if exact.__class__ is int and -capture.ENQUEUED_LIMIT_MS <= exact <= capture.ENQUEUED_LIMIT_MS:
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
