"""Silver: dedupe by key (within the batch and against all of silver), type, enrich, insert.

Insert-when-not-matched on the key, done without a MERGE: delta-rs' MERGE reads every
file it may match, so its cost grows with silver. Here the batch's key hashes are
checked against silver's ``_key_hash`` column (``keyindex``) and only the new rows are
appended, streamed in chunks. Every silver commit also advances the ``silver-writer``
application transaction, so two writers whose checks raced conflict, and the loser
checks again against the winner's rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import polars as pl
import pyarrow as pa

from shared.batches import SILVER_WRITER, BatchState, Counts, Route, State, commit_id
from shared.contracts import CONTRACTS, Contract
from shared.errors import TransientError
from shared.layers.bronze import batch_time
from shared.layers.context import Context, Outcome
from shared.layers.tables import Tables
from shared.pipeline import keyindex, schemas, silver
from shared.pipeline.prefetch import prefetch
from shared.predicates import sql_in, sql_literal

log = logging.getLogger(__name__)


def batch_where(batch: BatchState, column: str | None = None, values: list[str] | None = None) -> str:
    """A file-pruning predicate for one batch's rows: its id, its time and (optionally) the
    ``column`` values it spans. The time matters once files are compacted: they span many
    (random) batch ids, but only the times of the batches compacted together."""
    where = [
        sql_in("_batch_id", [batch.batch_id]),
        f"_batch_time = {sql_literal(batch_time(batch).isoformat())}",
    ]
    if column and values:
        where.append(sql_in(column, values))
    return " AND ".join(where)


def work(ctx: Context, batch: BatchState) -> Outcome:
    contract = CONTRACTS[batch.dataset]
    tables = ctx.tables(batch.dataset)
    if batch.route is Route.DATABRICKS:
        return _from_spark(tables, contract, batch)
    rows = keyindex.BatchRows.of(tables.bronze.snapshot().scan(batch_where(batch)), batch.batch_id)
    keys = keyindex.index(rows, contract, keyindex.SCAN_ROWS)
    repeated = keyindex.repeats(rows, keys, contract)
    insert = _Insert(ctx, tables, contract, batch, rows, keys, repeated)
    version, inserted, dates = tables.silver.retrying(f"silver insert {batch.batch_id}", insert.attempt)
    rows_valid = batch.counts.rows_valid if batch.counts.rows_valid is not None else keys.rows
    counts = Counts(
        silver_inserted=inserted,
        duplicates_dropped=rows_valid - inserted,
        duplicates_in_batch=len(repeated),
        event_dates=tuple(dates),
    )
    return Outcome(State.SILVER_DONE, counts, versions={"silver": version})


def _from_spark(tables: Tables, contract: Contract, batch: BatchState) -> Outcome:
    """What the batch's Spark run inserted into silver, read from its commit and its rows."""
    app_id = commit_id("silver", batch.batch_id)
    commit = tables.silver.commit(app_id, in_metadata=True)
    if commit is None:  # a run that succeeded commits, possibly nothing: it has not, yet
        raise TransientError(
            f"silver of batch {batch.batch_id} ran on Databricks, but {app_id} is not in the lake yet"
        )
    part = contract.partition_by
    found = (
        tables.silver.snapshot()
        .scan(batch_where(batch))
        .filter(pl.col("_batch_id") == batch.batch_id)
        .select(part)
        .collect()
    )
    if commit.rows is not None and commit.rows != found.height:
        raise TransientError(f"silver commit {app_id} added {commit.rows} rows but {found.height} were found")
    inserted = found.height
    rows_valid = batch.counts.rows_valid if batch.counts.rows_valid is not None else inserted
    repeated = commit.figures.get("duplicates_in_batch")
    counts = Counts(
        silver_inserted=inserted,
        duplicates_dropped=rows_valid - inserted,
        duplicates_in_batch=None if repeated is None else int(repeated),
        event_dates=tuple(sorted(d.isoformat() for d in found.get_column(part).unique().to_list())),
    )
    return Outcome(State.SILVER_DONE, counts, versions={"silver": commit.version})


class _Insert:
    """One attempt at the checked append, repeated on a fresh snapshot when it loses a race."""

    def __init__(
        self,
        ctx: Context,
        tables: Tables,
        contract: Contract,
        batch: BatchState,
        rows: keyindex.BatchRows,
        keys: keyindex.BatchKeys,
        repeated: np.ndarray,
    ) -> None:
        self.ctx, self.tables, self.contract, self.batch = ctx, tables, contract, batch
        self.rows, self.repeated = rows, repeated
        self.total, self.touched = keys.rows, keys.dates
        self.keys: keyindex.BatchKeys | None = keys
        self.app_id = commit_id("silver", batch.batch_id)

    def attempt(self) -> tuple[int | None, int, list[str]]:
        """(version, rows inserted, dates written)."""
        part = self.contract.partition_by
        snapshot = self.tables.silver.snapshot()
        if snapshot.recorded(self.app_id):
            return self._recorded()
        if self.total == len(self.repeated):
            return None, 0, []
        if self.keys is None:  # freed by an attempt that lost a commit race
            self.keys = keyindex.index(self.rows, self.contract, keyindex.SCAN_ROWS)
        # Before the check reads silver: what it reads, and the log every open replays,
        # then stay bounded however many batches a partition has taken.
        if compacted := self.tables.silver.compact(part, self.touched):
            log.info("silver: compacted the small files of %s=%s", part, ",".join(compacted))
            snapshot = self.tables.silver.snapshot()
            if snapshot.recorded(self.app_id):  # a concurrent writer's insert landed meanwhile
                return self._recorded()
        held = keyindex.held(snapshot.scan(), self.rows, self.keys, self.repeated, self.contract)
        dropped = np.union1d(self.repeated, held)
        self.keys = None  # 8 bytes a row the write below does not need
        written: set[str] = set()

        def typed() -> Iterator[pl.DataFrame]:
            for chunk in self.rows.chunks(self.ctx.settings.chunk_rows, dropped):
                if chunk.height:
                    frame = silver.rows(chunk, self.contract)
                    written.update(d.isoformat() for d in frame.get_column(part).unique().to_list())
                    yield frame

        def batches() -> Iterator[pa.RecordBatch]:
            for frame in prefetch(typed()):
                yield from frame.to_arrow().to_batches()

        schema = schemas.arrow(schemas.silver(self.contract))
        writer = snapshot.transaction(SILVER_WRITER) or 0
        commit = snapshot.append(
            pa.RecordBatchReader.from_batches(schema, batches()),
            self.app_id,
            {"batch_time": batch_time(self.batch)},
            advance={SILVER_WRITER: writer + 1},
        )
        return commit.version, self.total - len(dropped), sorted(written)

    def _recorded(self) -> tuple[int | None, int, list[str]]:
        """What this batch's silver commit, found in the lake, inserted and where."""
        part = self.contract.partition_by
        snapshot = self.tables.silver.snapshot()
        found = (
            snapshot.scan(batch_where(self.batch, part, self.touched))
            .filter(pl.col("_batch_id") == self.batch.batch_id)
            .select(part)
            .collect()
        )
        commit = self.tables.silver.commit(self.app_id)
        assert commit is not None
        if commit.rows is not None and commit.rows != found.height:
            raise TransientError(
                f"silver commit {self.app_id} added {commit.rows} rows but {found.height} were found "
                "by batch id, time and date"
            )
        dates = sorted(d.isoformat() for d in found.get_column(part).unique().to_list())
        return commit.version, found.height, dates
