"""The silver step this report recommends for ``shared/steps.py``, measurable side by side.

``shared/steps.py`` belongs to the medallion core; this subclass changes only its silver
step, so the benchmark can measure the proposal before it is ported:

1. The batch's bronze rows come from exactly the files its bronze commit added, found
   through the Delta log's per-file statistics (``_batch_id`` min = max = the batch),
   instead of filtering a scan of all of bronze.
2. Nothing holds the batch. Pass 1 streams three columns into a key index of 28 bytes a
   row (64-bit hash of ``log_id``, ``_row``, scan position, event date); sorting the
   hashes finds repeated keys, which are settled on the real ``log_id`` (first by
   ``_row``, then position). The touched silver partitions' keys are hashed the same way
   and hits are checked on the real keys. Pass 2 streams the rows again, keeps the new
   ones through a bitmap over scan positions, types and enriches them chunk by chunk and
   appends them in one streamed commit, instead of a MERGE over the whole batch.

Rows, counts and state transitions equal the core step's (checked on days with
in-file and re-sent duplicates, array bodies and every defect kind). What MERGE gave for
free and an append does not: a conflict with a concurrent silver writer of the same
dates. The README says how to keep that guarantee (one silver writer per dataset).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from shared.contracts import CONTRACTS
from shared.pipeline import medallion
from shared.pipeline.validate import parse_timestamp
from shared.steps import BatchRef, Pipeline, _elapsed, table_name

_SEED = 20261121  # any fixed seed: both sides of every comparison hash in one process
# pyarrow reads ahead 16 batches and 4 files by default: hundreds of MB on wide rows.
_STREAM: dict[str, Any] = {"batch_readahead": 1, "fragment_readahead": 1}


class ProposedPipeline(Pipeline):
    """``Pipeline`` with the proposed silver step."""

    def batch_files(self, table: str, batch_id: str) -> list[str]:
        """Files whose ``_batch_id`` statistics say they hold only ``batch_id``'s rows."""
        dt = self.lake.open(table)
        assert dt is not None
        actions = pa.table(dt.get_add_actions(flatten=True))
        mine = pc.and_(
            pc.equal(actions["min._batch_id"], batch_id), pc.equal(actions["max._batch_id"], batch_id)
        )
        root = self.lake.uri(table)
        return [f"{root}/{path}" for path in actions.filter(mine)["path"].to_pylist()]

    def silver(self, ref: BatchRef) -> dict[str, Any]:
        batch, done = self._start(ref, "SILVER_DONE")
        if done:
            return self._result(batch)
        started = time.perf_counter()
        contract = CONTRACTS[ref.dataset]
        silver = table_name("silver", contract)
        app_id = f"silver:{ref.batch_id}"
        part, key = contract.partition_by, contract.key[0]
        bronze = ds.dataset(self.batch_files(table_name("bronze", contract), ref.batch_id), format="parquet")
        step = self.settings.chunk_rows
        # Pass 1: a compact key index, 28 bytes a row: hash of the key, _row, position in
        # the scan (rows of one array body share _row), event date.
        index = pl.concat(
            [
                chunk.select(
                    pl.col(key).hash(_SEED).alias("_h"),
                    "_row",
                    "_pos",
                    parse_timestamp(pl.col(contract.partition_source)).dt.date().alias(part),
                )
                for chunk in _scan(bronze, [key, contract.partition_source, "_row"], step * 4)
            ]
            or [pl.DataFrame(schema={"_h": pl.UInt64, "_row": pl.Int64, "_pos": pl.Int64, part: pl.Date})]
        )
        winners = _first_occurrences(bronze, index, key, step)
        dates = sorted(d.isoformat() for d in winners.get_column(part).unique().drop_nulls().to_list())
        dt = self.lake.open(silver)
        assert dt is not None
        version: int | None
        if dt.transaction_version(app_id) is not None:
            version = self.lake.commit_version(silver, app_id)
            inserted = self._batch_rows(silver, ref.batch_id, dates=dates or None).height
        elif winners.is_empty():
            version, inserted = None, 0
        else:
            new_rows = _not_in_silver(dt, bronze, winners, dates, part, key, step)
            # A bitmap over scan positions: pass 2 keeps a row in O(1) and one byte a row.
            wanted = np.zeros(index.height, dtype=bool)
            wanted[new_rows.get_column("_pos").to_numpy()] = True
            schema = medallion.silver_schema(contract)

            def rows() -> Iterator[pa.RecordBatch]:
                for chunk in _scan(bronze, None, step):
                    start = int(chunk.get_column("_pos")[0])
                    keep = chunk.filter(pl.Series(wanted[start : start + chunk.height])).drop("_pos")
                    if keep.height:
                        typed, _ = medallion.silver_rows(keep, contract)
                        yield from typed.to_arrow().to_batches()

            arrow_schema = pl.DataFrame(schema=schema).to_arrow().schema
            reader = pa.RecordBatchReader.from_batches(arrow_schema, rows())
            version = self.lake.append(
                silver, reader, app_id=app_id, partition_by=[part]
            ) or self.lake.commit_version(silver, app_id)
            inserted = new_rows.height
        rows_valid = int(batch.counts.get("rows_valid", index.height))
        batch = self.states.transition(
            batch,
            "SILVER_DONE",
            counts={
                "silver_inserted": inserted,
                "duplicates_dropped": rows_valid - inserted,
                "duplicates_in_batch": index.height - winners.height,
                "event_dates": dates,
            },
            versions={"silver": version},
            durations={"silver": _elapsed(started)},
        )
        return self._result(batch)


def _scan(dataset: ds.Dataset, columns: list[str] | None, rows: int) -> Iterator[pl.DataFrame]:
    """The dataset in order, in frames of at most ``rows``, with ``_pos``: the scan position."""
    position = 0
    for b in dataset.to_batches(columns=columns, batch_size=rows, **_STREAM):
        frame = pl.from_arrow(b)
        assert isinstance(frame, pl.DataFrame)
        yield frame.with_columns(
            pl.int_range(position, position + frame.height, dtype=pl.Int64).alias("_pos")
        )
        position += frame.height


def _first_occurrences(bronze: ds.Dataset, index: pl.DataFrame, key: str, step: int) -> pl.DataFrame:
    """Rows whose key comes first in the batch (by _row, then position); repeated hashes
    are settled on the real key."""
    # Sorting 8-byte hashes finds the repeated ones in a few arrays of n words; a
    # group-by over millions of keys costs several times that in hash tables.
    ordered = np.sort(index.get_column("_h").to_numpy())
    same = ordered[1:] == ordered[:-1]
    if not same.any():
        return index
    hashes = pl.Series("_h", np.unique(ordered[1:][same]), dtype=pl.UInt64).implode()
    del ordered, same
    is_repeated = pl.col("_h").is_in(hashes)
    single, repeated = index.filter(~is_repeated), index.filter(is_repeated)
    exact = pl.concat(
        [
            chunk.filter(pl.col(key).hash(_SEED).is_in(hashes)).select(key, "_row", "_pos")
            for chunk in _scan(bronze, [key, "_row"], step * 4)
        ]
    )
    first = exact.sort("_row", "_pos").group_by(key, maintain_order=True).first()
    return pl.concat([single, repeated.filter(pl.col("_pos").is_in(first.get_column("_pos").implode()))])


def _not_in_silver(
    dt: Any, bronze: ds.Dataset, winners: pl.DataFrame, dates: list[str], part: str, key: str, step: int
) -> pl.DataFrame:
    """Winners whose (date, key) silver does not hold: hashes first, real keys for the hits."""
    silver = dt.to_pyarrow_dataset(partitions=[(part, "in", dates)])
    held = pl.concat(
        [
            pl.from_arrow(b).select(part, pl.col(key).hash(_SEED).alias("_h"))  # type: ignore[union-attr]
            for b in silver.to_batches(columns=[part, key], batch_size=step * 4, **_STREAM)
        ]
        or [pl.DataFrame(schema={part: pl.Date, "_h": pl.UInt64})]
    )
    maybe = winners.join(held, on=[part, "_h"], how="semi")
    if maybe.is_empty():
        return winners
    positions = maybe.get_column("_pos").implode()
    candidates = pl.concat(
        [
            chunk.filter(pl.col("_pos").is_in(positions)).select(key, "_pos")
            for chunk in _scan(bronze, [key], step * 4)
        ]
    ).join(maybe.select("_pos", part), on="_pos")
    names = candidates.get_column(key).unique().to_list()
    existing = pl.from_arrow(silver.to_table(columns=[part, key], filter=pc.field(key).isin(names)))
    assert isinstance(existing, pl.DataFrame)
    found = candidates.join(existing, on=[part, key], how="semi").get_column("_pos").implode()
    return winners.filter(~pl.col("_pos").is_in(found))
