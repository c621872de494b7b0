"""Gold: fold the rows this batch inserted into silver into every gold table.

Each table takes the batch's aggregate for the keys it touched and merges it (sums and
counts add, first and last take the extreme), one commit per table and batch, so each
batch counts exactly once and the cost follows the batch's keys, not silver's size. A
distinct count is taken from its companion table at the version just merged into.
"""

from __future__ import annotations

from functools import partial

import polars as pl

from shared.adapters.lake import Commit, Table
from shared.batches import BatchState, Route, State, commit_id
from shared.contracts import CONTRACTS, GoldTable
from shared.errors import TransientError
from shared.layers.context import Context, Outcome
from shared.layers.silver import batch_where
from shared.layers.tables import Tables
from shared.pipeline import gold, schemas


def work(ctx: Context, batch: BatchState) -> Outcome:
    contract = CONTRACTS[batch.dataset]
    tables = ctx.tables(batch.dataset)
    dates = list(batch.counts.event_dates or ())
    if not dates:
        return Outcome(State.GOLD_DONE)
    if batch.route is Route.DATABRICKS:
        return _from_spark(tables, batch)
    snapshot = tables.silver.snapshot()
    inserted = (
        snapshot.scan(batch_where(batch, contract.partition_by, dates))
        .filter(pl.col("_batch_id") == batch.batch_id)
        .select(list(gold.inputs(contract)))
    )
    aggregates = _aggregates(tables, inserted)
    _check(aggregates, inserted, batch)
    versions: dict[str, int | None] = {}
    for name, (table, handle) in tables.gold.items():
        rows = aggregates[name][1]
        if rows.is_empty():
            continue
        app_id = commit_id(f"gold.{name}", batch.batch_id)
        if gold.distinct(table):
            counted = partial(_merge_counted, tables, table, rows, app_id)
            commit = handle.retrying(f"gold {name} {batch.batch_id}", counted)
        else:
            source = rows.with_columns(pl.lit(snapshot.version, pl.Int64).alias(schemas.SOURCE_VERSION))
            commit = handle.merge_once(
                _conform(source, table, tables), table.keys, gold.updates(table), app_id
            )
        versions[f"gold.{name}"] = commit.version
    return Outcome(State.GOLD_DONE, versions=versions)


def _from_spark(tables: Tables, batch: BatchState) -> Outcome:
    """The gold commits the batch's Spark run made: one per table, each found by its id."""
    versions: dict[str, int | None] = {}
    for name, (_, handle) in tables.gold.items():
        app_id = commit_id(f"gold.{name}", batch.batch_id)
        commit = handle.commit(app_id, in_metadata=True)
        if commit is None:
            raise TransientError(
                f"gold of batch {batch.batch_id} ran on Databricks, but {app_id} is not in the lake yet"
            )
        versions[f"gold.{name}"] = commit.version
    return Outcome(State.GOLD_DONE, versions=versions)


def _aggregates(tables: Tables, inserted: pl.LazyFrame) -> dict[str, tuple[GoldTable, pl.DataFrame]]:
    """Each table's aggregate of the batch, rolled up from a finer one where one serves.

    Streamed, one table at a time: each holds a hash table of its keys, not the rows.
    """
    done: dict[str, tuple[GoldTable, pl.DataFrame]] = {}
    for name, (table, _) in tables.gold.items():
        finer = gold.finer(table, done)
        query = gold.rollup(table, finer) if finer is not None else gold.aggregate(table, inserted)
        done[name] = (table, query.collect(engine="streaming"))
    return done


def _check(
    aggregates: dict[str, tuple[GoldTable, pl.DataFrame]], inserted: pl.LazyFrame, batch: BatchState
) -> None:
    """The rows read must be the rows silver inserted, or nothing is merged: a pruning
    mistake would otherwise fold part of a batch into gold."""
    expected = int(batch.counts.silver_inserted or 0)
    read: int | None = None
    for table, rows in aggregates.values():
        if (count := gold.counted(table)) is not None:
            read = int(rows.get_column(count).sum()) if rows.height else 0
            break
    if read is None:
        read = int(inserted.select(pl.len()).collect().item())
    if read != expected:
        raise TransientError(
            f"gold read {read} rows of batch {batch.batch_id} from silver, but silver inserted {expected}"
        )


def _merge_counted(tables: Tables, table: GoldTable, rows: pl.DataFrame, app_id: str) -> Commit:
    """Merge a table with distinct measures, each counted from its companion at one version."""
    handle: Table = tables.gold[table.name][1]
    # The check and the merge share one snapshot: delta-rs refuses a commit whose application
    # transaction a concurrent commit set, not one already in the snapshot it merges into.
    target = handle.snapshot()
    if target.recorded(app_id):
        found = handle.commit(app_id)
        assert found is not None
        return found
    source_version = 0
    for measure in gold.distinct(table):
        assert measure.via is not None
        companion = tables.gold[measure.via][1].snapshot()
        rows = rows.join(
            gold.distinct_counts(table, measure, companion.scan(), rows).collect(), on=list(table.keys)
        )
        source_version = max(source_version, companion.version)
    source = rows.with_columns(pl.lit(source_version, pl.Int64).alias(schemas.SOURCE_VERSION))
    return target.merge(_conform(source, table, tables), table.keys, gold.updates(table), app_id, {})


def _conform(frame: pl.DataFrame, table: GoldTable, tables: Tables) -> pl.DataFrame:
    return frame.select(pl.col(c).cast(t) for c, t in schemas.gold(table, tables.contract).items())
