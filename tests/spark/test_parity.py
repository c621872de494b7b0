"""The Spark route and the in-function route agree row for row on a defect-laden day.

Both routes take the same files in the same order: the polars pure functions (decode,
validate, keyindex, silver rows, gold from scratch) and the Spark job with the local Delta
adapter. Quarantine rows and their reasons, bronze, silver and gold must be identical.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import orjson
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from shared.contracts import USER_ACTIVITY
from shared.dev import generator
from shared.pipeline import gold
from tests.spark.routes import Landed, PolarsRoute, ordered, spark_ingest, table

pytestmark = [pytest.mark.spark, pytest.mark.slow]

NEXT_DAY = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def redeliveries(earlier: list[generator.Event]) -> bytes:
    """A Capture file of the next day holding what the generator never makes: the same
    log_ids again under another event date, a log_id twice inside one array body (the
    first element must win), NDJSON repeating an earlier record of the file, keys whose
    UTF-8 is multi-byte (the hash must agree), and events on a new date."""
    moved = [{**e, "event_time": _iso(NEXT_DAY)} for e in earlier[:3]]
    fresh = generator.clean_events(4, seed=99, start=NEXT_DAY)
    twin = [{**fresh[0], "watch_time_sec": 11.5}, {**fresh[0], "watch_time_sec": 99.0, "device": "tv"}]
    odd_key = {**fresh[1], "log_id": "ünï-cødé-🎉-0001"}
    bodies = [
        *(orjson.dumps(e) for e in moved),  # other date, same log_id: duplicates of silver rows
        orjson.dumps(earlier[3]),  # the same event again: a duplicate on the same date
        orjson.dumps(twin),  # one array, one log_id twice: the first wins
        orjson.dumps(odd_key) + b"\n" + orjson.dumps(moved[0]) + b"\n",  # NDJSON with a repeat
        orjson.dumps({**fresh[2], "extra": {"a": [1, 2]}}, option=orjson.OPT_INDENT_2),
        orjson.dumps(fresh[3]),
    ]
    records = [
        generator.capture_record(body, sequence_number=500 + i, offset=9000 + 100 * i, enqueued=NEXT_DAY)
        for i, body in enumerate(bodies)
    ]
    return generator.write_capture(records)


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> list[Landed]:
    """Three generated files (every defect kind, duplicates within and across files) and
    the redeliveries file, landed on disk in Capture's layout."""
    root = tmp_path_factory.mktemp("capture")
    files = [
        f
        for f in generator.generate_day(files=3, events_per_file=300, defect_rate=0.08, seed=7)
        if f.kind == "capture"
    ]
    landed = []
    for i, f in enumerate(files):
        path = root / f.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f.data)
        landed.append(Landed(f"batch-{i}", path))
    earlier = [e for e in map(_object, _bodies(landed[0].path)) if e is not None]
    extra = root / "tributary-ns/user-activity/2/2026/11/23/08/00/00.avro"
    extra.parent.mkdir(parents=True, exist_ok=True)
    extra.write_bytes(redeliveries(earlier))
    return [*landed, Landed("batch-3", extra)]


def _bodies(path: Path) -> list[bytes]:
    import fastavro

    with open(path, "rb") as fh:
        return [r["Body"] for r in fastavro.reader(fh)]  # type: ignore[index]


def _object(body: bytes) -> generator.Event | None:
    """A single-event body's event, if the body is one valid compact object."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) and b"\n" not in body and _valid(value) else None


def _valid(event: generator.Event) -> bool:
    from shared.pipeline import decode, validate

    parsed = decode.concat(decode.decode(_one(event), "x.ndjson", USER_ACTIVITY))
    return validate.validate(parsed, USER_ACTIVITY).valid.height == 1


def _one(event: generator.Event) -> object:
    import io

    return io.BytesIO(orjson.dumps(event) + b"\n")


@pytest.fixture(scope="module")
def routes(
    spark: object, day: list[Landed], tmp_path_factory: pytest.TempPathFactory
) -> tuple[PolarsRoute, Path]:
    lake = tmp_path_factory.mktemp("lake")
    polars_route = PolarsRoute()
    for batch in day:
        polars_route.ingest(batch)
        spark_ingest(spark, lake, batch)
    return polars_route, lake


def test_quarantine_rows_and_reasons_are_the_in_function_routes(routes: tuple[PolarsRoute, Path]) -> None:
    polars_route, lake = routes
    expected = ordered(pl.concat(polars_route.quarantine))
    got = ordered(table(lake, "quarantine"), expected.columns)
    assert expected.height > 20, "the day must carry rejects of many kinds"
    assert_frame_equal(got, expected)
    assert set(expected.get_column("reason")) == set(got.get_column("reason"))


def test_bronze_keeps_the_same_rows_as_received(routes: tuple[PolarsRoute, Path]) -> None:
    polars_route, lake = routes
    expected = ordered(pl.concat(polars_route.bronze))
    assert_frame_equal(ordered(table(lake, "bronze"), expected.columns), expected)


def test_silver_rows_are_identical_with_first_wins_and_global_dedupe(
    routes: tuple[PolarsRoute, Path],
) -> None:
    polars_route, lake = routes
    expected = ordered(polars_route.silver)
    got = ordered(table(lake, "silver"), expected.columns)
    assert_frame_equal(got, expected)
    # What the redeliveries file was built to show, checked on the Spark route's silver:
    assert got.get_column("log_id").is_unique().all()
    twin = got.filter(pl.col("_batch_id") == "batch-3", pl.col("watch_time_sec").is_in([11.5, 99.0]))
    assert twin.get_column("watch_time_sec").to_list() == [11.5], "the first element of the array wins"
    assert got.filter(pl.col("log_id") == "ünï-cødé-🎉-0001").height == 1
    assert got.get_column("event_date").n_unique() >= 2


def test_gold_rows_are_the_contracts_aggregates_of_the_same_silver(routes: tuple[PolarsRoute, Path]) -> None:
    polars_route, lake = routes
    for table_def in gold.tables(USER_ACTIVITY):
        expected = polars_route.gold()[table_def.name]
        got = table(lake, f"gold.{table_def.name}").select(expected.columns)
        keys = list(table_def.keys)
        # Sums of doubles in another order can differ in the last bit; everything else is exact.
        assert_frame_equal(got.sort(keys), expected.sort(keys), check_exact=False, rel_tol=1e-12)
