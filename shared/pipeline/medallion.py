"""Pure polars transforms between layers: bronze rows -> silver rows -> gold aggregates.

No I/O here; ``shared.steps`` reads and commits the tables around these functions.
"""

from __future__ import annotations

import polars as pl

from shared.contracts import Contract
from shared.pipeline import geo
from shared.pipeline.keyindex import KEY_HASH, key_hash
from shared.pipeline.validate import typed_columns

BATCH_COLUMNS = ("_batch_id", "_source", "_batch_time")
# Bronze and silver lineage columns, in table order.
LINEAGE_COLUMNS = (
    "_batch_id",
    "_source",
    "_sequence_number",
    "_offset",
    "_enqueued_time",
    "_partition",
    "_row",
    "_batch_time",
)


def bronze_schema(contract: Contract) -> dict[str, pl.DataType]:
    """Bronze columns: every field as the string received, rescued data, lineage."""
    schema: dict[str, pl.DataType] = {name: pl.String() for name in contract.field_names}
    schema["_rescued_data"] = pl.String()
    schema.update(_lineage_schema())
    return schema


def quarantine_schema() -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {
        "raw_payload": pl.String(),
        "failed_expectations": pl.List(pl.String()),
        "reason": pl.String(),
    }
    schema.update(_lineage_schema())
    return schema


def _lineage_schema() -> dict[str, pl.DataType]:
    return {
        "_batch_id": pl.String(),
        "_source": pl.String(),
        "_sequence_number": pl.Int64(),
        "_offset": pl.String(),
        "_enqueued_time": pl.Datetime("us", "UTC"),
        "_partition": pl.String(),
        "_row": pl.Int64(),
        "_batch_time": pl.Datetime("us", "UTC"),
    }


def with_batch(
    frame: pl.DataFrame, schema: dict[str, pl.DataType], *, batch_id: str, source: str, batch_time: object
) -> pl.DataFrame:
    """Stamp a chunk with its batch and conform it to a table schema."""
    stamped = frame.with_columns(
        pl.lit(batch_id).alias("_batch_id"),
        pl.lit(source).alias("_source"),
        pl.lit(batch_time).cast(pl.Datetime("us", "UTC")).alias("_batch_time"),
        pl.col("_enqueued_time").dt.replace_time_zone("UTC"),
    )
    return stamped.select(pl.col(name).cast(dtype) for name, dtype in schema.items())


def silver_rows(bronze: pl.DataFrame, contract: Contract) -> pl.DataFrame:
    """Typed, enriched silver rows for bronze rows already deduplicated (``keyindex``)."""
    raw_copies = [f"_raw_{f.name}" for f in contract.fields if f.type != "string"]
    source = contract.partition_source
    rows = (
        bronze.with_columns(typed_columns(contract))
        .drop(raw_copies)
        .with_columns(
            pl.col(source).dt.replace_time_zone("UTC"),
            pl.col(source).dt.date().alias(contract.partition_by),
            key_hash(contract.key[0]),
        )
    )
    if contract.geo_ip_field:
        rows = geo.enrich(rows, contract.geo_ip_field)
    return rows.select(list(silver_schema(contract)))


def silver_schema(contract: Contract) -> dict[str, pl.DataType]:
    types: dict[str, pl.DataType] = {
        "string": pl.String(),
        "timestamp": pl.Datetime("us", "UTC"),
        "double": pl.Float64(),
    }
    schema: dict[str, pl.DataType] = {f.name: types[f.type] for f in contract.fields}
    schema[contract.partition_by] = pl.Date()
    if contract.geo_ip_field:
        schema["country"] = pl.String()
        schema["region"] = pl.String()
    schema["_rescued_data"] = pl.String()
    schema.update(_lineage_schema())
    # The dedupe index silver carries: see shared.pipeline.keyindex.
    schema[KEY_HASH] = pl.Int64()
    return schema


def business_columns(contract: Contract) -> list[str]:
    """Silver's columns without lineage: what two runs over the same events must agree on."""
    return [c for c in silver_schema(contract) if not c.startswith("_")]


# -- gold: user activity -------------------------------------------------------------------
GOLD_TABLES = ("user_watch_time", "daily_user_watch_time", "region_daily_watch_time")
GOLD_KEYS: dict[str, tuple[str, ...]] = {
    "user_watch_time": ("user_id",),
    "daily_user_watch_time": ("event_date", "user_id"),
    "region_daily_watch_time": ("event_date", "region"),
    "daily_region_users": ("event_date", "region", "user_id"),
}
# Events per (date, region, user): what distinct users per region and day are counted from.
REGION_USERS = "daily_region_users"
# The silver columns gold reads.
GOLD_INPUT = ("event_date", "user_id", "region", "watch_time_sec", "event_time")


def _add(column: str) -> str:
    return f"t.{column} + s.{column}"


def _least(column: str) -> str:
    return f"CASE WHEN s.{column} < t.{column} THEN s.{column} ELSE t.{column} END"


def _greatest(column: str) -> str:
    return f"CASE WHEN s.{column} > t.{column} THEN s.{column} ELSE t.{column} END"


_TOTALS = {
    "total_watch_sec": _add("total_watch_sec"),
    "events": _add("events"),
    "first_event_time": _least("first_event_time"),
    "last_event_time": _greatest("last_event_time"),
    "_source_version": _greatest("_source_version"),
}
# How a batch's aggregate folds into an existing gold row (MERGE update expressions).
GOLD_UPDATES: dict[str, dict[str, str]] = {
    "user_watch_time": _TOTALS,
    "daily_user_watch_time": _TOTALS,
    "daily_region_users": {"events": _add("events"), "_source_version": _greatest("_source_version")},
    "region_daily_watch_time": {
        "total_watch_sec": _add("total_watch_sec"),
        "events": _add("events"),
        # A count from a newer snapshot of daily_region_users replaces an older one.
        "users": "CASE WHEN s._source_version >= t._source_version THEN s.users ELSE t.users END",
        "_source_version": _greatest("_source_version"),
    },
}


_TS = pl.Datetime("us", "UTC")
GOLD_SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "user_watch_time": {
        "user_id": pl.String(),
        "total_watch_sec": pl.Float64(),
        "events": pl.Int64(),
        "first_event_time": _TS,
        "last_event_time": _TS,
        "_source_version": pl.Int64(),
    },
    "daily_user_watch_time": {
        "event_date": pl.Date(),
        "user_id": pl.String(),
        "total_watch_sec": pl.Float64(),
        "events": pl.Int64(),
        "first_event_time": _TS,
        "last_event_time": _TS,
        "_source_version": pl.Int64(),
    },
    "region_daily_watch_time": {
        "event_date": pl.Date(),
        "region": pl.String(),
        "total_watch_sec": pl.Float64(),
        "events": pl.Int64(),
        "users": pl.Int64(),
        "_source_version": pl.Int64(),
    },
    "daily_region_users": {
        "event_date": pl.Date(),
        "region": pl.String(),
        "user_id": pl.String(),
        "events": pl.Int64(),
        "_source_version": pl.Int64(),
    },
}


def daily_user_watch_time(silver: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Per event date and user: watch seconds, events, first and last event time."""
    return (
        silver.lazy()
        .group_by("event_date", "user_id")
        .agg(
            pl.col("watch_time_sec").sum().alias("total_watch_sec"),
            pl.len().cast(pl.Int64).alias("events"),
            pl.col("event_time").min().alias("first_event_time"),
            pl.col("event_time").max().alias("last_event_time"),
        )
    )


def user_watch_time(daily: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Per user over all time, rolled up from the daily per-user aggregate."""
    return (
        daily.lazy()
        .group_by("user_id")
        .agg(
            pl.col("total_watch_sec").sum(),
            pl.col("events").sum().cast(pl.Int64),
            pl.col("first_event_time").min(),
            pl.col("last_event_time").max(),
        )
    )


def region_daily_watch_time(silver: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Per event date and region: watch seconds, events and distinct users."""
    return (
        silver.lazy()
        .group_by("event_date", "region")
        .agg(
            pl.col("watch_time_sec").sum().alias("total_watch_sec"),
            pl.len().cast(pl.Int64).alias("events"),
            pl.col("user_id").n_unique().cast(pl.Int64).alias("users"),
        )
    )


def region_user_events(silver: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Per event date, region and user: events (the basis of distinct users per region)."""
    return (
        silver.lazy().group_by("event_date", "region", "user_id").agg(pl.len().cast(pl.Int64).alias("events"))
    )


def gold_from_scratch(silver: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Every gold table computed over all of silver: the reference gold must equal."""
    daily = daily_user_watch_time(silver).collect()
    return {
        "user_watch_time": user_watch_time(daily).collect(),
        "daily_user_watch_time": daily,
        "region_daily_watch_time": region_daily_watch_time(silver).collect(),
        REGION_USERS: region_user_events(silver).collect(),
    }
