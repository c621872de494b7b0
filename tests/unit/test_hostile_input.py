"""Files that lie: each case a hostile tester fed ``python -m shared ingest``, at the decode level.

Avro files whose framing or records lie run in a process of their own
(``tests.isolated``): before the bounds checks some killed the process (SIGSEGV), looped
forever or allocated by the declared count, and must fail their test, not pytest.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import re
import subprocess
import sys
import zlib
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from shared.contracts import USER_ACTIVITY
from shared.dev import generator
from shared.errors import QuarantinedFile
from shared.pipeline import capture, decode, geo
from shared.pipeline.validate import validate
from tests import crafted as c

ROOT = Path(__file__).resolve().parents[2]
PARSERS = ("fast", "straightforward")


def isolated(data: bytes, tmp_path: Path, name: str = c.NAME, timeout: float = 120) -> dict[str, Any]:
    """Probe and decode ``data`` in a child process; a crash or a hang fails here, with its cause."""
    path = tmp_path / "hostile.bin"
    path.write_bytes(data)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tests.isolated", str(path), name],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"decoding did not finish within {timeout} s (a loop the file controls)")
    assert done.returncode == 0, f"the decoder died (exit {done.returncode}): {done.stderr[-2000:]}"
    report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return report


def _quarantined(report: dict[str, Any], step: str, pattern: str) -> None:
    got = report[step]
    assert "quarantined" in got, f"{step}: {got}"
    assert re.search(pattern, got["quarantined"]), got


def _file(*records: bytes, order: tuple[str, ...] = c.CAPTURE_ORDER, **framing: Any) -> bytes:
    honest = [c.record(i, order=order) for i in range(1, 5)]
    return c.container([c.block([*records, *honest], **framing)], order=order)


LAYOUTS = {"scanned": c.CAPTURE_ORDER, "record-by-record": c.REORDERED}


def _decoded(data: bytes, name: str = c.NAME, parser: decode.Parser = "fast") -> pl.DataFrame:
    return decode.concat(decode.decode(io.BytesIO(data), name, USER_ACTIVITY, parser=parser))


# -- lengths and counts inside a record ------------------------------------------------------
@pytest.mark.parametrize("layout", LAYOUTS)
def test_an_offset_longer_than_its_block_is_quarantined_not_a_segfault(layout: str, tmp_path: Path) -> None:
    order = LAYOUTS[layout]
    lie = c.record(0, Offset=c.long(2**63 - 5) + b"12", order=order)
    report = isolated(_file(lie, order=order), tmp_path)
    for parser in PARSERS:
        _quarantined(report, parser, r"in block 1 \(after block 0\)")
    if layout == "scanned":
        assert report["fast"]["quarantined"] == (
            "avro: record 1: Offset claims more bytes than the block has left in block 1 (after block 0)"
        )


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("size", [2**63 - 3, -2], ids=["past-the-end", "back-onto-itself"])
def test_a_properties_block_whose_size_lies_is_quarantined(layout: str, size: int, tmp_path: Path) -> None:
    """Count -1 then a byte size: 2**63-3 overran the buffer; -2 pointed back at itself and
    the scan never ended. Now the size is never used (the block's item is read, and here
    it is the record's Body, which does not read as one)."""
    order = LAYOUTS[layout]
    lie = c.record(0, Properties=c.long(-1) + c.long(size) + b"\x00", order=order)
    report = isolated(_file(lie, order=order), tmp_path)
    for parser in PARSERS:
        _quarantined(report, parser, r"in block 1 \(after block 0\)")
    if layout == "scanned":
        _quarantined(report, "fast", r"^avro: record 1: Properties ")


_ITEM = c.text(b"tenant") + c.long(2) + c.text(b"contoso")
_TIME = c.text(b"x-opt-enqueued-time") + c.long(0) + c.long(c.ENQUEUED_MS)


@pytest.mark.parametrize(
    "field",
    [
        {"Properties": c.long(-1) + c.long(len(_ITEM)) + _ITEM + c.long(0)},
        # Fuzz finding (against cavro, which read other layouts for a while here): -101965688
        # entries in 0 bytes. cavro read entries where the scan skipped 0 bytes; Avro skips
        # a skipped block by its size, as the scan and fastavro do.
        {"Properties": c.long(-101965688) + c.long(0) + c.long(0)},
        # A block that is read needs no size: a wrong one is not used, by the scan or fastavro.
        {"SystemProperties": c.long(-1) + c.long(999) + _TIME + c.long(0)},
    ],
    ids=["properties-sized", "properties-empty-by-size", "system-properties-size-unused"],
)
def test_a_map_blocks_byte_size_means_what_avro_says(field: dict[str, bytes]) -> None:
    data = c.container([c.block([c.record(0, **field), c.record(1)])])
    fast, straightforward = (_decoded(data, parser=parser) for parser in PARSERS)
    assert_frame_equal(fast, straightforward)
    assert fast.get_column("log_id").to_list() == ["crafted-0", "crafted-1"]
    assert fast.get_column("_enqueued_time").null_count() == 0


def test_an_offset_that_is_not_utf8_is_quarantined_at_decode(tmp_path: Path) -> None:
    report = isolated(_file(c.record(0, Offset=c.text(b"\xff\xfe12"))), tmp_path)
    for parser in PARSERS:
        assert report[parser] == {
            "quarantined": "avro: record 1: Offset is not UTF-8 in block 1 (after block 0)"
        }


# -- a block's framing -----------------------------------------------------------------------
@pytest.mark.parametrize("count", [2**31, 2**40])
def test_a_block_count_beyond_its_bytes_is_refused_before_any_allocation(count: int, tmp_path: Path) -> None:
    report = isolated(_file(c.record(0), count=count), tmp_path)
    for step in ("probe", *PARSERS):
        _quarantined(
            report, step, rf"^avro: record count {count} cannot fit in the block's \d+ bytes in block 1"
        )


@pytest.mark.parametrize("size", [2**40, 2**63 - 1])
def test_a_block_size_past_the_bound_is_refused_before_reading(size: int, tmp_path: Path) -> None:
    report = isolated(_file(c.record(0), size=size), tmp_path)
    for step in ("probe", *PARSERS):
        _quarantined(
            report, step, rf"^avro: block size {size} is past the 64 MiB limit in block 1 \(after block 0\)"
        )


@pytest.mark.parametrize("count", [0, 4])
@pytest.mark.parametrize("codec", ["null", "deflate"])
def test_records_past_a_blocks_count_quarantine_the_file(count: int, codec: str, tmp_path: Path) -> None:
    """A block of 5 records claiming fewer: the rest used to vanish (count 0: the file ended EMPTY)."""
    data = c.container([c.block([c.record(i) for i in range(5)], count=count, codec=codec)], codec)  # type: ignore[arg-type]
    report = isolated(data, tmp_path)
    reason = "avro: bytes left over after the block's records in block 1 (after block 0)"
    for parser in PARSERS:
        assert report[parser] == {"quarantined": reason}
    if count == 0:  # the probe alone decides EMPTY, so it must see this too
        assert report["probe"] == {"quarantined": reason}


@cache
def _bomb() -> bytes:
    """About 0.5 MB whose one block (one record) inflates to 512 MiB."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    body_length = 512 << 20
    head = c.long(1) + c.text(b"0") + c.text(b"x") + b"\x00" + b"\x00" + c.long(1) + c.long(body_length)
    parts = [squeeze.compress(head)]
    zeros = bytes(1 << 20)
    parts += [squeeze.compress(zeros) for _ in range(body_length >> 20)]
    parts.append(squeeze.flush())
    compressed = b"".join(parts)
    return c.container([c.long(1) + c.long(len(compressed)) + compressed], "deflate")


def test_a_decompression_bomb_is_quarantined_within_the_block_bound(tmp_path: Path) -> None:
    data = _bomb()
    assert len(data) < 600_000
    report = isolated(data, tmp_path)
    reason = "avro: block inflates past the 64 MiB limit in block 1 (after block 0)"
    for parser in PARSERS:
        assert report[parser] == {"quarantined": reason}
    # The bound holds before the memory is spent: far below the 512 MiB the block claims.
    assert report["peak_mb"] < 3 * (capture.MAX_BLOCK_BYTES >> 20), report


def test_honest_files_still_decode_in_the_child(tmp_path: Path) -> None:
    report = isolated(_file(c.record(0)), tmp_path)
    assert report["probe"] == {"ok": 5}
    for parser in PARSERS:
        assert report[parser] == {"ok": {"rows": 5, "malformed": 0}}


# -- found by the fuzz campaign (tests/fuzz) -------------------------------------------------
def test_strings_the_pipeline_only_compares_may_hold_any_bytes_on_both_parsers() -> None:
    """Fuzz finding: a partition key that is not UTF-8 landed with the fast parser and
    quarantined the file with the straightforward one. Only the Offset is kept (it must be
    UTF-8); a SystemProperties key or value, or EnqueuedTimeUtc, is compared or parsed."""
    odd_system = b"".join([
        c.long(3),
        c.text(b"x-opt-enqueued-time"), c.long(0), c.long(c.ENQUEUED_MS),
        c.text(b"x-opt-partition-key"), c.long(2), c.text(b"d8\x96e8"),
        c.text(b"\xffkey"), c.long(2), c.text(b"v"),
        c.long(0),
    ])  # fmt: skip
    no_exact_time = c.long(1) + c.text(b"x-opt-partition-key") + c.long(2) + c.text(b"p") + c.long(0)
    records = [
        c.record(0, SystemProperties=odd_system),
        c.record(1, SystemProperties=no_exact_time, EnqueuedTimeUtc=c.text(b"11/21/2026 \xff:00:00 PM")),
        c.record(2),
    ]
    data = c.container([c.block(records)])
    fast, straightforward = (_decoded(data, parser=parser) for parser in PARSERS)
    assert_frame_equal(fast, straightforward)
    assert fast.get_column("log_id").to_list() == [f"crafted-{i}" for i in range(3)]
    enqueued = fast.get_column("_enqueued_time").to_list()
    assert enqueued[0] == c.ENQUEUED.replace(tzinfo=None) and enqueued[1] is None


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_writer_records_name_does_not_matter(layout: str) -> None:
    """Fuzz finding: a schema whose record is not named EventData landed with the fast
    parser and failed fastavro's resolution (Schema mismatch) with the straightforward one."""
    order = LAYOUTS[layout]
    blocks = c.block([c.record(i, order=order) for i in range(3)])
    data = c.header(order=order, name="Microsoft.ServiceBus.MessagiEvgenn.tData") + blocks + c.SYNC
    fast, straightforward = (_decoded(data, parser=parser) for parser in PARSERS)
    assert_frame_equal(fast, straightforward)
    assert fast.height == 3


@pytest.mark.parametrize("exact", [2**62, -(2**63), (2**63 - 1) // 1000 + 1])
def test_an_enqueued_time_no_timestamp_can_hold_falls_back_to_the_dotnet_string(exact: int) -> None:
    """Fuzz finding: an x-opt-enqueued-time past what microseconds in 64 bits hold made
    polars panic (PanicException, not even an Exception). It counts as absent."""
    system = c.long(1) + c.text(b"x-opt-enqueued-time") + c.long(0) + c.long(exact) + c.long(0)
    dotnet = c.text(b"11/21/2026 12:00:01 PM")
    data = c.container([c.block([c.record(0, SystemProperties=system, EnqueuedTimeUtc=dotnet), c.record(1)])])
    fast, straightforward = (_decoded(data, parser=parser) for parser in PARSERS)
    assert_frame_equal(fast, straightforward)
    assert fast.get_column("_enqueued_time").to_list() == [
        dt.datetime(2026, 11, 21, 12, 0, 1),
        (c.ENQUEUED + dt.timedelta(milliseconds=1)).replace(tzinfo=None),
    ]


def test_a_varint_longer_than_a_long_is_refused_by_the_scan() -> None:
    """Fuzz finding: 30 bytes of varint. The scan names it (fastavro, the straightforward
    parser's reader, reads it anyway: ``crafted.SCAN_ONLY``, the one refusal not shared)."""
    data = c.container([c.block([c.record(0, SequenceNumber=b"\x84" * 29 + b"\x00"), c.record(1)])])
    with pytest.raises(QuarantinedFile) as caught:
        _decoded(data)
    assert caught.value.reason == f"avro: record 1: SequenceNumber {c.SCAN_ONLY} in block 1 (after block 0)"


def test_a_schema_that_is_not_avro_is_refused_by_both_parsers() -> None:
    """Fuzz finding: a record schema with no name (``eame``) was scanned by the fast
    parser and refused by fastavro. Both read only valid Avro schemas now."""
    nameless = {("eame" if key == "name" else key): value for key, value in c.schema().items()}
    data = c.raw_header(json.dumps(nameless).encode()) + c.block([c.record(0)]) + c.SYNC
    for parser in PARSERS:
        with pytest.raises(QuarantinedFile, match=r": avro: not an Event Hubs Capture schema \("):
            _decoded(data, parser=parser)


def test_a_parquet_value_python_cannot_hold_quarantines_the_file() -> None:
    """Fuzz finding: a mutated Parquet file made polars panic turning rows into Python
    ("PyObject pointer is null"); a timestamp past year 9999 raised ValueError. pyarrow
    converts now, and what it cannot convert quarantines the file."""
    table = pa.table({"log_id": ["a", "b"], "event_time": pa.array([0, 2**62], pa.timestamp("us"))})
    out = io.BytesIO()
    pq.write_table(table, out)
    with pytest.raises(QuarantinedFile, match=r"^.*: parquet: .* after row 0$"):
        _decoded(out.getvalue(), "sa/2026/11/21/out.parquet")


def test_a_parquet_column_name_that_is_not_utf8_quarantines_the_file() -> None:
    """Fuzz finding: pyarrow raises UnicodeDecodeError opening such a file."""
    out = io.BytesIO()
    pq.write_table(pa.table({"log_id": ["a"], "device_X": ["ios"]}), out)
    data = out.getvalue().replace(b"device_X", b"device\xac\xac")
    for step in (
        lambda: decode.probe(io.BytesIO(data), "sa/out.parquet"),
        lambda: _decoded(data, "sa/out.parquet"),
    ):
        with pytest.raises(QuarantinedFile, match=r": parquet: .*utf-8"):
            step()


# -- numbers keep their text -----------------------------------------------------------------
@pytest.mark.parametrize("parser", PARSERS)
def test_integers_beyond_int64_keep_every_digit(parser: decode.Parser) -> None:
    bodies = [
        c.event(0, device=10**20),
        c.event(1, experiment=123456789012345678901234567890),
        c.event(2, log_id=123456789012345678901),
        c.event(3, log_id=123456789012345678902),
    ]
    frame = _decoded(
        c.container([c.block([c.record(i, body=b) for i, b in enumerate(bodies)])]), parser=parser
    )
    assert frame.get_column("device").to_list()[0] == "100000000000000000000"
    assert json.loads(frame.get_column("_rescued_data").to_list()[1]) == {
        "experiment": 123456789012345678901234567890
    }
    assert frame.get_column("_rescued_data").to_list()[1] == '{"experiment":123456789012345678901234567890}'
    assert frame.get_column("log_id").to_list()[2:] == ["123456789012345678901", "123456789012345678902"]
    checked = validate(frame, USER_ACTIVITY)
    assert checked.valid.get_column("log_id").n_unique() == 4  # nothing for dedupe to merge


def test_ndjson_landing_files_keep_number_text_too() -> None:
    data = b'{"log_id": 123456789012345678901, "watch_time_sec": 1.50, "extra": [1e400, -0]}\n'
    for parser in PARSERS:
        row = _decoded(data, "drop/day.ndjson", parser).row(0, named=True)  # type: ignore[arg-type]
        assert (row["log_id"], row["watch_time_sec"]) == ("123456789012345678901", "1.50")
        assert row["_rescued_data"] == '{"extra":[1e400,-0]}'


# -- geo does not depend on spelling ---------------------------------------------------------
def test_an_ipv4_address_has_one_country_however_it_is_spelt() -> None:
    spellings = ["8.8.8.8", "::ffff:8.8.8.8", "::ffff:808:808", "0:0:0:0:0:ffff:0808:0808", "::FFFF:8.8.8.8"]
    frame = geo.enrich(pl.DataFrame({"ip_address": spellings}))
    assert set(zip(frame.get_column("country"), frame.get_column("region"), strict=True)) == {
        ("US", "Americas")
    }
    assert {geo.country_of(ip) for ip in spellings} == {"US"}
    private = geo.enrich(pl.DataFrame({"ip_address": ["10.0.0.1", "::ffff:10.0.0.1", "::ffff:a00:1"]}))
    assert set(private.get_column("country")) == {"unknown"}


# -- CSV landing files: a bad row is one quarantine row; the rest lands ----------------------
EVENTS = generator.clean_events(6, seed=9)
GOOD = generator.to_csv(EVENTS).splitlines(keepends=True)


def _csv(*lines: bytes) -> bytes:
    return b"".join(lines)


def _landed(data: bytes) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    probe = decode.probe(io.BytesIO(data), "drop/day.csv").records
    frame = _decoded(data, "drop/day.csv")
    checked = validate(frame, USER_ACTIVITY)
    assert probe == frame.height == checked.valid.height + checked.quarantined.height
    return checked.valid, checked.quarantined, probe


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (GOOD[2].rstrip(b"\n") + b",surplus\n", "csv line 3: 9 fields where the header has 8"),
        (b"only,three,fields\n", "csv line 3: 3 fields where the header has 8"),
        (GOOD[2].replace(b"ios", b"caf\xe9").replace(b"android", b"caf\xe9"), "csv line 3: not UTF-8"),
        (b'"' + b"x" * 140_000 + b'",b,c,d,e,f,g,h\n', "csv line 3: not a CSV record (field larger"),
        (b"\x00\x01\x02" + bytes(range(0x80, 0xA0)) + b",\x7f\n", "csv line 3: not UTF-8"),
    ],
    ids=["too-many", "too-few", "latin-1", "oversized-cell", "binary"],
)
def test_a_malformed_csv_row_is_quarantined_and_the_rest_lands(bad: bytes, why: str) -> None:
    valid, quarantined, _ = _landed(_csv(*GOOD[:2], bad, *GOOD[3:]))
    assert valid.get_column("log_id").to_list() == [e["log_id"] for i, e in enumerate(EVENTS) if i != 1]
    (row,) = quarantined.iter_rows(named=True)
    assert row["failed_expectations"] == ["malformed_row"]
    assert row["reason"].startswith(f"malformed_row: {why}"), row["reason"]
    assert row["raw_payload"] == bad.rstrip(b"\n").decode("utf-8", "backslashreplace")


def test_cells_beginning_with_tab_or_cr_land_as_a_csv_reader_reads_them() -> None:
    """A TAB is part of its cell; a bare CR ends a line, as it does for ``newline=""``."""
    cells = GOOD[2].rstrip(b"\n").split(b",")
    tabbed = b"\t" + GOOD[1], b",".join([*cells[:3], b"\t" + cells[3], *cells[4:]]) + b"\n"
    frame = _decoded(_csv(GOOD[0], *tabbed, b"\r" + GOOD[3]), "drop/day.csv")
    assert frame.get_column("log_id").to_list() == [
        "\t" + EVENTS[0]["log_id"],
        EVENTS[1]["log_id"],
        EVENTS[2]["log_id"],
    ]
    assert frame.get_column("action").to_list() == [
        EVENTS[0]["action"],
        "\t" + EVENTS[1]["action"],
        EVENTS[2]["action"],
    ]
    assert not frame.get_column("_malformed").any()
    split = b",".join(cells[:3]) + b"\r" + b",".join(cells[3:]) + b"\n"  # a CR mid-line: two short rows
    _, quarantined, records = _landed(_csv(GOOD[0], split, GOOD[3]))
    assert records == 3
    assert quarantined.get_column("reason").to_list() == [
        "malformed_row: csv line 2: 3 fields where the header has 8",
        "malformed_row: csv line 2: 5 fields where the header has 8",
    ]


def test_a_valid_header_followed_by_binary_lands_nothing_but_counts_every_line() -> None:
    noise = bytes((i * 97 + 13) % 256 for i in range(4000))
    _, quarantined, records = _landed(GOOD[0] + noise)
    assert records == quarantined.height > 0
    assert set(quarantined.get_column("failed_expectations").explode()) == {"malformed_row"}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (GOOD[0].rstrip(b"\n") + b",log_id\n" + GOOD[1], "csv: the header names 'log_id' twice"),
        (bytes((i * 131 + 7) % 256 for i in range(3000)), "csv: not text"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200), "csv: not text"),
    ],
    ids=["duplicate-header", "random", "png"],
)
def test_a_csv_file_that_is_not_one_is_quarantined_whole(data: bytes, reason: str) -> None:
    for step in (
        lambda: decode.probe(io.BytesIO(data), "drop/day.csv"),
        lambda: _decoded(data, "drop/day.csv"),
    ):
        with pytest.raises(QuarantinedFile) as caught:
            step()
        assert caught.value.reason.startswith(reason)


# -- gzip ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["ndjson", "csv"])
def test_an_ordinary_gzipped_landing_file_is_detected(kind: str, tmp_path: Path) -> None:
    """``gzip.open(path, "wt")`` of a few hundred KB: detection used to inflate only 64 bytes."""
    events = generator.clean_events(6_000, seed=4)
    text = (generator.to_csv(events) if kind == "csv" else generator.to_ndjson(events)).decode()
    path = tmp_path / f"day.{kind}.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(text)
    assert path.stat().st_size > 100_000
    with path.open("rb") as fh:
        assert decode.probe(fh, str(path)).records == 6_000
    with path.open("rb") as fh:
        frame = decode.concat(decode.decode(fh, str(path), USER_ACTIVITY))
    assert frame.get_column("log_id").to_list() == [e["log_id"] for e in events]


def test_a_gzip_bomb_is_quarantined_past_its_ratio() -> None:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)
    line = b'{"log_id": "x"}\n' * 4096
    data = b"".join(squeeze.compress(line) for _ in range(4096)) + squeeze.flush()  # 256 MiB from ~0.3 MB
    with pytest.raises(QuarantinedFile, match="gzip: inflates past 256 times its size"):
        decode.probe(io.BytesIO(data), "drop/day.ndjson.gz")
