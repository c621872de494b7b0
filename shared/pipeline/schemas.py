"""The columns of every table, derived from a contract: bronze, quarantine, silver and gold."""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from shared.contracts import Contract, GoldTable, Measure

KEY_HASH = "_key_hash"
SOURCE_VERSION = "_source_version"
UTC_MICROS = pl.Datetime("us", "UTC")

# Lineage every bronze, quarantine and silver row carries, in table order.
LINEAGE: dict[str, pl.DataType] = {
    "_batch_id": pl.String(),
    "_source": pl.String(),
    "_sequence_number": pl.Int64(),
    "_offset": pl.String(),
    "_enqueued_time": UTC_MICROS,
    "_partition": pl.String(),
    "_row": pl.Int64(),
    "_batch_time": UTC_MICROS,
}
_TYPES: dict[str, pl.DataType] = {"string": pl.String(), "timestamp": UTC_MICROS, "double": pl.Float64()}


def bronze(contract: Contract) -> dict[str, pl.DataType]:
    """Every field as the string received, unknown fields as JSON, lineage."""
    schema: dict[str, pl.DataType] = {name: pl.String() for name in contract.field_names}
    schema["_rescued_data"] = pl.String()
    return schema | LINEAGE


def quarantine() -> dict[str, pl.DataType]:
    """A rejected record: its raw text, the expectations it failed, lineage."""
    schema: dict[str, pl.DataType] = {
        "raw_payload": pl.String(),
        "failed_expectations": pl.List(pl.String()),
        "reason": pl.String(),
    }
    return schema | LINEAGE


def silver(contract: Contract) -> dict[str, pl.DataType]:
    """Typed fields, the partition date, geo, rescued data, lineage and the key hash."""
    schema: dict[str, pl.DataType] = {f.name: _TYPES[f.type] for f in contract.fields}
    schema[contract.partition_by] = pl.Date()
    if contract.geo_ip_field:
        schema["country"] = pl.String()
        schema["region"] = pl.String()
    schema["_rescued_data"] = pl.String()
    schema |= LINEAGE
    schema[KEY_HASH] = pl.Int64()  # the dedupe index silver carries: see keyindex
    return schema


def business_columns(contract: Contract) -> list[str]:
    """Silver's columns without lineage: what two runs over the same events must agree on."""
    return [c for c in silver(contract) if not c.startswith("_")]


def gold(table: GoldTable, contract: Contract) -> dict[str, pl.DataType]:
    """A gold table's keys, measures and the source version its distinct counts come from."""
    columns = silver(contract)
    schema: dict[str, pl.DataType] = {key: columns[key] for key in table.keys}
    for measure in table.measures:
        schema[measure.name] = _measure_type(measure, columns)
    schema[SOURCE_VERSION] = pl.Int64()
    return schema


def _measure_type(measure: Measure, columns: dict[str, pl.DataType]) -> pl.DataType:
    if measure.aggregate in ("count", "distinct"):
        return pl.Int64()
    assert measure.column is not None
    column = columns[measure.column]
    return pl.Float64() if measure.aggregate == "sum" else column


def arrow(schema: dict[str, pl.DataType]) -> pa.Schema:
    """The Arrow schema of a polars schema (what Delta tables are created with)."""
    return pl.DataFrame(schema=schema).to_arrow().schema
