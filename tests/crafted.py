"""Capture files assembled byte by byte, to say what a hostile writer can: any count, any
length, any block size. The header and honest records come from the generator (fastavro);
only the lies are written by hand."""

from __future__ import annotations

import datetime as dt
import io
import json
import zlib
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

import fastavro

from shared.dev import generator

NAME = "ns/hub/3/2026/11/21/12/00/00.avro"
ENQUEUED = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)
ENQUEUED_MS = int(ENQUEUED.timestamp() * 1000)


def long(value: int) -> bytes:
    """Avro's zigzag varint of any 64-bit value."""
    n = ((value << 1) ^ (value >> 63)) & (2**64 - 1)
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def text(data: bytes, length: int | None = None) -> bytes:
    """An Avro string or bytes value; ``length`` is what the prefix claims."""
    return long(len(data) if length is None else length) + data


def event(i: int, **fields: object) -> bytes:
    """A valid user-activity body, with ``fields`` overriding the generator's."""
    base = generator.clean_events(1, seed=i)[0]
    return json.dumps({**base, "log_id": f"crafted-{i}", **fields}).encode()  # any integer, unlike orjson


#: Capture's own field order (the compiled scan reads it), and another one (fastavro reads it).
CAPTURE_ORDER = ("SequenceNumber", "Offset", "EnqueuedTimeUtc", "SystemProperties", "Properties", "Body")
REORDERED = ("Body", *CAPTURE_ORDER[:5])
SYNC = bytes(range(16))


@cache
def _fields() -> dict[str, dict[str, Any]]:
    """Capture's fields by name, as the generator writes them (Properties values nullable)."""
    written: Any = fastavro.reader(io.BytesIO(generator.write_capture([]))).writer_schema
    return {f["name"]: f for f in written["fields"]}


def schema(order: Sequence[str] = CAPTURE_ORDER, name: str = "EventData") -> dict[str, object]:
    return {"type": "record", "name": name, "fields": [_fields()[field] for field in order]}


def header(
    codec: generator.Codec = "null", order: Sequence[str] = CAPTURE_ORDER, name: str = "EventData"
) -> bytes:
    """A header-only file (schema, codec, sync marker): what Capture writes first."""
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(schema(order, name)), [], codec=codec, sync_marker=SYNC)
    return out.getvalue()


def raw_header(schema_json: bytes, codec: bytes = b"null") -> bytes:
    """A header written by hand, for a schema no Avro writer would accept."""
    meta = long(2) + text(b"avro.schema") + text(schema_json) + text(b"avro.codec") + text(codec) + long(0)
    return b"Obj\x01" + meta + SYNC


def record(
    i: int, *, body: bytes | None = None, order: Sequence[str] = CAPTURE_ORDER, **encoded: bytes
) -> bytes:
    """One Capture record's bytes. A field named in ``encoded`` (``Offset=``, ``Properties=``)
    is written as the bytes given, verbatim, so it can lie."""
    honest = generator.capture_record(
        event(i) if body is None else body,
        sequence_number=1000 + i,
        offset=100 * i,
        enqueued=ENQUEUED + dt.timedelta(milliseconds=i),
        partition_key=f"p-{i % 3}",
    )
    parts = {name: _encoded(_fields()[name]["type"], honest[name]) for name in order}  # type: ignore[literal-required]
    return b"".join(encoded.get(name, parts[name]) for name in order)


def _encoded(schema: object, value: object) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), value)
    return out.getvalue()


def block(records: Sequence[bytes], *, count: int | None = None, size: int | None = None, codec: str = "null",
          data: bytes | None = None) -> bytes:  # fmt: skip
    """One block's framing: count and size as claimed (true by default), data, no marker."""
    payload = b"".join(records) if data is None else data
    if codec == "deflate":
        payload = deflate(payload)
    return (
        long(len(records) if count is None else count)
        + long(len(payload) if size is None else size)
        + payload
    )


def deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(1, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def container(
    blocks: Iterable[bytes], codec: generator.Codec = "null", order: Sequence[str] = CAPTURE_ORDER
) -> bytes:
    """A whole file: header, then each block followed by the sync marker."""
    return header(codec, order) + b"".join(b + SYNC for b in blocks)


def honest(n: int, codec: generator.Codec = "null") -> bytes:
    """A file of ``n`` valid records in one block."""
    return container([block([record(i) for i in range(n)], codec=codec)], codec)


#: The one refusal the parsers do not share: the compiled scan refuses a varint longer
#: than a long's 10 bytes; fastavro, which the straightforward parser reads records with,
#: reads one anyway (with whatever value its wrapping 64-bit shifts leave).
SCAN_ONLY = "holds a varint longer than the 10 bytes of a long"
