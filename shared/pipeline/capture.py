"""Event Hubs Capture Avro as Arrow columns: framing, inflate and one compiled record scan.

A Capture file is an Avro object container: a header (schema, codec, sync marker), then
blocks of records. No library turns its records into Arrow columns both correctly and in
bounded memory: polars panics on its map and union columns, DataFusion's reader fails on
the maps, DuckDB's grows with the file, and decoding record by record in Python (cavro,
fastavro) costs about 3 s per million records. So this module reads the header and frames
the blocks itself, inflates them with ISA-L (zlib's format, about twice as fast) and scans
a chunk's records in one numba-compiled loop that records where each value sits in the
inflated bytes. Arrow arrays are then cut from those positions.

Nothing the file says is trusted: every count, size and length is checked against the
bytes that hold it (and the bounds below) before anything is allocated or read by it, so a
file that lies fails with ``CorruptBlock`` naming the block and what it lied about.

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
#: The most bytes a block may hold once inflated. A block is held in memory whole, so this
#: is what bounds the decoder's memory on a file that lies (0.5 MB of deflate can inflate
#: to 512 MiB), and inflating stops at it, before the memory past it is spent. A block
#: holds whole events of at most 1 MB each (20 MB for a Dedicated cluster's large
#: messages), and the real Capture files here write blocks of a few KB: 64 MiB holds 64 of
#: the largest Standard events, three of the largest at all, in a third of the memory
#: budget. A larger block is quarantined, naming this limit.
MAX_BLOCK_BYTES = 64 << 20
#: The most bytes the header's metadata may take: a Capture header is its schema (under
#: 1 KB) and codec.
MAX_HEADER_BYTES = 1 << 20
#: A chunk takes no further block once it holds this many inflated bytes: ``chunk_rows``
#: counts records, which bounds nothing when the records are large.
CHUNK_BYTES = 32 << 20
#: A record holds the five fields the pipeline reads (SequenceNumber, Offset,
#: EnqueuedTimeUtc, SystemProperties, Body), each at least one byte: a block's count is
#: checked against its size with this before anything is allocated for its records.
MIN_RECORD_BYTES = 5
# Deflate stores what it cannot compress in blocks of at most 64 KiB plus 5 bytes, so a
# compressed block may be that much larger than what it inflates to.
_MAX_DEFLATED = MAX_BLOCK_BYTES + 5 * (MAX_BLOCK_BYTES >> 16) + 64
FIELDS = ("SequenceNumber", "Offset", "EnqueuedTimeUtc", "SystemProperties", "Properties", "Body")
ENQUEUED_KEY = b"x-opt-enqueued-time"
#: The largest ``x-opt-enqueued-time`` (either sign) a timestamp can hold: the parsed frame
#: keeps microseconds in 64 bits. One past it is no time at all, as if it were absent.
ENQUEUED_LIMIT_MS = (2**63 - 1) // 1000
# Union branch kinds the scan can read or skip.
_LONG, _DOUBLE, _FLOAT, _BYTES, _NULL, _BOOLEAN = 0, 1, 2, 3, 4, 5
_READ_KINDS = {
    "long": _LONG,
    "int": _LONG,
    "double": _DOUBLE,
    "float": _FLOAT,
    "string": _BYTES,
    "bytes": _BYTES,
}
_KINDS = {**_READ_KINDS, "null": _NULL, "boolean": _BOOLEAN}


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
    enqueued_ms: pa.Array  # int64, x-opt-enqueued-time; null when absent, not a long or out of range
    enqueued_text: list[str | None]  # EnqueuedTimeUtc, only where enqueued_ms needs it (else None)


def read_header(fh: BinaryIO) -> Header:
    """The container header, read within ``MAX_HEADER_BYTES``.

    Raises:
        ValueError: it is not an Avro object container, or its metadata is not a schema
            and a codec within the bound.
        EOFError: the file ends inside the header.
    """
    if fh.read(4) != MAGIC:
        raise ValueError("not an Avro object container file")
    meta: dict[bytes, bytes] = {}
    budget = [MAX_HEADER_BYTES]
    while count := _header_long(fh, budget):
        if count < 0:  # a block of -n entries is preceded by its size in bytes, which we need not
            count = -count
            _header_long(fh, budget)
        for _ in range(count):
            key = _header_bytes(fh, budget)
            meta[key] = _header_bytes(fh, budget)
    sync = fh.read(16)
    if len(sync) != 16:
        raise EOFError("truncated header")
    if b"avro.schema" not in meta:
        raise ValueError("no avro.schema in the header")
    return Header(
        schema=json.loads(meta[b"avro.schema"]),
        codec=meta.get(b"avro.codec", b"null").decode(),
        sync=sync,
    )


def _header_long(fh: BinaryIO, budget: list[int]) -> int:
    value = _varint(fh)
    if value is None:
        raise EOFError("truncated header")
    budget[0] -= 1  # every entry costs at least a byte, so a header of empty entries ends too
    if budget[0] < 0:
        raise ValueError(f"header larger than {MAX_HEADER_BYTES} bytes")
    return value


def _header_bytes(fh: BinaryIO, budget: list[int]) -> bytes:
    size = _header_long(fh, budget)
    if size < 0 or size > budget[0]:
        raise ValueError(f"header value of {size} bytes (the header may hold {MAX_HEADER_BYTES})")
    budget[0] -= size
    data = fh.read(size)
    if len(data) != size:
        raise EOFError("truncated header")
    return data


def check_schema(schema: Any) -> None:
    """Raise ValueError unless ``schema`` is a record with the fields the pipeline reads."""
    fields = schema.get("fields") if isinstance(schema, dict) and schema.get("type") == "record" else None
    if not isinstance(fields, list) or not all(isinstance(f, dict) for f in fields):
        raise ValueError("not an Avro record schema")
    missing = set(FIELDS) - {"Properties"} - {f.get("name") for f in fields if isinstance(f.get("name"), str)}
    if missing:
        raise ValueError(f"missing {', '.join(sorted(missing))}")


def layout(schema: Any) -> Layout | None:
    """The scan's layout for a writer schema (``check_schema`` passed), or None if it is
    not Capture's exact shape."""
    fields = schema["fields"]
    if tuple(f.get("name") for f in fields) != FIELDS:
        return None
    types = {f["name"]: f.get("type") for f in fields}
    if (
        types["SequenceNumber"] != "long"
        or types["Offset"] != "string"
        or types["EnqueuedTimeUtc"] != "string"
    ):
        return None
    # SystemProperties is read, so only with branches the record-by-record reader (fastavro,
    # through a map of long, double, string and bytes) also reads; Properties is skipped.
    maps = [_branches(types["SystemProperties"], _READ_KINDS), _branches(types["Properties"], _KINDS)]
    body = types["Body"]
    if body == "bytes":
        body_null = -1
    elif isinstance(body, list) and len(body) == 2 and sorted(map(str, body)) == ["bytes", "null"]:
        body_null = body.index("null")
    else:
        return None
    if maps[0] is None or maps[1] is None:
        return None
    return Layout(maps[0], maps[1], body_null)


def _branches(spec: Any, known: dict[str, int]) -> np.ndarray | None:
    if not isinstance(spec, dict) or spec.get("type") != "map":
        return None
    values = spec.get("values")
    values = values if isinstance(values, list) else [values]
    names = [v.get("type") if isinstance(v, dict) else v for v in values]
    kinds = [known.get(name) if isinstance(name, str) else None for name in names]
    if not kinds or any(k is None for k in kinds):
        return None
    return np.array(kinds, dtype=np.int64)


def blocks(fh: BinaryIO, header: Header, *, inflate: bool = True) -> Iterator[tuple[int, bytes]]:
    """(record count, data) of each block, inflated unless ``inflate`` is False.

    A block's framing is checked before anything is allocated for it: its count and size
    are not negative, its size is within ``MAX_BLOCK_BYTES`` (its deflated equivalent),
    and its count fits its bytes at ``MIN_RECORD_BYTES`` a record (the inflated bytes,
    or before inflating the most they may inflate to). A block that says it holds no
    records holds no bytes either; it is inflated even when ``inflate`` is False.

    Raises:
        CorruptBlock: a block is truncated, its framing lies, its sync marker is wrong, or
            it does not inflate (within the bound).
    """
    block = 0
    limit = MAX_BLOCK_BYTES if header.codec == "null" else _MAX_DEFLATED
    while True:
        block += 1
        try:
            count = _varint(fh)
            if count is None:
                return
            size = _varint(fh)
            if size is None:
                raise EOFError("truncated block header")
            if count < 0 or size < 0:
                raise ValueError(f"negative {'record count' if count < 0 else 'block size'}")
            if size > limit:
                raise ValueError(f"block size {size} is past the {MAX_BLOCK_BYTES >> 20} MiB limit")
            _check_count(count, size if header.codec == "null" else MAX_BLOCK_BYTES)
            data = fh.read(size)
            if len(data) != size:
                raise EOFError(f"truncated: {len(data)} of {size} bytes")
            marker = fh.read(16)
            if marker != header.sync:
                raise ValueError("bad sync marker" if len(marker) == 16 else "truncated before sync marker")
            if inflate or count == 0 or header.codec == "null":
                data = _inflate(header.codec, data)
                _check_count(count, len(data))
                if count == 0 and data:
                    raise ValueError(kernels.SCAN_PROBLEMS[kernels.LEFTOVER])
        except (EOFError, ValueError, zlib.error, _inflater.error) as exc:
            raise CorruptBlock(block, exc) from exc
        yield count, data


def _check_count(count: int, size: int) -> None:
    if count > size // MIN_RECORD_BYTES:
        raise ValueError(f"record count {count} cannot fit in the block's {size} bytes")


def chunks(fh: BinaryIO, header: Header, shape: Layout, chunk_rows: int) -> Iterator[Columns]:
    """The file's records in chunks of whole blocks: blocks are added until the chunk has
    ``chunk_rows`` records or ``CHUNK_BYTES`` bytes."""
    pending: list[bytes] = []
    counts: list[int] = []
    records = held = 0
    first_block = 1
    for count, data in blocks(fh, header):
        pending.append(data)
        counts.append(count)
        records += count
        held += len(data)
        if records >= chunk_rows or held >= CHUNK_BYTES:
            yield decode(shape, pending, counts, first_block)
            first_block += len(counts)
            pending, counts, records, held = [], [], 0, 0
    if counts:
        yield decode(shape, pending, counts, first_block)


def decode(shape: Layout, data: list[bytes], counts: list[int], first_block: int = 1) -> Columns:
    """Scan the records of consecutive inflated blocks into columns.

    ``counts`` must have been checked against ``data`` (``blocks`` does): the arrays the
    scan fills are sized by them.

    Raises:
        CorruptBlock: a record does not read as Capture's layout, bytes are left after a
            block's records, or an Offset is not UTF-8; the reason names the field.
    """
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
    has_enqueued &= (enqueued >= -ENQUEUED_LIMIT_MS) & (enqueued <= ENQUEUED_LIMIT_MS)
    offset = kernels.cut(buffer, spans[0, 0], spans[0, 1], pa.string())
    try:
        offset.validate(full=True)  # UTF-8
    except pa.ArrowInvalid:
        _raise_bad_offset(offset, records, first_block)
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
    place, problem = kernels.scan_failure(done)
    if problem == kernels.SCAN_PROBLEMS[kernels.LEFTOVER]:
        raise CorruptBlock(first_block + place, ValueError(problem))
    block, record = _block_of(place, records)
    raise CorruptBlock(first_block + block, ValueError(f"record {record}: {problem}"))


def _raise_bad_offset(offset: pa.Array, records: np.ndarray, first_block: int) -> None:
    """Name the first record whose Offset is not UTF-8 (read one by one: this file is lost anyway)."""
    raw = offset.view(pa.binary())
    for row in range(len(raw)):
        try:
            raw[row].as_py().decode("utf-8")
        except UnicodeDecodeError:
            block, record = _block_of(row, records)
            raise CorruptBlock(
                first_block + block, ValueError(f"record {record}: Offset is not UTF-8")
            ) from None
    raise AssertionError("Arrow refused an Offset column that decodes")  # pragma: no cover


def _block_of(row: int, records: np.ndarray) -> tuple[int, int]:
    """(block index, record number in it counting from 1) of a row counted across blocks."""
    block = int(np.searchsorted(np.cumsum(records), row, side="right"))
    return block, row - int(records[:block].sum()) + 1


def _inflate(codec: str, data: bytes) -> bytes:
    """A block's bytes, inflated in one bounded step: never more than ``MAX_BLOCK_BYTES``."""
    if codec == "null":
        return data
    if codec != "deflate":
        raise ValueError(f"unsupported codec {codec}")
    inflater = _inflater.decompressobj(-15)
    inflated = inflater.decompress(data, MAX_BLOCK_BYTES + 1)
    if len(inflated) > MAX_BLOCK_BYTES:
        raise ValueError(f"block inflates past the {MAX_BLOCK_BYTES >> 20} MiB limit")
    if not inflater.eof:
        raise ValueError("truncated deflate stream")
    # Bytes after the stream's end are not records: fastavro leaves 3 bytes of zlib's checksum there.
    return bytes(inflated)


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
