"""Exact first-wins dedupe of one batch against itself and silver, in bounded memory.

A batch's rows are never held at once. Pass 1 streams three columns into a key index of
about 28 bytes a row (64-bit hash of the key, ``_row``, scan position, partition date);
hashes that repeat are settled on the real keys. The touched silver partitions' keys are
hashed the same way, and hash hits are confirmed on the real keys, so a hash collision
can never drop a row. Pass 2 (the caller) streams the rows again and keeps the positions
this module returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import polars as pl
import pyarrow.compute as pc
import pyarrow.dataset as ds

from shared.contracts import Contract
from shared.pipeline.validate import parse_timestamp

_SEED = 20261121  # any fixed seed: both sides of every comparison hash in one process
# pyarrow reads ahead 16 batches and 4 files by default: hundreds of MB on wide rows.
STREAM: dict[str, Any] = {"batch_readahead": 1, "fragment_readahead": 1}


def scan(dataset: ds.Dataset, columns: list[str] | None, rows: int) -> Iterator[pl.DataFrame]:
    """The dataset in order, in frames of at most ``rows``, with ``_pos``: the scan position."""
    position = 0
    for batch in dataset.to_batches(columns=columns, batch_size=rows, **STREAM):
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        yield frame.with_columns(
            pl.int_range(position, position + frame.height, dtype=pl.Int64).alias("_pos")
        )
        position += frame.height


def key_index(bronze: ds.Dataset, contract: Contract, rows: int) -> pl.DataFrame:
    """Pass 1: ``_h`` (key hash), ``_row`` and the partition date; row i is scan position i."""
    key, part = contract.key[0], contract.partition_by
    frames = [
        chunk.select(
            pl.col(key).hash(_SEED).alias("_h"),
            "_row",
            parse_timestamp(pl.col(contract.partition_source)).dt.date().alias(part),
        )
        for chunk in scan(bronze, [key, contract.partition_source, "_row"], rows)
    ]
    empty = pl.DataFrame(schema={"_h": pl.UInt64, "_row": pl.Int64, part: pl.Date})
    return pl.concat(frames, rechunk=True) if frames else empty


def first_occurrences(bronze: ds.Dataset, index: pl.DataFrame, key: str, rows: int) -> np.ndarray:
    """A mask over scan positions: the rows whose key comes first (by ``_row``, then position)."""
    winners = np.ones(index.height, dtype=bool)
    # Sorting 8-byte hashes finds the repeated ones in a few arrays of n words; a group-by
    # over millions of keys costs several times that in hash tables.
    ordered = np.sort(index.get_column("_h").to_numpy())
    same = ordered[1:] == ordered[:-1]
    if not same.any():
        return winners
    hashes = pl.Series("_h", np.unique(ordered[1:][same]), dtype=pl.UInt64).implode()
    del ordered, same
    winners[index.get_column("_h").is_in(hashes).to_numpy()] = False
    # Rows sharing a hash are settled on the real key.
    exact = pl.concat(
        [
            chunk.filter(pl.col(key).hash(_SEED).is_in(hashes)).select(key, "_row", "_pos")
            for chunk in scan(bronze, [key, "_row"], rows)
        ]
    )
    first = exact.sort("_row", "_pos").group_by(key, maintain_order=True).first()
    winners[first.get_column("_pos").to_numpy()] = True
    return winners


def dates_of(index: pl.DataFrame, mask: np.ndarray, part: str) -> list[str]:
    """The partition values of the masked rows, as ISO strings."""
    values = index.lazy().filter(pl.lit(pl.Series(mask))).select(pl.col(part).unique()).collect()
    return sorted(d.isoformat() for d in values.get_column(part).drop_nulls().to_list())


def not_in_silver(
    silver: ds.Dataset,
    bronze: ds.Dataset,
    index: pl.DataFrame,
    winners: np.ndarray,
    contract: Contract,
    rows: int,
) -> np.ndarray:
    """The winners whose (date, key) silver does not hold: hashes first, real keys for the hits."""
    key, part = contract.key[0], contract.partition_by
    frames = []
    for batch in silver.to_batches(columns=[part, key], batch_size=rows, **STREAM):
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        frames.append(frame.select(part, pl.col(key).hash(_SEED).alias("_h")))
    if not frames:
        return winners
    held = pl.concat(frames)
    maybe = (
        index.lazy()
        .with_row_index("_pos")
        .filter(pl.lit(pl.Series(winners)))
        .join(held.lazy(), on=[part, "_h"], how="semi")
        .select(pl.col("_pos").cast(pl.Int64), part)
        .collect()
    )
    del held
    if maybe.is_empty():
        return winners
    positions = maybe.get_column("_pos").implode()
    candidates = pl.concat(
        [
            chunk.filter(pl.col("_pos").is_in(positions)).select(key, "_pos")
            for chunk in scan(bronze, [key], rows)
        ]
    ).join(maybe, on="_pos")
    names = candidates.get_column(key).unique().to_list()
    existing = pl.from_arrow(silver.to_table(columns=[part, key], filter=pc.field(key).isin(names)))
    assert isinstance(existing, pl.DataFrame)
    found = candidates.join(existing, on=[part, key], how="semi").get_column("_pos").to_numpy()
    wanted = winners.copy()
    wanted[found] = False
    return wanted
