"""Bronze, pure: decoded chunks -> checked, stamped Arrow batches, with rejects and a tally.

``BronzeStream`` is consumed by the Delta writer as it encodes, so a file is never held
whole: each chunk is checked against the contract, its valid rows stamped with the
batch and passed on, its rejects kept (they are few) for the quarantine table.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl
import pyarrow as pa

from shared.batches import Counts
from shared.contracts import Contract
from shared.errors import QuarantinedFile
from shared.pipeline import schemas
from shared.pipeline.prefetch import prefetch
from shared.pipeline.validate import failure_counts, validate


@dataclass(frozen=True, slots=True)
class Stamp:
    """What every row of a batch carries: its batch, its file and the batch's time."""

    batch_id: str
    source: str
    batch_time: datetime

    def apply(self, frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
        """Stamp a chunk with the batch and conform it to a table schema."""
        stamped = frame.with_columns(
            pl.lit(self.batch_id).alias("_batch_id"),
            pl.lit(self.source).alias("_source"),
            pl.lit(self.batch_time).cast(schemas.UTC_MICROS).alias("_batch_time"),
            pl.col("_enqueued_time").dt.replace_time_zone("UTC"),
        )
        return stamped.select(pl.col(name).cast(dtype) for name, dtype in schema.items())


@dataclass(slots=True)
class Tally:
    """Rows in, valid and quarantined so far, and how often each expectation failed."""

    rows_in: int = 0
    rows_valid: int = 0
    rows_quarantined: int = 0
    by_expectation: dict[str, int] = field(default_factory=dict)

    def add(self, rows_in: int, rows_valid: int, quarantined: pl.DataFrame) -> None:
        self.rows_in += rows_in
        self.rows_valid += rows_valid
        self.rows_quarantined += quarantined.height
        for name, count in failure_counts(quarantined).items():
            self.by_expectation[name] = self.by_expectation.get(name, 0) + count

    def counts(self) -> Counts:
        return Counts(
            rows_in=self.rows_in,
            rows_valid=self.rows_valid,
            rows_quarantined=self.rows_quarantined,
            quarantined_by_expectation=dict(self.by_expectation),
        )


class BronzeStream:
    """The valid rows of decoded ``chunks`` as Arrow batches; rejects and counts on the side.

    The next chunk is decoded on a second thread while this one is checked and written.
    A ``QuarantinedFile`` raised by the decoder is kept in ``failure`` before it
    propagates: the Delta writer wraps errors from the stream it reads.
    """

    def __init__(self, chunks: Iterator[pl.DataFrame], contract: Contract, stamp: Stamp) -> None:
        self.chunks = chunks
        self.contract = contract
        self.stamp = stamp
        self.tally = Tally()
        self.rejects: list[pl.DataFrame] = []
        self.failure: QuarantinedFile | None = None
        self.schema = schemas.bronze(contract)
        self.arrow_schema = schemas.arrow(self.schema)

    def batches(self) -> Iterator[pa.RecordBatch]:
        quarantine = schemas.quarantine()
        try:
            for chunk in prefetch(self.chunks):
                checked = validate(chunk, self.contract)
                self.tally.add(chunk.height, checked.valid.height, checked.quarantined)
                if not checked.quarantined.is_empty():
                    self.rejects.append(self.stamp.apply(checked.quarantined, quarantine))
                yield from self.stamp.apply(checked.valid, self.schema).to_arrow().to_batches()
        except QuarantinedFile as exc:
            self.failure = exc
            raise

    def reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(self.arrow_schema, self.batches())

    def drain(self) -> None:
        """Consume every chunk without keeping the valid rows (a recount)."""
        for _ in self.batches():
            pass

    def quarantined(self) -> pl.DataFrame | None:
        """Every reject of the file, or None when there were none."""
        return pl.concat(self.rejects) if self.rejects else None
