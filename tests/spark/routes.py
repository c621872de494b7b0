"""Both routes over the same files, for the parity tests: the polars pure functions, and the
Spark job (``databricks_jobs.main.run`` with the local Delta adapter)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
from deltalake import DeltaTable

from databricks_jobs import layers, main, sources
from shared.contracts import USER_ACTIVITY, Contract
from shared.pipeline import decode, gold, keyindex, schemas, silver, validate
from shared.pipeline.bronze import Stamp

BATCH_TIME = datetime(2026, 11, 21, 23, 59, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Landed:
    """One file as a batch: its id, where it is, its format."""

    batch_id: str
    path: Path
    format: str = "avro"


@dataclass
class PolarsRoute:
    """The in-function route's pure functions, batch after batch, tables kept as frames."""

    contract: Contract = USER_ACTIVITY
    bronze: list[pl.DataFrame] = field(default_factory=list)
    quarantine: list[pl.DataFrame] = field(default_factory=list)
    silver: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=schemas.silver(USER_ACTIVITY)))

    def ingest(self, batch: Landed) -> None:
        contract, stamp = self.contract, Stamp(batch.batch_id, str(batch.path), BATCH_TIME)
        with open(batch.path, "rb") as fh:
            parsed = decode.concat(decode.decode(io.BytesIO(fh.read()), str(batch.path), contract))
        checked = validate.validate(parsed, contract)
        bronze = stamp.apply(checked.valid, schemas.bronze(contract))
        self.bronze.append(bronze)
        self.quarantine.append(stamp.apply(checked.quarantined, schemas.quarantine()))
        rows = keyindex.BatchRows.of(bronze.lazy(), batch.batch_id)
        keys = keyindex.index(rows, contract, keyindex.SCAN_ROWS)
        repeated = keyindex.repeats(rows, keys, contract)
        held = keyindex.held(self.silver.lazy(), rows, keys, repeated, contract)
        chunks = [c for c in rows.chunks(4096, np.union1d(repeated, held)) if c.height]
        if chunks:
            self.silver = pl.concat([self.silver, *(silver.rows(c, contract) for c in chunks)])

    def gold(self) -> dict[str, pl.DataFrame]:
        return dict(gold.from_scratch(self.contract, self.silver))


def spark_ingest(
    spark: object, lake: Path, batch: Landed, *, layers_run: str = "bronze,silver,gold"
) -> dict[str, object]:
    """Run the Spark job for one batch into the lake at ``lake``; returns what it counted.

    Capture files are read in row groups of 64 records, so that (with the session's small
    splits) a file is read in several splits and the numbering across them is exercised.
    """
    argv = [
        "--dataset", USER_ACTIVITY.dataset,
        "--batch-id", batch.batch_id,
        "--source", str(batch.path),
        "--format", batch.format,
        "--batch-time", BATCH_TIME.isoformat(),
        "--layers", layers_run,
        "--local",
    ]  # fmt: skip
    for name, uri in layers.lake_layout(str(lake), USER_ACTIVITY).items():
        argv += ["--table", f"{name}={uri}"]
    avro = sources.LocalCapture(rows_per_group=64)
    return main.run(spark, main.parser().parse_args(argv), avro=avro)  # type: ignore[arg-type]


def table(lake: Path, name: str) -> pl.DataFrame:
    """A table the Spark job wrote, as polars reads it (``bronze``, ``silver``, ``gold.<name>`` ...)."""
    uri = layers.lake_layout(str(lake), USER_ACTIVITY)[name]
    frame = pl.from_arrow(DeltaTable(uri).to_pyarrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


def ordered(frame: pl.DataFrame, columns: list[str] | None = None) -> pl.DataFrame:
    """``frame``'s ``columns`` (default all but lists), rows in one canonical order."""
    columns = columns or list(frame.columns)
    keys = [c for c in columns if not isinstance(frame.schema[c], pl.List)]
    return frame.select(columns).sort(keys, nulls_last=True)
