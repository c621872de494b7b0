"""Parquet, CSV and NDJSON landing files: the Spark route's bronze and quarantine rows are
the in-function route's, numbering included (rows across splits, lines with blanks)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from shared.dev import generator
from tests.spark.routes import Landed, PolarsRoute, ordered, spark_ingest, table

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def events() -> list[generator.Event]:
    """Clean events with a few rule breakers and unknown fields mixed in."""
    out = generator.clean_events(600, seed=5)
    out[3]["watch_time_sec"] = "12 sec"
    out[7]["event_time"] = "2026-11-21 12:00:00Z"
    out[11]["user_id"] = "\t"
    out[13]["log_id"] = out[12]["log_id"]
    out[17]["app_version"] = "5.2.1"
    return out


def ndjson() -> bytes:
    lines = [orjson.dumps(e) for e in events()]
    lines[20] = b'{"log_id": "broken'  # malformed
    lines[21] = b"[1, 2]"  # not an object
    lines.insert(30, b"")  # blank lines count as lines, not records
    lines.insert(31, b"   ")
    return b"\r\n".join(lines[:300]) + b"\n" + b"\n".join(lines[300:]) + b"\n"


FILES = {
    "parquet": lambda: generator.to_parquet_stream_analytics(
        [e for e in events() if not isinstance(e.get("watch_time_sec"), str)],
        partition_id=3,
        enqueued=dt.datetime(2026, 11, 21, 12, 1, tzinfo=dt.UTC),
    ),
    "csv": lambda: generator.to_csv(events()),
    "ndjson": ndjson,
}


@pytest.mark.parametrize("fmt", sorted(FILES))
def test_bronze_and_quarantine_match_the_in_function_route(spark: Any, fmt: str, tmp_path: Path) -> None:
    path = tmp_path / f"landing/file.{'jsonl' if fmt == 'ndjson' else fmt}"
    path.parent.mkdir(parents=True)
    path.write_bytes(FILES[fmt]())
    batch = Landed(f"landing-{fmt}", path, fmt)
    polars_route = PolarsRoute()
    polars_route.ingest(batch)
    spark_ingest(spark, tmp_path / "lake", batch, layers_run="bronze")
    expected_bronze = ordered(pl.concat(polars_route.bronze))
    assert expected_bronze.height > 500
    assert_frame_equal(ordered(table(tmp_path / "lake", "bronze"), expected_bronze.columns), expected_bronze)
    expected_rejects = ordered(pl.concat(polars_route.quarantine))
    assert expected_rejects.height >= 2
    assert_frame_equal(
        ordered(table(tmp_path / "lake", "quarantine"), expected_rejects.columns), expected_rejects
    )
