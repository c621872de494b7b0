"""Gold, compiled from the contract's ``GoldTable`` declarations: aggregates and how they fold.

A batch's silver rows are aggregated per gold key, and the result folds into the
existing gold row: sums and counts add, minima and maxima compare. That is exact for
every measure but ``distinct``, which cannot be added; a distinct measure is counted
instead from its companion table (events per keys and the distinct column), itself
additive, at a recorded version: a count from an older snapshot never replaces a newer.
"""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl

from shared.contracts import Contract, GoldTable, Measure
from shared.pipeline.schemas import SOURCE_VERSION


def companion(measure: Measure, table: GoldTable) -> GoldTable:
    """The additive table a ``distinct`` measure is counted from: events per keys and column."""
    assert measure.aggregate == "distinct" and measure.column and measure.via
    return GoldTable(measure.via, (*table.keys, measure.column), (Measure("events", "count"),))


def tables(contract: Contract) -> tuple[GoldTable, ...]:
    """Every gold table the contract declares, each preceded by the companions it counts from."""
    out: list[GoldTable] = []
    for table in contract.gold:
        out.extend(companion(m, table) for m in table.measures if m.aggregate == "distinct")
        out.append(table)
    return tuple(out)


def inputs(contract: Contract) -> tuple[str, ...]:
    """The silver columns gold reads."""
    return tuple(dict.fromkeys(column for table in contract.gold for column in table.inputs))


def additive(table: GoldTable) -> tuple[Measure, ...]:
    return tuple(m for m in table.measures if m.aggregate != "distinct")


def distinct(table: GoldTable) -> tuple[Measure, ...]:
    return tuple(m for m in table.measures if m.aggregate == "distinct")


def aggregate(table: GoldTable, rows: pl.LazyFrame) -> pl.LazyFrame:
    """The additive measures of ``rows`` per key (``distinct`` measures are counted apart)."""
    return rows.group_by(*table.keys).agg(_expression(m) for m in additive(table))


def finer(table: GoldTable, computed: dict[str, tuple[GoldTable, pl.DataFrame]]) -> pl.DataFrame | None:
    """An aggregate already computed that ``table`` rolls up from, if there is one.

    One can serve when its keys include ``table``'s and it has each of ``table``'s
    additive measures (same aggregate of the same column): sums and counts then add up,
    minima and maxima compare, so re-reading the rows is not needed.
    """
    wanted = {(m.aggregate, m.column) for m in additive(table)}
    for other, frame in computed.values():
        have = {(m.aggregate, m.column): m.name for m in additive(other)}
        if set(table.keys) <= set(other.keys) and wanted <= set(have) and not distinct(table):
            renamed = {have[(m.aggregate, m.column)]: m.name for m in additive(table)}
            return frame.rename(renamed)
    return None


def rollup(table: GoldTable, finer_rows: pl.DataFrame) -> pl.LazyFrame:
    """``table``'s aggregate from a finer one's (see ``finer``)."""
    folds = {"sum": pl.Expr.sum, "count": pl.Expr.sum, "min": pl.Expr.min, "max": pl.Expr.max}
    return (
        finer_rows.lazy()
        .group_by(*table.keys)
        .agg(
            folds[m.aggregate](pl.col(m.name)).cast(finer_rows.schema[m.name]).alias(m.name)
            for m in additive(table)
        )
    )


def counted(table: GoldTable) -> str | None:
    """The name of ``table``'s row count measure, if it has one."""
    return next((m.name for m in table.measures if m.aggregate == "count"), None)


def _expression(measure: Measure) -> pl.Expr:
    if measure.aggregate == "count":
        return pl.len().cast(pl.Int64).alias(measure.name)
    column = pl.col(measure.column or "")
    if measure.aggregate == "sum":
        return column.cast(pl.Float64).sum().alias(measure.name)
    if measure.aggregate == "min":
        return column.min().alias(measure.name)
    if measure.aggregate == "max":
        return column.max().alias(measure.name)
    raise ValueError(f"{measure.name}: {measure.aggregate} is not additive")


def distinct_counts(
    table: GoldTable, measure: Measure, held: pl.LazyFrame, touched: pl.DataFrame
) -> pl.LazyFrame:
    """``measure`` per touched key, counted from the companion table's rows ``held``."""
    keys = list(table.keys)
    return (
        held.join(touched.select(keys).lazy(), on=keys, how="semi")
        .group_by(keys)
        .agg(pl.len().cast(pl.Int64).alias(measure.name))
    )


def updates(table: GoldTable) -> dict[str, str]:
    """The MERGE update expressions that fold a batch's row ``s`` into the gold row ``t``."""
    out: dict[str, str] = {}
    for m in table.measures:
        if m.aggregate in ("sum", "count"):
            out[m.name] = f"t.{m.name} + s.{m.name}"
        elif m.aggregate == "min":
            out[m.name] = f"CASE WHEN s.{m.name} < t.{m.name} THEN s.{m.name} ELSE t.{m.name} END"
        elif m.aggregate == "max":
            out[m.name] = f"CASE WHEN s.{m.name} > t.{m.name} THEN s.{m.name} ELSE t.{m.name} END"
        else:  # a count from a newer snapshot of the companion replaces an older one
            out[m.name] = (
                f"CASE WHEN s.{SOURCE_VERSION} >= t.{SOURCE_VERSION} THEN s.{m.name} ELSE t.{m.name} END"
            )
    v = SOURCE_VERSION
    out[v] = f"CASE WHEN s.{v} > t.{v} THEN s.{v} ELSE t.{v} END"
    return out


def from_scratch(contract: Contract, silver: pl.DataFrame) -> Iterator[tuple[str, pl.DataFrame]]:
    """Every gold table computed over all of silver: the reference incremental gold must equal.

    Measures only (no ``_source_version``), keys first, in each table's declared order.
    """
    for table in tables(contract):
        rows = aggregate(table, silver.lazy())
        for measure in distinct(table):
            counted = (
                silver.lazy()
                .group_by(*table.keys)
                .agg(pl.col(measure.column or "").n_unique().cast(pl.Int64).alias(measure.name))
            )
            rows = rows.join(counted, on=list(table.keys))
        order = [*table.keys, *(m.name for m in table.measures)]
        yield table.name, rows.select(order).collect()
