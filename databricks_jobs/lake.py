"""The Delta tables the Spark jobs read and commit: the one place the two runtimes differ.

Every commit carries its batch's application-transaction id (``shared.batches.commit_id``)
and the figures the orchestrator records, so a retried job finds its own commit and
never appends twice. Two implementations of one ``Lake`` protocol:

* ``DeltaSparkLake`` (Databricks): Delta Spark. Appends and MERGEs carry the id through
  Delta's idempotent-write options (``txnAppId``/``txnVersion``; the session confs for
  MERGE), which skip a write whose id the table already holds, and the id and figures as
  ``userMetadata``.
* ``LocalLake`` (this machine, where the delta-spark jar cannot be had): delta-rs, with the
  very commit properties the in-function route writes.

Silver is the exception that needs care: every silver commit must also advance the
``silver-writer`` transaction, so that two writers whose duplicate checks raced cannot
both land (``shared.batches.SILVER_WRITER``). delta-rs records both ids in one commit and
conflicts when a commit since its snapshot recorded ``silver-writer``. Delta Spark records
one id per write, so there the id is ``silver-writer`` and the insert is a MERGE on the
key inside a Serializable table: the MERGE's read is part of its transaction, so a
concurrent append by anyone conflicts with it (Serializable counts blind appends), and
the ``silver-writer`` it records makes a racing delta-rs writer conflict in turn. The
batch's own id rides in ``userMetadata``, where ``landed`` finds it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from pyspark.sql import DataFrame, SparkSession

from databricks_jobs import schema as spark_schema
from shared.batches import APP_ID_KEY, SILVER_WRITER
from shared.errors import CommitConflict


@dataclass(frozen=True, slots=True)
class TableRef:
    """A table the job writes: where it is, its columns (polars types) and partitioning."""

    uri: str
    columns: Mapping[str, Any]
    partition_by: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Head:
    """The version of a table a read saw, and the ``silver-writer`` version it held."""

    version: int
    writer: int


class Lake(Protocol):
    """What a job needs of its Delta tables; see the module docstring for the two kinds."""

    def scan(self, table: TableRef, at: Head | None = None) -> DataFrame:
        """The table's rows at ``at`` (default: the latest version)."""
        ...

    def head(self, table: TableRef) -> Head: ...

    def landed(self, table: TableRef, app_id: str) -> int | None:
        """The version of the commit tagged ``app_id``, or None if it never landed."""
        ...

    def append(self, table: TableRef, rows: DataFrame, app_id: str, figures: Mapping[str, Any]) -> int | None:
        """Append ``rows`` once per ``app_id``; the version committed (None: nothing new)."""
        ...

    def insert(
        self,
        table: TableRef,
        rows: DataFrame,
        app_id: str,
        figures: Mapping[str, Any],
        *,
        read: Head,
        key: tuple[str, ...],
    ) -> int:
        """Insert ``rows`` (checked against the table at ``read``) and advance ``silver-writer``.

        Raises:
            CommitConflict: another silver commit landed since ``read``; check again.
        """
        ...

    def merge(
        self,
        table: TableRef,
        source: DataFrame,
        keys: tuple[str, ...],
        updates: Mapping[str, str],
        app_id: str,
    ) -> int | None:
        """MERGE ``source`` on ``keys`` (``updates`` where matched, insert the rest) once per
        ``app_id``; the version committed (None: it had landed before)."""
        ...


# -- local: delta-rs ---------------------------------------------------------------------------
class LocalLake:
    """Tables committed by the in-function route's own Delta code (``shared.adapters.lake``):
    the same delta-rs commits, ids, figures and conflict rule, for rows Spark computed."""

    def __init__(self, spark: SparkSession, storage_options: dict[str, str] | None = None) -> None:
        self.spark = spark
        self.storage_options = storage_options

    def table(self, table: TableRef) -> Any:
        """The in-function route's handle of ``table`` (created empty on first use)."""
        from shared.adapters.lake import Lake as DeltaLake
        from shared.adapters.lake import TableSpec
        from shared.pipeline import schemas

        options = self.storage_options
        lake = DeltaLake(table.uri, storage_options=(lambda: options or {}) if options else None)
        return lake.table(TableSpec("", schemas.arrow(dict(table.columns)), table.partition_by))

    def _snapshot(self, table: TableRef, version: int | None = None) -> Any:
        from deltalake import DeltaTable

        from shared.adapters.lake import Snapshot

        handle = self.table(table)
        latest = handle.snapshot()
        if version is None:
            return latest
        dt = DeltaTable(handle.uri, storage_options=self.storage_options)
        dt.load_as_version(version)
        return Snapshot(handle, dt)

    def scan(self, table: TableRef, at: Head | None = None) -> DataFrame:
        from deltalake import DeltaTable

        self.table(table).snapshot()  # created empty if it is not there yet
        dt = DeltaTable(table.uri, storage_options=self.storage_options)
        if at is not None:
            dt.load_as_version(at.version)
        arrow = dt.to_pyarrow_table().cast(spark_schema.arrow(table.columns))
        if arrow.num_rows == 0:
            return self.spark.createDataFrame([], spark_schema.struct(table.columns))
        return self.spark.createDataFrame(arrow)

    def head(self, table: TableRef) -> Head:
        snapshot = self._snapshot(table)
        return Head(snapshot.version, snapshot.transaction(SILVER_WRITER) or 0)

    def landed(self, table: TableRef, app_id: str) -> int | None:
        found = self.table(table).commit(app_id)
        return None if found is None else found.version

    def append(self, table: TableRef, rows: DataFrame, app_id: str, figures: Mapping[str, Any]) -> int | None:
        if self.landed(table, app_id) is not None:
            return None
        return self.table(table).append_once(_arrow(rows, table), app_id, figures).version

    def insert(
        self,
        table: TableRef,
        rows: DataFrame,
        app_id: str,
        figures: Mapping[str, Any],
        *,
        read: Head,
        key: tuple[str, ...],
    ) -> int:
        # On top of the version the check read, advancing silver-writer, as the in-function
        # route commits: a commit since then that advanced it makes this one conflict.
        snapshot = self._snapshot(table, read.version)
        commit = snapshot.append(
            _arrow(rows, table), app_id, figures, advance={SILVER_WRITER: read.writer + 1}
        )
        return int(commit.version)

    def merge(
        self,
        table: TableRef,
        source: DataFrame,
        keys: tuple[str, ...],
        updates: Mapping[str, str],
        app_id: str,
    ) -> int | None:
        import polars as pl

        if self.landed(table, app_id) is not None:
            return None
        frame = pl.from_arrow(_arrow(source, table))
        assert isinstance(frame, pl.DataFrame)
        return self.table(table).merge_once(frame, keys, updates, app_id).version


def _arrow(rows: DataFrame, table: TableRef) -> Any:
    """The rows as Arrow in the table's column order and types (collected to the driver)."""
    from shared.pipeline import schemas

    return rows.select(*table.columns).toArrow().cast(schemas.arrow(dict(table.columns)))


# -- Databricks: Delta Spark -------------------------------------------------------------------
class DeltaSparkLake:
    """Tables read and committed by Delta Spark on a Databricks cluster."""

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark

    def scan(self, table: TableRef, at: Head | None = None) -> DataFrame:
        reader = self.spark.read.format("delta")
        if at is not None:
            reader = reader.option("versionAsOf", at.version)
        return reader.load(table.uri)

    def head(self, table: TableRef) -> Head:
        from delta.tables import DeltaTable

        version = int(DeltaTable.forPath(self.spark, table.uri).history(1).collect()[0]["version"])
        # Delta Spark shows no application-transaction versions; every writer sets
        # silver-writer to at most the version it commits at, so the next version is
        # always above it (see ``insert``).
        return Head(version, version)

    def landed(self, table: TableRef, app_id: str) -> int | None:
        from delta.tables import DeltaTable
        from pyspark.sql import functions as F

        history = DeltaTable.forPath(self.spark, table.uri).history()
        tag = json.dumps({APP_ID_KEY: app_id})[1:-1]  # '"tributary.app_id": "<id>"', as written
        found = history.where(F.col("userMetadata").contains(tag)).select(F.min("version")).first()
        return None if found is None or found[0] is None else int(found[0])

    def append(self, table: TableRef, rows: DataFrame, app_id: str, figures: Mapping[str, Any]) -> int | None:
        before = self.landed(table, app_id)
        if before is not None:
            return None
        (
            rows.select(*table.columns)
            .write.format("delta")
            .mode("append")
            .option("txnAppId", app_id)
            .option("txnVersion", 1)
            .option("userMetadata", _user_metadata(app_id, figures))
            .save(table.uri)
        )
        return self.landed(table, app_id)

    def insert(
        self,
        table: TableRef,
        rows: DataFrame,
        app_id: str,
        figures: Mapping[str, Any],
        *,
        read: Head,
        key: tuple[str, ...],
    ) -> int:
        from delta.exceptions import (
            ConcurrentAppendException,
            ConcurrentTransactionException,
        )
        from delta.tables import DeltaTable

        self._serializable(table)
        condition = " AND ".join(f"t.{k} = s.{k}" for k in key)
        merge = (
            DeltaTable.forPath(self.spark, table.uri)
            .alias("t")
            .merge(rows.select(*table.columns).alias("s"), condition)
            .whenNotMatchedInsertAll()
        )
        # silver-writer is set one above the version read: above every value any writer
        # has set by then. If a commit since set it higher, Delta skips the write, which
        # ``landed`` notices below.
        try:
            with self._session_txn(SILVER_WRITER, read.version + 1, _user_metadata(app_id, figures)):
                merge.execute()
        except (ConcurrentAppendException, ConcurrentTransactionException) as exc:
            raise CommitConflict(
                f"{table.uri}: {app_id} lost a race with another silver writer: {exc}"
            ) from exc
        version = self.landed(table, app_id)
        if version is None:
            raise CommitConflict(f"{table.uri}: another silver commit landed since version {read.version}")
        return version

    def merge(
        self,
        table: TableRef,
        source: DataFrame,
        keys: tuple[str, ...],
        updates: Mapping[str, str],
        app_id: str,
    ) -> int | None:
        from delta.exceptions import ConcurrentAppendException
        from delta.tables import DeltaTable

        if self.landed(table, app_id) is not None:
            return None
        merge = (
            DeltaTable.forPath(self.spark, table.uri)
            .alias("t")
            .merge(source.select(*table.columns).alias("s"), " AND ".join(f"t.{k} = s.{k}" for k in keys))
            .whenMatchedUpdate(set=dict(updates))
            .whenNotMatchedInsertAll()
        )
        try:
            with self._session_txn(app_id, 1, _user_metadata(app_id, {})):
                merge.execute()
        except ConcurrentAppendException as exc:
            raise CommitConflict(f"{table.uri}: MERGE {app_id} conflicted: {exc}") from exc
        return self.landed(table, app_id)

    def _serializable(self, table: TableRef) -> None:
        """Make the table Serializable once: only then does a MERGE conflict with blind appends."""
        from delta.tables import DeltaTable

        properties = DeltaTable.forPath(self.spark, table.uri).detail().first()["properties"] or {}
        if properties.get("delta.isolationLevel") != "Serializable":
            self.spark.sql(
                f"ALTER TABLE delta.`{table.uri}` SET TBLPROPERTIES ('delta.isolationLevel' = 'Serializable')"
            )

    @contextmanager
    def _session_txn(self, app_id: str, version: int, metadata: str) -> Iterator[None]:
        """Delta's idempotent-DML session confs for one MERGE (DataFrameWriter options do
        not reach a MERGE), reset afterwards."""
        conf = self.spark.conf
        values = {
            "spark.databricks.delta.write.txnAppId": app_id,
            "spark.databricks.delta.write.txnVersion": str(version),
            "spark.databricks.delta.commitInfo.userMetadata": metadata,
        }
        for name, value in values.items():
            conf.set(name, value)
        try:
            yield
        finally:
            for name in values:
                conf.unset(name)


def _user_metadata(app_id: str, figures: Mapping[str, Any]) -> str:
    """The commit's figures as one JSON object, with the commit's id among them: Delta
    Spark's only free-form commit field, read back by ``shared.adapters.lake``."""
    return json.dumps({**figures, APP_ID_KEY: app_id}, sort_keys=True)
