"""Spark reads the contract's SQL as polars does, and hashes keys as polars-hash does."""

from __future__ import annotations

import polars as pl
import pytest
from pyspark.sql import functions as F

from databricks_jobs import sql
from databricks_jobs.schema import struct, to_arrow
from shared.contracts import USER_ACTIVITY
from shared.pipeline import keyindex
from shared.pipeline.validate import typed_columns

pytestmark = pytest.mark.spark

# Rows that tell the two dialects apart: whitespace Spark's TRIM keeps, control characters
# and dots that unescaped regex literals would misread, keys whose UTF-8 is multi-byte.
TRICKY = {
    "log_id": ["ok-1", "\t", "a\x00b", "a\x1fb", "a\x7fb", "x" * 65, "\u3000", "a.b", "é" * 64, None],
    "user_id": ["u", "\t", "\u00a0", "\u3000", "\u2028", "\x1c", " ", "", "u", "u"],
    "ip_address": [
        "1.2.3.4",
        "1x2x3x4",
        "999.1.1.1",
        "::1",
        "2001:db8::g1",
        "1.2.3",
        "::ffff:1.2.3.4",
        "1.2.3.4\n",
        "fe80::1%eth0",
        None,
    ],
    "event_time": [
        "2026-11-21T12:00:00Z",
        "2026-11-21 12:00:00Z",
        "2026-11-21T12:00:60Z",
        "1999-12-31T23:59:59Z",
        "1700000000000",
        "2026-11-21T12:00:00+0130",
        "yesterday",
        "2026-12-25T00:00:00Z",
        None,
        "",
    ],
    "watch_time_sec": ["1", "1d", "1f", "inf", "NaN", " 12 ", "-0.5", "86401", "1e3", None],
    "action": ["play", "PLAY", "pause", "seek", "stop", "complete", "resume", "rewind", None, "play "],
    "content_id": ["c", "\t", " ", "", None, "c", "c", "c", "c", "c"],
    "device": [None] * 10,
}


@pytest.fixture(scope="module")
def typed() -> pl.DataFrame:
    """The tricky rows typed as ``validate`` types them, with an enqueue time."""
    raw = pl.DataFrame(TRICKY, schema={k: pl.String for k in TRICKY}).with_columns(
        pl.lit("2026-11-21 12:00:00").str.to_datetime(time_unit="us").alias("_enqueued_time")
    )
    # Naive UTC, as ``validate`` has them (polars compares them with naive literals);
    # ``to_arrow`` gives Spark the same instants with the zone attached.
    return raw.with_columns(typed_columns(USER_ACTIVITY))


@pytest.mark.parametrize("expectation", USER_ACTIVITY.expectations, ids=lambda e: e.name)
def test_each_expectation_means_in_spark_what_it_means_in_polars(
    spark: object, typed: pl.DataFrame, expectation: object
) -> None:
    polars_says = (
        typed.select(pl.sql_expr(expectation.sql).fill_null(False).alias("ok")).get_column("ok").to_list()
    )  # type: ignore[attr-defined]
    schema = dict(typed.schema)
    frame = spark.createDataFrame(to_arrow(typed, schema), struct(schema))  # type: ignore[attr-defined]
    spark_says = [
        r.ok
        for r in frame.select(
            F.coalesce(F.expr(sql.for_spark(expectation.sql)), F.lit(False)).alias("ok")
        ).collect()  # type: ignore[attr-defined]
    ]
    assert spark_says == polars_says


def test_the_raw_contract_text_would_mean_something_else_in_spark(spark: object) -> None:
    """Why ``for_spark`` exists: unescaped, Spark reads ``[\\x00-\\x1f]`` as other characters."""
    rule = next(e for e in USER_ACTIVITY.expectations if e.name == "log_id_no_control_chars").sql
    frame = spark.createDataFrame([("1.2.3.4",), ("a\tb",)], "log_id string")  # type: ignore[attr-defined]
    raw = [r[0] for r in frame.select(F.expr(rule)).collect()]
    compiled = [r[0] for r in frame.select(F.expr(sql.for_spark(rule))).collect()]
    assert compiled == [True, False]
    assert raw != compiled


def test_polars_trim_strips_exactly_the_characters_for_spark_lists() -> None:
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    stripped = pl.Series(chars).str.strip_chars().to_list()
    assert "".join(c for c, s in zip(chars, stripped, strict=True) if s == "") == sql.POLARS_WHITESPACE


def test_spark_xxhash64_is_the_key_hash_polars_writes(spark: object) -> None:
    keys = [
        "",
        "a",
        "é",
        "日本語",
        "\x00",
        "a\x00b",
        "🎉",
        "ünï-cødé-🎉-0001",
        "x" * 1000,
        "log-0001",
        "\u2028",
    ]
    expected = pl.DataFrame({"log_id": keys}).select(keyindex.key_hash("log_id")).to_series().to_list()
    frame = spark.createDataFrame([(k,) for k in keys], "log_id string")  # type: ignore[attr-defined]
    from databricks_jobs.transforms import key_hash

    assert [r[0] for r in frame.select(key_hash(USER_ACTIVITY)).collect()] == expected
