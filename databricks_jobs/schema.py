"""Spark and Arrow types for the project's table schemas (``shared.pipeline.schemas``).

The tables' columns are declared once, as polars types derived from the contract; the
Spark jobs write the same tables, so their schemas are translated from those, never
restated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl
import pyarrow as pa
from pyspark.sql import types as T

#: Columns the per-partition parse adds for the Spark route only, never written to a table:
#: the file split a record was read in, the record's index in that split, and the event's
#: index within its record (an array or NDJSON body carries several).
SPLIT, INDEX, SUB = "_split", "_i", "_sub"


def spark_type(dtype: Any) -> T.DataType:
    """The Spark type of a polars column type used by the project's tables.

    Raises:
        TypeError: the type has no counterpart here.
    """
    if dtype == pl.String:
        return T.StringType()
    if dtype == pl.Int64:
        return T.LongType()
    if dtype == pl.Float64:
        return T.DoubleType()
    if dtype == pl.Boolean:
        return T.BooleanType()
    if dtype == pl.Date:
        return T.DateType()
    if dtype == pl.Binary:
        return T.BinaryType()
    if isinstance(dtype, pl.Datetime):
        return T.TimestampType()  # every timestamp is UTC; the jobs' session time zone is UTC
    if isinstance(dtype, pl.List):
        return T.ArrayType(spark_type(dtype.inner), containsNull=True)
    raise TypeError(f"no Spark type for {dtype}")


def arrow_type(dtype: Any) -> pa.DataType:
    """The Arrow type Spark exchanges for a column of this polars type (``mapInArrow``)."""
    if dtype == pl.String:
        return pa.string()
    if dtype == pl.Binary:
        return pa.binary()
    if isinstance(dtype, pl.Datetime):
        return pa.timestamp("us", tz="UTC")
    if isinstance(dtype, pl.List):
        return pa.list_(arrow_type(dtype.inner))
    return pl.DataFrame(schema={"c": dtype}).to_arrow().schema.field("c").type


def struct(schema: Mapping[str, pl.DataType]) -> T.StructType:
    """A Spark schema with the columns, order and types of a polars schema."""
    return T.StructType([T.StructField(name, spark_type(dtype), True) for name, dtype in schema.items()])


def arrow(schema: Mapping[str, pl.DataType]) -> pa.Schema:
    return pa.schema([pa.field(name, arrow_type(dtype)) for name, dtype in schema.items()])


def to_arrow(frame: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> pa.Table:
    """``frame``'s columns of ``schema``, as the Arrow types Spark reads back exactly.

    Naive timestamps are UTC (the parsed frame's convention) and get the zone attached.
    """
    columns = []
    for name, dtype in schema.items():
        column = frame.get_column(name)
        if isinstance(dtype, pl.Datetime):
            if getattr(column.dtype, "time_zone", None) is None:
                column = column.dt.replace_time_zone("UTC")
            column = column.dt.convert_time_zone("UTC").cast(pl.Datetime("us", "UTC"))
        columns.append(column)
    return pl.DataFrame(columns).to_arrow().cast(arrow(schema))
