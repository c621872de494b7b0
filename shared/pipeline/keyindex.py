"""Silver's exact first-wins dedupe by key, within a batch and against all of silver.

Every silver row carries ``_key_hash``: XXH64 with seed 42 of its key's UTF-8 bytes, the
function Spark's ``xxhash64`` computes, so the hash is the same across library versions and
engines. A batch is checked against silver by reading that one 8-byte column of every
silver file, streamed: never silver's rows. Dedupe is by key alone, whatever the date:
a key silver holds under any event date is a duplicate.

Pass 1 hashes the batch's keys (8 bytes a row, see ``BatchKeys``). Hashes that repeat within the
batch, and batch hashes that silver already holds, are only candidates: they are settled on
the real keys, read for those rows alone, so a hash collision can never drop a row. What
comes out is the scan positions of the rows not to insert; pass 2 (the caller) streams the
batch again without them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl
import polars_hash as plh

from shared.contracts import Contract
from shared.pipeline.schemas import KEY_HASH
from shared.pipeline.validate import parse_timestamp

SEED = 42  # Spark's xxhash64 seed: the Databricks route computes the same column
POSITION = "_pos"
# Rows per read of a batch's key columns (tens of MB), and of silver's 8-byte hashes (32 MB).
SCAN_ROWS = 262_144
HASH_ROWS = 4_194_304


def key_hash(column: str) -> pl.Expr:
    """``_key_hash`` of a string column: XXH64 (seed 42) of its UTF-8 bytes, as Int64."""
    return plh.col(column).nchash.xxhash64(seed=SEED).reinterpret(signed=True).alias(KEY_HASH)


@dataclass(frozen=True, slots=True)
class BatchRows:
    """A batch's rows in bronze: the files that may hold them, every row with its position.

    ``_pos`` numbers the rows of those files in scan order, the same in every pass over
    one snapshot. Files compacted together may also hold other batches' rows, which the
    passes skip.
    """

    files: pl.LazyFrame
    batch_id: str

    @classmethod
    def of(cls, files: pl.LazyFrame, batch_id: str) -> BatchRows:
        return cls(files.with_row_index(POSITION), batch_id)

    @property
    def rows(self) -> pl.LazyFrame:
        return self.files.filter(pl.col("_batch_id") == self.batch_id)

    def chunks(self, rows: int, dropped: np.ndarray) -> Iterator[pl.DataFrame]:
        """The batch's rows but ``dropped``, in order, read ``rows`` file rows at a time."""
        skip = pl.Series(dropped, dtype=pl.UInt32).implode()
        yield from self.slices(rows, ~pl.col(POSITION).is_in(skip), [pl.all().exclude(POSITION)])

    def file_rows(self) -> int:
        """Rows in the files, this batch's and any compacted in with them."""
        return int(self.files.select(pl.len()).collect().item())

    def slices(
        self, rows: int, keep: pl.Expr, columns: list[pl.Expr], *, total: int | None = None
    ) -> Iterator[pl.DataFrame]:
        """``columns`` of the batch's rows that ``keep`` selects, ``rows`` file rows at a time.

        Slicing the positioned files reads only the row groups a slice spans, so memory
        follows ``rows``, not the batch (a streaming collect reads far ahead). ``total`` is
        ``file_rows()``, when the caller has it already.
        """
        for start in range(0, self.file_rows() if total is None else total, rows):
            chunk = self.files.slice(start, rows).filter((pl.col("_batch_id") == self.batch_id) & keep)
            yield chunk.select(columns).collect()


@dataclass(frozen=True, slots=True)
class BatchKeys:
    """Pass 1's result: the batch's key hashes, sorted (8 bytes a row), and the dates touched."""

    ordered: np.ndarray
    dates: list[str]

    @property
    def rows(self) -> int:
        return len(self.ordered)


def index(batch: BatchRows, contract: Contract, rows: int) -> BatchKeys:
    """Hash every row's key and collect the partition dates, ``rows`` file rows at a time.

    The hashes go straight into one array sized for the files' rows, whose pages are
    touched only as rows arrive, and are sorted in place: the index never holds more
    than its 8 bytes a row and one chunk.
    """
    key, part = contract.key[0], contract.partition_by
    total = batch.file_rows()
    ordered = np.empty(total, dtype=np.int64)
    filled = 0
    dates: set[date] = set()
    for chunk in batch.slices(rows, pl.lit(True), [key_hash(key), _partition(contract)], total=total):
        values = chunk.get_column(KEY_HASH).to_numpy()
        ordered[filled : filled + len(values)] = values
        filled += len(values)
        dates.update(chunk.get_column(part).drop_nulls().unique().to_list())
    ordered = ordered[:filled]
    ordered.sort()
    return BatchKeys(ordered=ordered, dates=sorted(d.isoformat() for d in dates))


def repeats(batch: BatchRows, keys: BatchKeys, contract: Contract) -> np.ndarray:
    """Positions of rows whose key an earlier row of the batch has (by ``_row``, then position)."""
    same = keys.ordered[1:] == keys.ordered[:-1]
    if not same.any():
        return np.empty(0, dtype=np.int64)
    shared = pl.Series(np.unique(keys.ordered[1:][same])).implode()
    del same
    key = contract.key[0]
    rows = (
        batch.rows.filter(key_hash(key).is_in(shared))
        .select(key, "_row", POSITION)
        .collect(engine="streaming")
    )
    later = rows.sort("_row", POSITION).filter(pl.int_range(pl.len()).over(key) > 0)
    return np.sort(later.get_column(POSITION).to_numpy().astype(np.int64))


def held(
    silver: pl.LazyFrame,
    batch: BatchRows,
    keys: BatchKeys,
    dropped: np.ndarray,
    contract: Contract,
) -> np.ndarray:
    """Positions of rows (not already ``dropped``) whose key silver holds, under any date.

    Only silver's ``_key_hash`` column is read, a chunk at a time, and matched against the
    batch's sorted hashes. The batch rows with a matched hash are then found by hashing
    their keys again in one streamed pass, and settled on the real key.
    """
    ordered = keys.ordered
    bitmap: _Bitmap | None = None
    hits: list[np.ndarray] = []
    start = 0
    while True:  # a short read is the last one, so no count is needed first
        read = silver.slice(start, HASH_ROWS).select(KEY_HASH).collect().get_column(KEY_HASH)
        values = read.drop_nulls().to_numpy()
        if len(values):
            bitmap = bitmap or _Bitmap(ordered)
            values = values[bitmap.may_hold(values)]
            at = np.minimum(np.searchsorted(ordered, values), len(ordered) - 1)
            hits.append(values[ordered[at] == values])
        if len(read) < HASH_ROWS:
            break
        start += HASH_ROWS
    del bitmap
    found = np.unique(np.concatenate(hits)) if hits else np.empty(0, dtype=np.int64)
    if not len(found):
        return np.empty(0, dtype=np.int64)
    # Settle the rows with those hashes on the real key.
    key = contract.key[0]
    wanted = pl.Series(found).implode()
    mine = batch.rows.filter(key_hash(key).is_in(wanted))
    if len(dropped):
        mine = mine.filter(~pl.col(POSITION).is_in(pl.Series(dropped, dtype=pl.UInt32).implode()))
    theirs = silver.filter(pl.col(KEY_HASH).is_in(wanted)).select(key)
    same = mine.select(POSITION, key).join(theirs, on=key, how="semi").collect(engine="streaming")
    return np.sort(same.get_column(POSITION).to_numpy().astype(np.int64))


def _partition(contract: Contract) -> pl.Expr:
    """A bronze row's silver partition value (the UTC date of its timestamp field)."""
    return parse_timestamp(pl.col(contract.partition_source)).dt.date().alias(contract.partition_by)


class _Bitmap:
    """A flag per value of the hashes' low bits: rules out most silver hashes at one lookup
    each, so only the rest are searched for in the sorted hashes. 16 bytes per batch row,
    at most 16 MB, built only when the touched partitions hold rows."""

    def __init__(self, hashes: np.ndarray) -> None:
        bits = min(24, max(16, int(len(hashes) * 16).bit_length()))
        self.mask = np.int64((1 << bits) - 1)
        self.flags = np.zeros(1 << bits, dtype=np.bool_)
        self.flags[hashes & self.mask] = True

    def may_hold(self, values: np.ndarray) -> np.ndarray:
        return self.flags[values & self.mask]
