"""The compiled Capture scan: fastavro's values for every record and layout, failures named."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any

import fastavro
import orjson
import polars as pl
import polars_hash as plh
import pytest
from polars.testing import assert_frame_equal

from shared.contracts import USER_ACTIVITY
from shared.dev import generator
from shared.errors import QuarantinedFile
from shared.pipeline import capture, decode, keyindex

ENQUEUED = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)
NAME = "ns/hub/3/2026/11/21/12/00/00.avro"
MAP = {"type": "map", "values": ["long", "double", "string", "bytes"]}


def _schema(fields: list[tuple[str, Any]]) -> dict[str, Any]:
    return {"type": "record", "name": "EventData", "fields": [{"name": n, "type": t} for n, t in fields]}


CAPTURE_FIELDS = [
    ("SequenceNumber", "long"),
    ("Offset", "string"),
    ("EnqueuedTimeUtc", "string"),
    ("SystemProperties", MAP),
    ("Properties", {"type": "map", "values": ["long", "double", "string", "bytes", "null"]}),
    ("Body", ["null", "bytes"]),
]


def _records(n: int) -> list[dict[str, Any]]:
    events = generator.clean_events(n, seed=5)
    return [
        generator.capture_record(
            orjson.dumps(e),
            sequence_number=10_000 + i,
            offset=512 * i,
            enqueued=ENQUEUED + dt.timedelta(milliseconds=13 * i),
            partition_key=f"u-{i % 5}",
            properties={"n": i, "s": "x" * (i % 3)},
        )
        for i, e in enumerate(events)
    ]


def _write(schema: dict[str, Any], records: list[dict[str, Any]], codec: str = "deflate") -> bytes:
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(schema), records, codec=codec, sync_interval=3_000)
    return out.getvalue()


def _scan(data: bytes, chunk_rows: int = 1_000) -> list[capture.Columns]:
    fh = io.BytesIO(data)
    header = capture.read_header(fh)
    shape = capture.layout(header.schema)
    assert shape is not None
    return list(capture.chunks(fh, header, shape, chunk_rows))


def _same_frames(data: bytes, chunk_rows: int = 300) -> pl.DataFrame:
    fast = decode.concat(decode.decode(io.BytesIO(data), NAME, USER_ACTIVITY, chunk_rows=chunk_rows))
    slow = decode.concat(
        decode.decode(io.BytesIO(data), NAME, USER_ACTIVITY, chunk_rows=chunk_rows, parser="straightforward")
    )
    assert_frame_equal(fast, slow)
    return fast


@pytest.mark.parametrize("codec", ["deflate", "null"])
def test_scan_gives_fastavros_values_for_every_record(codec: str) -> None:
    records = _records(2_000)
    records[7]["Body"] = None
    data = _write(_schema(CAPTURE_FIELDS), records, codec)
    chunks = _scan(data, chunk_rows=700)
    assert [len(c.body) for c in chunks][:2] == [len(chunks[0].body)] * 2  # whole blocks, >= 700
    assert all(len(c.body) >= 700 for c in chunks[:-1])
    expected = list(fastavro.reader(io.BytesIO(data)))
    got = {
        "body": [b for c in chunks for b in c.body.to_pylist()],
        "sequence": [s for c in chunks for s in c.sequence_number.to_pylist()],
        "offset": [o for c in chunks for o in c.offset.to_pylist()],
        "enqueued": [e for c in chunks for e in c.enqueued_ms.to_pylist()],
    }
    assert got["body"] == [r["Body"] for r in expected]
    assert got["sequence"] == [r["SequenceNumber"] for r in expected]
    assert got["offset"] == [r["Offset"] for r in expected]
    assert got["enqueued"] == [r["SystemProperties"]["x-opt-enqueued-time"] for r in expected]


def test_real_capture_files_scan_as_fastavro_reads_them(real_world: Path) -> None:
    files = sorted(real_world.rglob("*.avro"))
    assert files
    for path in files:
        data = path.read_bytes()
        header = capture.read_header(io.BytesIO(data))
        if capture.layout(header.schema) is None or not data:
            continue
        expected = list(fastavro.reader(io.BytesIO(data)))
        chunks = _scan(data)
        assert [b for c in chunks for b in c.body.to_pylist()] == [r["Body"] for r in expected], path
        assert [s for c in chunks for s in c.sequence_number.to_pylist()] == [
            r["SequenceNumber"] for r in expected
        ]


def test_only_capture_s_own_layout_is_scanned() -> None:
    assert capture.layout(_schema(CAPTURE_FIELDS)) is not None
    plain_body = capture.layout(_schema([*CAPTURE_FIELDS[:5], ("Body", "bytes")]))
    assert plain_body is not None and plain_body.body_null == -1
    reordered = [CAPTURE_FIELDS[5], *CAPTURE_FIELDS[:5]]
    assert capture.layout(_schema(reordered)) is None
    nested = [
        *CAPTURE_FIELDS[:3],
        ("SystemProperties", {"type": "map", "values": {"type": "array", "items": "long"}}),
    ]
    assert capture.layout(_schema([*nested, *CAPTURE_FIELDS[4:]])) is None


def test_other_layouts_decode_record_by_record_identically() -> None:
    records = _records(900)
    reordered = [CAPTURE_FIELDS[5], *CAPTURE_FIELDS[:5]]
    _same_frames(_write(_schema(reordered), records))
    plain_body = _same_frames(_write(_schema([*CAPTURE_FIELDS[:5], ("Body", "bytes")]), records))
    assert plain_body.height == 900


def test_missing_enqueued_time_falls_back_to_the_dotnet_string() -> None:
    records = _records(50)
    for r in records[10:20]:
        r["SystemProperties"] = {"x-opt-partition-key": "p"}
        r["EnqueuedTimeUtc"] = "11/21/2026 1:02:03 PM"
    frame = _same_frames(_write(_schema(CAPTURE_FIELDS), records), chunk_rows=16)
    enqueued = frame.get_column("_enqueued_time").to_list()
    assert enqueued[10:20] == [dt.datetime(2026, 11, 21, 13, 2, 3)] * 10
    assert enqueued[0] == ENQUEUED.replace(tzinfo=None)


def test_a_block_that_does_not_inflate_is_quarantined_by_decode_with_its_number() -> None:
    data = bytearray(_write(_schema(CAPTURE_FIELDS), _records(600)))
    fh = io.BytesIO(bytes(data))
    header = capture.read_header(fh)
    spans = []
    for _ in range(2):
        start = fh.tell()
        count, size = capture._varint(fh), capture._varint(fh)
        assert count and size
        spans.append((fh.tell(), size))
        fh.seek(fh.tell() + size + 16)
        assert start < fh.tell()
    at, size = spans[1]
    data[at : at + size] = b"\xff" * size  # block 2 no longer inflates
    records = decode.probe(io.BytesIO(bytes(data)), NAME).records  # framing alone is intact
    assert records == 600
    with pytest.raises(QuarantinedFile, match=r"avro: .* in block 2 \(after block 1\)"):
        decode.concat(decode.decode(io.BytesIO(bytes(data)), NAME, USER_ACTIVITY))
    assert header.codec == "deflate"


def test_key_hash_is_xxh64_with_sparks_seed() -> None:
    # XXH64 reference vectors (seed 0), then the pinned seed-42 values silver stores:
    # a library that changed them would silently break deduplication against old rows.
    frame = pl.DataFrame({"k": ["", "a", "abc"]})
    assert frame.select(plh.col("k").nchash.xxhash64()).to_series().to_list() == [
        0xEF46DB3751D8E999,
        0xD24EC4F1A98C6E5B,
        0x44BC2CF5AD770999,
    ]
    assert frame.select(keyindex.key_hash("k")).to_series().to_list() == [
        -7444071767201028348,
        -8582455328737087284,
        1423657621850124518,
    ]
