"""Decoding every landing format into parsed chunks."""

from __future__ import annotations

import datetime as dt
import gzip
import io
from pathlib import Path

import orjson
import polars as pl
import pytest

from shared.contracts import USER_ACTIVITY
from shared.dev.generator import (
    capture_record,
    clean_events,
    to_csv,
    to_ndjson,
    to_parquet_stream_analytics,
    write_capture,
)
from shared.errors import QuarantinedFile
from shared.pipeline.decode import concat, decode, partition_of, probe

ENQUEUED = dt.datetime(2026, 11, 21, 10, 0, 0, tzinfo=dt.UTC)


def decoded(
    data: bytes, name: str = "ns/eh/3/2026/11/21/10/00/00.avro", chunk_rows: int = 1000
) -> pl.DataFrame:
    return concat(decode(io.BytesIO(data), name, USER_ACTIVITY, chunk_rows=chunk_rows))


def capture(bodies: list[bytes | None], **kwargs: str) -> bytes:
    records = [
        capture_record(body, sequence_number=i, offset=i * 100, enqueued=ENQUEUED + dt.timedelta(seconds=i))
        for i, body in enumerate(bodies)
    ]
    return write_capture(records, **kwargs)  # type: ignore[arg-type]


def test_real_capture_files_decode_with_lineage(real_world: Path) -> None:
    files = sorted((real_world / "capture").glob("*.avro"))
    assert files
    for path in files:
        data = path.read_bytes()
        frame = decoded(data, path.name)
        assert frame.height == probe(io.BytesIO(data), path.name).records > 0
        assert frame.get_column("_sequence_number").null_count() == 0
        assert frame.get_column("_enqueued_time").null_count() == 0
        # None of these carry user-activity fields: everything they hold is rescued, not lost.
        assert frame.get_column("_rescued_data").null_count() == 0
    billing = decoded(
        (real_world / "capture" / "metered-billing_p9--2022-12-09--16-50-12.avro").read_bytes(),
        "metered-billing_p9--2022-12-09--16-50-12.avro",
    )
    assert billing.get_column("_partition").to_list() == ["9"]
    assert billing.get_column("_enqueued_time").to_list() == [dt.datetime(2022, 12, 9, 16, 51, 25, 193000)]
    old = decoded((real_world / "capture" / "bluefrog_SampleData_05.avro").read_bytes(), "05.avro")
    # 2016-era files have no x-opt-enqueued-time: the .NET string is used, to the second.
    assert old.get_column("_enqueued_time").to_list() == [dt.datetime(2016, 11, 16, 16, 44, 11)]


@pytest.mark.parametrize("codec", ["null", "deflate"])
@pytest.mark.parametrize("variant", ["nullable", "classic"])
def test_every_body_form_decodes(codec: str, variant: str) -> None:
    events = clean_events(6, seed=1)
    bodies: list[bytes | None] = [
        orjson.dumps(events[0]),
        orjson.dumps(events[1], option=orjson.OPT_INDENT_2),
        orjson.dumps([events[2], events[3]]),
        orjson.dumps(events[4]) + b"\n" + orjson.dumps(events[5]) + b"\n",
        b'{"log_id": "broken"',
        b"42",
        b"\xff\xfe{}",
        None,
    ]
    frame = decoded(capture(bodies, codec=codec, properties_variant=variant))
    assert frame.get_column("log_id").to_list()[:6] == [e["log_id"] for e in events]
    assert frame.get_column("_malformed").to_list() == [False] * 6 + [True] * 4
    # Events of one array/NDJSON body share its lineage.
    assert frame.get_column("_sequence_number").to_list() == [0, 1, 2, 2, 3, 3, 4, 5, 6, 7]
    assert frame.get_column("_raw").to_list()[6] == '{"log_id": "broken"'
    assert frame.get_column("_partition").unique().to_list() == ["3"]


def test_values_keep_their_text_and_extras_are_rescued() -> None:
    body = orjson.dumps(
        {
            "log_id": "a",
            "watch_time_sec": 12.5,
            "event_time": 1763719200000,
            "device": None,
            "app_version": "5.2.1",
            "experiment": {"id": 7},
        }
    )
    row = decoded(capture([body])).row(0, named=True)
    assert row["watch_time_sec"] == "12.5"
    assert row["event_time"] == "1763719200000"
    assert row["device"] is None
    assert orjson.loads(row["_rescued_data"]) == {"app_version": "5.2.1", "experiment": {"id": 7}}


def test_chunks_are_bounded_and_rows_numbered_across_chunks() -> None:
    events = clean_events(50, seed=2)
    data = write_capture(
        [
            capture_record(orjson.dumps(e), sequence_number=i, offset=i, enqueued=ENQUEUED)
            for i, e in enumerate(events)
        ],
        sync_interval=200,
    )
    chunks = list(decode(io.BytesIO(data), "x.avro", USER_ACTIVITY, chunk_rows=10))
    assert len(chunks) > 2
    assert all(c.height < 30 for c in chunks)
    assert pl.concat(chunks).get_column("_row").to_list() == list(range(50))


def test_empty_capture_file_has_no_records() -> None:
    data = capture([])
    assert probe(io.BytesIO(data), "e.avro").records == 0
    assert decoded(data).height == 0
    assert probe(io.BytesIO(b""), "zero.avro").records == 0


def test_truncated_capture_file_is_quarantined_with_the_block() -> None:
    events = clean_events(200, seed=3)
    data = write_capture(
        [
            capture_record(orjson.dumps(e), sequence_number=i, offset=i, enqueued=ENQUEUED)
            for i, e in enumerate(events)
        ],
        sync_interval=2000,
    )
    cut = data[: len(data) * 2 // 3]
    with pytest.raises(QuarantinedFile, match=r"avro: truncated in block \d+ \(after block \d+\)"):
        probe(io.BytesIO(cut), "t.avro")
    with pytest.raises(QuarantinedFile, match=r"avro: truncated in block \d+"):
        decoded(cut)


def test_corrupt_sync_marker_is_named() -> None:
    events = clean_events(100, seed=4)
    data = bytearray(
        write_capture(
            [
                capture_record(orjson.dumps(e), sequence_number=i, offset=i, enqueued=ENQUEUED)
                for i, e in enumerate(events)
            ],
            sync_interval=1000,
        )
    )
    marker = bytes(data[-16:])
    second = data.find(marker, data.find(marker) + 16)  # end of the first data block
    data[second] ^= 0xFF
    with pytest.raises(QuarantinedFile, match=r"avro: bad sync marker after block 1"):
        probe(io.BytesIO(bytes(data)), "s.avro")


def test_unknown_format_is_quarantined() -> None:
    with pytest.raises(QuarantinedFile, match="not a known format"):
        probe(io.BytesIO(b"\x00\x01binary junk"), "x.bin")


def test_parquet_from_stream_analytics() -> None:
    events = clean_events(5, seed=5)
    data = to_parquet_stream_analytics(events, partition_id=2, enqueued=ENQUEUED)
    frame = decoded(data, "sa/2026/11/21/out.parquet")
    assert frame.get_column("log_id").to_list() == [e["log_id"] for e in events]
    assert frame.get_column("_partition").unique().to_list() == ["2"]
    assert frame.get_column("_enqueued_time").null_count() == 0
    assert frame.get_column("_rescued_data").null_count() == 5  # no unknown columns


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("kind", ["csv", "ndjson"])
def test_landing_text_files(kind: str, compressed: bool) -> None:
    events = clean_events(7, seed=6)
    data = to_csv(events, gzip=compressed) if kind == "csv" else to_ndjson(events, gzip=compressed)
    name = f"drop/2026-11-21.{'csv' if kind == 'csv' else 'ndjson'}" + (".gz" if compressed else "")
    assert probe(io.BytesIO(data), name).records == 7
    frame = decoded(data, name)
    assert frame.get_column("log_id").to_list() == [e["log_id"] for e in events]
    assert frame.get_column("_malformed").sum() == 0
    if compressed:
        assert gzip.decompress(data)


def test_partition_is_read_from_capture_layouts() -> None:
    assert partition_of("ns/hub/12/2026/11/21/10/05/00.avro") == "12"
    assert partition_of("ns/hub/p9--2022-12-09--16-50-12.avro") == "9"
    assert partition_of("daily.csv") is None
