"""Event Hubs Capture Avro as Arrow columns: framing, inflate and one compiled record scan.

A Capture file is an Avro object container: a header (schema, codec, sync marker), then
blocks of records. No library turns its records into Arrow columns both correctly and in
bounded memory: polars panics on its map and union columns, DataFusion's reader fails on
the maps, DuckDB's grows with the file, and decoding record by record in Python (cavro,
fastavro) costs about 3 s per million records. So this module frames the blocks itself
(fastavro still reads the header), inflates them with ISA-L (zlib's format, about twice as
fast) and scans a chunk's records in one numba-compiled loop that records where each value
sits in the inflated bytes. Arrow arrays are then cut from those positions.

Only Capture's layout is scanned: its six fields in Capture's order, with unions of known
primitive branches. ``layout`` returns None for any other writer schema, and the caller
decodes those files record by record instead.
"""

from __future__ import annotations

import json
import types
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import fastavro
import fastavro.read
import numpy as np
import pyarrow as pa

from shared.errors import CorruptBlock
from shared.pipeline import kernels

_inflater: types.ModuleType
try:
    from isal import isal_zlib as _inflater
except ImportError:  # pragma: no cover - isal is in requirements.txt; zlib gives the same bytes
    _inflater = zlib

MAGIC = b"Obj\x01"
FIELDS = ("SequenceNumber", "Offset", "EnqueuedTimeUtc", "SystemProperties", "Properties", "Body")
ENQUEUED_KEY = b"x-opt-enqueued-time"
# Union branch kinds the scan can read or skip.
_LONG, _DOUBLE, _FLOAT, _BYTES, _NULL, _BOOLEAN = 0, 1, 2, 3, 4, 5
_KINDS = {"long": _LONG, "int": _LONG, "double": _DOUBLE, "float": _FLOAT, "string": _BYTES}
_KINDS.update({"bytes": _BYTES, "null": _NULL, "boolean": _BOOLEAN})


@dataclass(frozen=True, slots=True)
class Header:
    schema: dict[str, Any]
    codec: str
    sync: bytes


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the scan finds things: union branch kinds of both maps, Body's null branch."""

    system_properties: np.ndarray
    properties: np.ndarray
    body_null: int  # index of Body's null branch; -1 when Body is plain bytes


@dataclass(frozen=True, slots=True)
class Columns:
    """One chunk of records: what the pipeline keeps of each."""

    body: pa.Array  # large_binary, null for a null body
    sequence_number: pa.Array  # int64
    offset: pa.Array  # string
    enqueued_ms: pa.Array  # int64, x-opt-enqueued-time; null when absent and unparsable
    enqueued_text: list[str | None]  # EnqueuedTimeUtc, only where enqueued_ms needs it (else None)


def read_header(fh: BinaryIO) -> Header:
    """The container header. Raises ValueError when it is not an Avro object container."""
    header = fastavro.schemaless_reader(fh, fastavro.read.HEADER_SCHEMA)
    if not isinstance(header, dict) or header.get("magic") != MAGIC:
        raise ValueError("not an Avro object container file")
    meta = header["meta"]
    return Header(
        schema=json.loads(meta["avro.schema"]),
        codec=meta.get("avro.codec", b"null").decode(),
        sync=header["sync"],
    )


def layout(schema: Any) -> Layout | None:
    """The scan's layout for a writer schema, or None if it is not Capture's exact shape."""
    fields = schema.get("fields", []) if isinstance(schema, dict) else []
    if tuple(f.get("name") for f in fields) != FIELDS:
        return None
    types = {f["name"]: f["type"] for f in fields}
    if (
        types["SequenceNumber"] != "long"
        or types["Offset"] != "string"
        or types["EnqueuedTimeUtc"] != "string"
    ):
        return None
    maps = [_branches(types[name]) for name in ("SystemProperties", "Properties")]
    body = types["Body"]
    if body == "bytes":
        body_null = -1
    elif isinstance(body, list) and sorted(map(str, body)) == ["bytes", "null"]:
        body_null = body.index("null")
    else:
        return None
    if maps[0] is None or maps[1] is None:
        return None
    return Layout(maps[0], maps[1], body_null)


def _branches(spec: Any) -> np.ndarray | None:
    if not isinstance(spec, dict) or spec.get("type") != "map":
        return None
    values = spec["values"] if isinstance(spec["values"], list) else [spec["values"]]
    kinds = [_KINDS.get(v if isinstance(v, str) else v.get("type")) for v in values]
    if any(k is None for k in kinds):
        return None
    return np.array(kinds, dtype=np.int64)


def blocks(fh: BinaryIO, header: Header, *, inflate: bool = True) -> Iterator[tuple[int, bytes]]:
    """(record count, data) of each block, inflated unless ``inflate`` is False.

    Raises:
        CorruptBlock: a block is truncated, its sync marker is wrong, or it does not inflate.
    """
    block = 0
    while True:
        block += 1
        try:
            count = _varint(fh)
            if count is None:
                return
            size = _varint(fh)
            if size is None or size < 0 or count < 0:
                raise EOFError("truncated block header")
            data = fh.read(size)
            if len(data) != size:
                raise EOFError(f"truncated: {len(data)} of {size} bytes")
            marker = fh.read(16)
            if marker != header.sync:
                raise ValueError("bad sync marker" if len(marker) == 16 else "truncated before sync marker")
            if inflate:
                data = _inflate(header.codec, data)
        except (EOFError, ValueError, zlib.error, _inflater.error) as exc:
            raise CorruptBlock(block, exc) from exc
        yield count, data


def chunks(fh: BinaryIO, header: Header, shape: Layout, chunk_rows: int) -> Iterator[Columns]:
    """The file's records in chunks of whole blocks, at least ``chunk_rows`` records each."""
    pending: list[bytes] = []
    counts: list[int] = []
    records = 0
    first_block = 1
    for count, data in blocks(fh, header):
        pending.append(data)
        counts.append(count)
        records += count
        if records >= chunk_rows:
            yield decode(shape, pending, counts, first_block)
            first_block += len(counts)
            pending, counts, records = [], [], 0
    if counts:
        yield decode(shape, pending, counts, first_block)


def decode(shape: Layout, data: list[bytes], counts: list[int], first_block: int = 1) -> Columns:
    """Scan the records of consecutive inflated blocks into columns."""
    sizes = np.fromiter(map(len, data), dtype=np.int64, count=len(data))
    buffer = np.frombuffer(b"".join(data), dtype=np.uint8)
    ends = np.cumsum(sizes)
    starts = ends - sizes
    records = np.array(counts, dtype=np.int64)
    n = int(records.sum())
    sequence = np.empty(n, dtype=np.int64)
    enqueued = np.zeros(n, dtype=np.int64)
    has_enqueued = np.zeros(n, dtype=np.bool_)
    spans = np.empty((3, 2, n), dtype=np.int64)  # Offset, EnqueuedTimeUtc, Body: (start, length)
    key = np.frombuffer(ENQUEUED_KEY, dtype=np.uint8)
    done = kernels.scan_capture(
        buffer, starts, ends, records, shape.system_properties, shape.properties, shape.body_null,
        key, sequence, spans, enqueued, has_enqueued,
    )  # fmt: skip
    if done != n:
        _raise_scan_failure(done, records, first_block)
    offset = kernels.cut(buffer, spans[0, 0], spans[0, 1], pa.string())
    offset.validate(full=True)  # UTF-8
    text: list[str | None] = [None] * n
    missing = np.flatnonzero(~has_enqueued)
    for i in missing.tolist():
        start, length = spans[1, 0, i], spans[1, 1, i]
        text[i] = bytes(buffer[start : start + length]).decode("utf-8", "replace")
    return Columns(
        body=kernels.cut(buffer, spans[2, 0], spans[2, 1], pa.large_binary()),
        sequence_number=kernels.int64_array(sequence),
        offset=offset,
        enqueued_ms=kernels.int64_array(enqueued, has_enqueued),
        enqueued_text=text,
    )


def _raise_scan_failure(done: int, records: np.ndarray, first_block: int) -> None:
    if done <= -(10**12):
        block = -done - 10**12
        raise CorruptBlock(first_block + block, ValueError("bytes left over after the block's records"))
    row = -done - 1
    block = int(np.searchsorted(np.cumsum(records), row, side="right"))
    raise CorruptBlock(
        first_block + block, ValueError(f"undecodable record {row - int(records[:block].sum()) + 1}")
    )


def _inflate(codec: str, data: bytes) -> bytes:
    if codec == "deflate":
        return bytes(_inflater.decompress(data, -15))
    if codec == "null":
        return data
    raise ValueError(f"unsupported codec {codec}")


def _varint(fh: BinaryIO) -> int | None:
    """A zigzag varint from the stream; None at a clean end of file."""
    shift = value = 0
    while True:
        byte = fh.read(1)
        if not byte:
            if shift:
                raise EOFError("truncated varint")
            return None
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return (value >> 1) ^ -(value & 1)
        shift += 7
