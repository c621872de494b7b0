"""The Spark job's commits: a retried job never appends twice, and a Spark silver writer
and a delta-rs silver writer that race conflict as two delta-rs writers do.

What is proven here is the local adapter (delta-rs committing what the Spark job
computed): the job's retry loop, its application-transaction ids, and the
``silver-writer`` transaction that makes racing silver commits conflict. On Databricks the
same job commits through Delta Spark (``DeltaSparkLake``), which cannot run here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError

from databricks_jobs import lake, layers
from databricks_jobs.lake import Head, LocalLake, TableRef
from databricks_jobs.main import parser
from shared.batches import SILVER_WRITER, commit_id
from shared.contracts import USER_ACTIVITY
from shared.dev import generator
from shared.errors import CommitConflict
from shared.pipeline import decode, schemas, silver, validate
from shared.pipeline.bronze import Stamp
from tests.spark.routes import BATCH_TIME, Landed, spark_ingest

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.fixture
def batches(tmp_path: Path) -> list[Landed]:
    files = [
        f
        for f in generator.generate_day(files=2, events_per_file=120, defect_rate=0.05, seed=11)
        if f.kind == "capture"
    ]
    landed = []
    for i, f in enumerate(files):
        path = tmp_path / "capture" / f.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f.data)
        landed.append(Landed(f"race-{i}", path))
    return landed


def versions(root: Path) -> dict[str, int]:
    return {
        name: DeltaTable(uri).version() for name, uri in layers.lake_layout(str(root), USER_ACTIVITY).items()
    }


def test_a_retried_job_changes_no_table(spark: Any, batches: list[Landed], tmp_path: Path) -> None:
    root = tmp_path / "lake"
    first = spark_ingest(spark, root, batches[0])
    before = versions(root)
    spark_ingest(spark, root, batches[0])
    assert versions(root) == before
    silver = DeltaTable(layers.lake_layout(str(root), USER_ACTIVITY)["silver"])
    assert silver.to_pyarrow_table().num_rows == first["silver_inserted"]
    assert silver.transaction_version(commit_id("silver", batches[0].batch_id)) == 1


def test_a_job_resumed_after_bronze_appends_bronze_once(
    spark: Any, batches: list[Landed], tmp_path: Path
) -> None:
    root = tmp_path / "lake"
    spark_ingest(spark, root, batches[0], layers_run="bronze")  # the run that died after bronze
    bronze = DeltaTable(layers.lake_layout(str(root), USER_ACTIVITY)["bronze"])
    rows, version = bronze.to_pyarrow_table().num_rows, bronze.version()
    spark_ingest(spark, root, batches[0])
    bronze = DeltaTable(layers.lake_layout(str(root), USER_ACTIVITY)["bronze"])
    assert (bronze.to_pyarrow_table().num_rows, bronze.version()) == (rows, version)
    assert versions(root)["silver"] > 0


def in_function_silver(landed: Landed) -> pl.DataFrame:
    """A batch's silver rows as the in-function route makes them (no dedupe against silver)."""
    with open(landed.path, "rb") as fh:
        parsed = decode.concat(decode.decode(fh, str(landed.path), USER_ACTIVITY))
    valid = validate.validate(parsed, USER_ACTIVITY).valid
    bronze = Stamp(landed.batch_id, str(landed.path), BATCH_TIME).apply(valid, schemas.bronze(USER_ACTIVITY))
    return silver.rows(bronze.unique("log_id", keep="first", maintain_order=True), USER_ACTIVITY)


def delta_rs_commit(uri: str, rows: pl.DataFrame, batch_id: str, read: DeltaTable) -> None:
    """The in-function route's silver commit: on top of the version it checked, advancing
    silver-writer (``shared.layers.silver``)."""
    writer = read.transaction_version(SILVER_WRITER) or 0
    write_deltalake(
        read,
        rows.to_arrow().cast(schemas.arrow(schemas.silver(USER_ACTIVITY))),
        mode="append",
        partition_by=[USER_ACTIVITY.partition_by],
        commit_properties=CommitProperties(
            app_transactions=[
                Transaction(commit_id("silver", batch_id), 1),
                Transaction(SILVER_WRITER, writer + 1),
            ]
        ),
    )


class RacingLake(LocalLake):
    """The local adapter, with a delta-rs writer landing its silver commit between the
    Spark writer's check and its commit, once."""

    def __init__(self, spark: Any, rival: pl.DataFrame, rival_batch: str) -> None:
        super().__init__(spark)
        self.rival, self.rival_batch, self.conflicts = rival, rival_batch, 0

    def insert(
        self, table: TableRef, rows: Any, app_id: str, figures: Any, *, read: Head, key: tuple[str, ...]
    ) -> int:
        if self.rival_batch:
            delta_rs_commit(
                table.uri, self.rival, self.rival_batch, DeltaTable(table.uri, version=read.version)
            )
            self.rival_batch = ""
        try:
            return super().insert(table, rows, app_id, figures, read=read, key=key)
        except CommitConflict:
            self.conflicts += 1
            raise


def test_a_spark_writer_that_loses_the_race_checks_again_against_the_winner(
    spark: Any, batches: list[Landed], tmp_path: Path
) -> None:
    root = tmp_path / "lake"
    spark_ingest(spark, root, batches[0], layers_run="bronze")
    rival = in_function_silver(batches[1])
    # The rival batch also carries some of this batch's events: only one copy may land.
    mine = in_function_silver(batches[0])
    shared_keys = mine.head(5).with_columns(pl.lit(batches[1].batch_id).alias("_batch_id"))
    rival = pl.concat([rival, shared_keys])
    racing = RacingLake(spark, rival, batches[1].batch_id)
    argv = ["--dataset", "user_activity", "--batch-id", batches[0].batch_id, "--source", str(batches[0].path),
            "--format", "avro", "--batch-time", BATCH_TIME.isoformat(),
            "--layers", "silver", "--local"]  # fmt: skip
    for name, uri in layers.lake_layout(str(root), USER_ACTIVITY).items():
        argv += ["--table", f"{name}={uri}"]
    from databricks_jobs.main import run

    figures = run(spark, parser().parse_args(argv), lake=racing)
    assert racing.conflicts == 1, "the first attempt must lose to the delta-rs commit"
    silver = pl.from_arrow(
        DeltaTable(layers.lake_layout(str(root), USER_ACTIVITY)["silver"]).to_pyarrow_table()
    )
    assert isinstance(silver, pl.DataFrame)
    assert silver.get_column("log_id").is_unique().all()
    # (The generated rival also re-sends an event of this batch: a duplicate across files.)
    assert figures["silver_inserted"] == len(set(mine.get_column("log_id")) - set(rival.get_column("log_id")))
    ours = silver.filter(pl.col("_batch_id") == batches[0].batch_id)
    assert set(ours.get_column("log_id")).isdisjoint(shared_keys.get_column("log_id"))
    dt = DeltaTable(layers.lake_layout(str(root), USER_ACTIVITY)["silver"])
    assert dt.transaction_version(SILVER_WRITER) == 2  # the rival's commit, then ours


def test_a_delta_rs_writer_that_loses_the_race_to_spark_conflicts(
    spark: Any, batches: list[Landed], tmp_path: Path
) -> None:
    root = tmp_path / "lake"
    uri = layers.lake_layout(str(root), USER_ACTIVITY)["silver"]
    local = LocalLake(spark)
    table = layers.table_refs(layers.lake_layout(str(root), USER_ACTIVITY), USER_ACTIVITY)["silver"]
    read = local.head(table)  # both writers check silver at this version
    stale = DeltaTable(uri)
    spark_ingest(spark, root, batches[0])  # the Spark writer lands first
    with pytest.raises(CommitFailedError):
        delta_rs_commit(uri, in_function_silver(batches[1]), batches[1].batch_id, stale)
    assert read.writer == 0 and DeltaTable(uri).transaction_version(SILVER_WRITER) == 1
    # ...and a Spark commit on a stale check conflicts the same way.
    with pytest.raises(CommitConflict):
        empty = spark.createDataFrame([], lake.spark_schema.struct(table.columns))
        local.insert(table, empty, "silver:late", {},
                     read=read, key=("_key_hash", "log_id"))  # fmt: skip
