"""Pure Spark transforms, ``DataFrame -> DataFrame``, compiled from the dataset's contract.

The same text the polars route compiles decides here too: each expectation's SQL (through
``sql.for_spark``), the key and its first-wins order, ``_key_hash`` (Spark's ``xxhash64``
is XXH64 with seed 42, what ``polars-hash`` computes), silver's partition date, and the
gold tables declared in the contract (``shared.pipeline.gold`` plans companions and MERGE
updates for both engines). Parsing, typing and geo are the project's Python, per
partition (``partitions``). Nothing here reads or writes a table (``lake`` does).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from databricks_jobs import partitions, sql
from databricks_jobs.schema import INDEX, SPLIT, SUB, struct
from shared.contracts import Contract, GoldTable, Measure
from shared.pipeline import gold, schemas
from shared.pipeline.validate import MALFORMED_BODY

FAILED = "_failed"
VALID = "_valid"


@dataclass(frozen=True, slots=True)
class Stamp:
    """What every row of a batch carries: its batch, its file and the batch's time."""

    batch_id: str
    source: str
    batch_time: datetime


# -- parsing and numbering ---------------------------------------------------------------------
def parsed(records: DataFrame, contract: Contract, kind: partitions.Kind, **options: Any) -> DataFrame:
    """Records -> the typed parsed frame (the project's parser, per partition).

    ``options`` go to ``partitions.parse`` (``partition`` of a Capture file, ``header`` of a CSV).
    """
    parse = functools.partial(partitions.parse, dataset=contract.dataset, kind=kind, **options)
    return records.mapInArrow(parse, struct(partitions.parsed_schema(contract.dataset)))


def numbered(rows: DataFrame, kind: partitions.Kind, lines: DataFrame | None = None) -> DataFrame:
    """Give each row its record's number in the file (``_row``), as ``decode`` counts.

    A split's records come after every record of the splits before it; ``_row`` counts
    from 0 (Capture, Parquet, NDJSON's non-blank lines) or 1 (CSV's rows after the header).
    ``lines`` (NDJSON: ``_split`` and ``lines``) gives each line its 1-based number.
    """
    before = _records_before(rows.groupBy(SPLIT).agg((F.max(INDEX) + 1).alias("_n")))
    out = rows.join(F.broadcast(before), SPLIT).withColumn(
        "_row", F.col("_before") + F.col(INDEX) + F.lit(1 if kind == "csv" else 0)
    )
    if kind in ("structured", "csv"):
        out = out.withColumn("_sequence_number", F.col("_row"))
    elif kind == "lines":
        assert lines is not None
        line_before = _records_before(lines.select(SPLIT, F.col("lines").alias("_n"))).withColumnRenamed(
            "_before", "_lines_before"
        )
        out = out.join(F.broadcast(line_before), SPLIT).withColumn(
            "_sequence_number", F.col("_lines_before") + F.col("_sequence_number") + 1
        )
    return out.drop("_before", "_lines_before")


def _records_before(counts: DataFrame) -> DataFrame:
    """Per split, how many records the earlier splits hold (one row a split: tiny)."""
    earlier = Window.orderBy(SPLIT).rowsBetween(Window.unboundedPreceding, -1)
    return counts.select(SPLIT, F.coalesce(F.sum("_n").over(earlier), F.lit(0)).alias("_before"))


# -- bronze and quarantine ---------------------------------------------------------------------
def checked(rows: DataFrame, contract: Contract) -> DataFrame:
    """Evaluate every expectation: ``_failed`` names those a row fails, ``_valid`` says none.

    A NULL result fails, as in polars; a malformed body fails ``malformed_body`` alone.
    """
    misses = [
        F.when(~F.coalesce(F.expr(sql.for_spark(e.sql)), F.lit(False)), F.lit(e.name))
        for e in contract.expectations
    ]
    named = F.filter(F.array(*misses), lambda name: name.isNotNull())
    failed = F.when(F.col("_malformed"), F.array(F.lit(MALFORMED_BODY))).otherwise(named)
    return rows.withColumn(FAILED, failed).withColumn(VALID, F.size(FAILED) == 0)


def bronze(rows: DataFrame, contract: Contract, stamp: Stamp) -> DataFrame:
    """The valid rows as bronze keeps them: every field the string it arrived as."""
    typed = {f.name for f in contract.fields if f.type != "string"}
    received = {
        name: F.col(f"_raw_{name}") if name in typed else F.col(name) for name in contract.field_names
    }
    return _stamped(rows.where(VALID), schemas.bronze(contract), stamp, received)


def quarantine(rows: DataFrame, stamp: Stamp) -> DataFrame:
    """The rejected rows: raw text, every expectation failed, the reason, lineage."""
    columns = {
        "raw_payload": F.col("_raw"),
        "failed_expectations": F.col(FAILED),
        "reason": F.array_join(FAILED, ","),
    }
    return _stamped(rows.where(~F.col(VALID)), schemas.quarantine(), stamp, columns)


def _stamped(
    rows: DataFrame, columns: Mapping[str, object], stamp: Stamp, given: Mapping[str, Column]
) -> DataFrame:
    stamps = {
        "_batch_id": F.lit(stamp.batch_id),
        "_source": F.lit(stamp.source),
        "_batch_time": F.lit(stamp.batch_time).cast("timestamp"),
    }
    picked = {**stamps, **given}
    return rows.select(*[(picked[c] if c in picked else F.col(c)).alias(c) for c in columns])


# -- silver ------------------------------------------------------------------------------------
def first_wins(rows: DataFrame, contract: Contract) -> DataFrame:
    """One row per key: the first in file order (record, then event within the record)."""
    first = Window.partitionBy(*contract.key).orderBy("_row", SUB)
    return rows.withColumn("_rank", F.row_number().over(first)).where("_rank = 1").drop("_rank")


def key_hash(contract: Contract) -> Column:
    """``_key_hash``: XXH64, seed 42, of the key's UTF-8 bytes (Spark's fixed seed)."""
    return F.xxhash64(*contract.key).alias(schemas.KEY_HASH)


def unseen(rows: DataFrame, held: DataFrame, contract: Contract) -> DataFrame:
    """The rows whose key silver does not hold, under any date (``held``: silver's keys)."""
    on = [schemas.KEY_HASH, *contract.key]
    return rows.withColumn(schemas.KEY_HASH, key_hash(contract)).join(held.select(*on), on, "left_anti")


def silver(rows: DataFrame, contract: Contract, stamp: Stamp) -> DataFrame:
    """Typed, dated and geo-enriched silver rows, in silver's columns.

    The fields were typed when parsed, with the rules ``validate`` applies; the date is the
    UTC date of the partition source (the session time zone is UTC).
    """
    out = rows.withColumns(
        {
            contract.partition_by: F.to_date(contract.partition_source),
            schemas.KEY_HASH: key_hash(contract),
        }
    )
    columns = schemas.silver(contract)
    if contract.geo_ip_field:
        plain = {c: t for c, t in columns.items() if c not in ("country", "region")}
        out = _stamped(out, plain, stamp, {})
        enrich = functools.partial(partitions.enrich, ip_column=contract.geo_ip_field)
        geo_columns = {**plain, "country": columns["country"], "region": columns["region"]}
        out = out.mapInArrow(enrich, struct(geo_columns))
    return _stamped(out, columns, stamp, {})


# -- gold --------------------------------------------------------------------------------------
def aggregate(table: GoldTable, rows: DataFrame) -> DataFrame:
    """The additive measures of ``rows`` per key, as ``gold.aggregate`` computes them."""
    return rows.groupBy(*table.keys).agg(*[_measure(m) for m in gold.additive(table)])


def _measure(measure: Measure) -> Column:
    if measure.aggregate == "count":
        return F.count(F.lit(1)).cast("long").alias(measure.name)
    column = F.col(measure.column or "")
    if measure.aggregate == "sum":
        return F.sum(column.cast("double")).alias(measure.name)
    if measure.aggregate == "min":
        return F.min(column).alias(measure.name)
    if measure.aggregate == "max":
        return F.max(column).alias(measure.name)
    raise ValueError(f"{measure.name}: {measure.aggregate} is not additive")


def distinct_counts(table: GoldTable, measure: Measure, held: DataFrame, touched: DataFrame) -> DataFrame:
    """``measure`` per touched key, counted from the companion table's rows ``held``."""
    keys = list(table.keys)
    return (
        held.join(touched.select(*keys), keys, "left_semi")
        .groupBy(*keys)
        .agg(F.count(F.lit(1)).cast("long").alias(measure.name))
    )


def conformed(rows: DataFrame, table: GoldTable, contract: Contract, source_version: int) -> DataFrame:
    """A batch's gold rows in the table's columns, stamped with the version they came from."""
    columns = schemas.gold(table, contract)
    stamped = rows.withColumn(schemas.SOURCE_VERSION, F.lit(source_version).cast("long"))
    spark_types = struct(columns)
    return stamped.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in spark_types.fields])
