"""Delta tables through delta-rs: where they live, how they are opened and committed.

Every write that belongs to a batch carries a Delta application transaction
(``app_id`` = ``{layer}:{batch_id}``), so a replayed step can ask the table whether its
commit already happened and skip it. Commits that lose a race with a concurrent writer
are retried here with backoff.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
import pyarrow as pa
from deltalake import (
    ColumnProperties,
    CommitProperties,
    DeltaTable,
    Transaction,
    WriterProperties,
    write_deltalake,
)
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from shared.adapters.storage import Storage, is_remote, join
from shared.errors import TransientError
from shared.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

# delta-rs buffers each open file's data until it reaches this size; bounded files bound memory.
TARGET_FILE_BYTES = 32 * 1024 * 1024
# Every step opens its tables, replaying the log from the last checkpoint: at Delta's
# default of one checkpoint per 100 commits, a table a few batches a minute append to
# replays up to 99 commits per open (a 3x sawtooth in step time over 200 batches).
TABLE_PROPERTIES = {"delta.checkpointInterval": "10"}
# zstd level 1, no dictionaries: most columns are near-unique (ids, times, offsets), where the
# writer builds a dictionary per row group only to abandon it. Writing a million silver rows
# took 0.92 s with the defaults and zstd 3, 0.63 s with these, for files 6% smaller. Row
# groups of 64k rows: the writer buffers a whole row group, so this bounds its memory.
WRITER_PROPERTIES = WriterProperties(
    compression="ZSTD",
    compression_level=1,
    max_row_group_size=65_536,
    default_column_properties=ColumnProperties(dictionary_enabled=False),
)
# Each batch adds a small file to the partitions it touches, and a step that reads a
# partition pays per file (a footer, a column chunk, an entry in the log): a partition is
# compacted once it holds COMPACT_AT_FILES files under SMALL_FILE_BYTES. Files at or over
# that size are never rewritten, so a compaction costs the same however large the
# partition has grown.
SMALL_FILE_BYTES = 8 * 1024 * 1024
COMPACT_AT_FILES = 16


class Lake:
    """The Delta tables under ``LAKE_URI``."""

    def __init__(self, settings: Settings, storage: Storage | None = None) -> None:
        self.root = settings.lake_uri
        self.retries = settings.delta_commit_retries
        self.storage = storage or Storage(settings.storage_connection)
        self.storage_options = _storage_options(self.storage) if is_remote(self.root) else None

    def uri(self, table: str) -> str:
        """Location of a table, e.g. ``bronze/user_activity``."""
        if is_remote(self.root):
            return join(self.root, table)
        return str(Path(self.root, table).resolve())

    def prepare(self) -> None:
        """Create the lake container (or folder) if it does not exist."""
        if is_remote(self.root):
            self.storage.ensure_container(self.storage.locate(self.root + "/x").container)
        else:
            Path(self.root).mkdir(parents=True, exist_ok=True)

    def open(self, table: str) -> DeltaTable | None:
        """The table at its latest version, or None before its first commit."""
        try:
            return DeltaTable(self.uri(table), storage_options=self.storage_options)
        except TableNotFoundError:
            return None

    def scan(self, table: str, where: str | None = None) -> pl.LazyFrame:
        """A lazy scan of a table's latest version.

        Args:
            table: Table name, e.g. ``silver/user_activity``.
            where: SQL predicate; files whose partition values or column statistics rule
                it out are not read at all. Rows are not filtered by it: filter the frame.
        """
        dt = self.open(table)
        if dt is None:
            raise TableNotFoundError(f"table {table} does not exist yet")
        return self.scan_version(dt, where)

    def scan_version(self, dt: DeltaTable, where: str | None = None) -> pl.LazyFrame:
        """A lazy scan of the files of one table version that ``where`` may match.

        polars reads the Parquet files itself (natively, local or ``az://``), which costs
        a fraction of building a pyarrow dataset per file. Partition columns come from the
        file paths.

        Args:
            dt: The table at the version to read.
            where: SQL predicate pruning files by partition values and statistics.
        """
        schema = pl.DataFrame(pa.Table.from_batches([], schema=pa.schema(dt.schema().to_arrow()))).schema
        uris = dt.file_uris(file_pruning_predicate=where)
        if not uris:
            return pl.LazyFrame(schema=schema)
        partitions = dt.metadata().partition_columns
        # Partition columns come last. (No reordering select: it would stop polars pushing a
        # slice down into the scan, and every slice would read from the start.)
        return pl.scan_parquet(
            uris,
            storage_options=self.storage_options,
            hive_partitioning=bool(partitions),
            hive_schema={name: schema[name] for name in partitions} or None,
        )

    def ensure(self, table: str, schema: pa.Schema, partition_by: list[str] | None = None) -> None:
        """Create an empty table with ``schema`` unless one exists (safe to race)."""
        if self.open(table) is not None:
            return
        try:
            DeltaTable.create(
                self.uri(table),
                schema,
                mode="ignore",
                partition_by=partition_by,
                configuration=TABLE_PROPERTIES,
                storage_options=self.storage_options,
            )
        except (CommitFailedError, DeltaError) as exc:
            if self.open(table) is None:
                raise TransientError(f"creating {table}: {exc}") from exc

    def commit_version(self, table: str, app_id: str) -> int | None:
        """The version of the commit tagged ``app_id`` (scans history; recovery only)."""
        dt = self.open(table)
        if dt is None:
            return None
        for entry in dt.history():
            if entry.get("tributary.app_id") == app_id:
                return int(entry["version"])
        return None

    def committed(self, table: str, app_id: str) -> bool:
        """Whether a commit tagged with ``app_id`` is already in the table's log."""
        dt = self.open(table)
        return dt is not None and dt.transaction_version(app_id) is not None

    def append(
        self,
        table: str,
        data: pa.Table | pa.RecordBatchReader,
        *,
        app_id: str,
        partition_by: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> int | None:
        """Append once per ``app_id``; returns the committed version (None if already there).

        ``data`` may be a stream: delta-rs writes its files as it reads and commits once at
        the end, so an exception from the stream leaves the table untouched.
        """
        if self.committed(table, app_id):
            return None
        write_deltalake(
            self.uri(table),
            data,
            mode="append",
            partition_by=partition_by,
            storage_options=self.storage_options,
            writer_properties=WRITER_PROPERTIES,
            target_file_size=TARGET_FILE_BYTES,
            commit_properties=self.commit_properties(app_id, metadata),
        )
        dt = self.open(table)
        assert dt is not None
        return dt.version()

    def append_to(
        self,
        snapshot: DeltaTable,
        data: pa.RecordBatchReader,
        *,
        app_id: str,
        partition_by: list[str] | None = None,
        transactions: dict[str, int] | None = None,
    ) -> int:
        """Append on top of the version ``snapshot`` read; returns the committed version.

        ``transactions`` are further application transactions to record: a commit that
        races another one recording the same id fails with a conflict instead of landing.
        """
        write_deltalake(
            snapshot,
            data,
            mode="append",
            partition_by=partition_by,
            writer_properties=WRITER_PROPERTIES,
            target_file_size=TARGET_FILE_BYTES,
            commit_properties=self.commit_properties(app_id, transactions=transactions),
        )
        return snapshot.version()

    def compact_small_files(self, dt: DeltaTable, table: str, column: str, values: list[str]) -> list[str]:
        """Compact the partitions among ``values`` that hold ``COMPACT_AT_FILES`` or more
        files under ``SMALL_FILE_BYTES`` at ``dt``'s version into files of up to that size;
        returns those compacted (reopen the table to see the result).

        Compaction commits no data change, so it never alters what a reader sees; one that
        loses a race is planned again from the new version.
        """
        if not values:
            return []
        files = pl.DataFrame(dt.get_add_actions(flatten=True)).select(
            pl.col(f"partition.{column}").cast(pl.String).alias("value"), "size_bytes"
        )
        small = files.filter((pl.col("size_bytes") < SMALL_FILE_BYTES) & pl.col("value").is_in(values))
        due = small.group_by("value").len().filter(pl.col("len") >= COMPACT_AT_FILES)
        compacted = sorted(due.get_column("value").to_list())
        for value in compacted:

            def compact(value: str = value) -> None:
                current = self.open(table)
                assert current is not None
                current.optimize.compact(
                    partition_filters=[(column, "=", value)],
                    target_size=SMALL_FILE_BYTES,
                    writer_properties=WRITER_PROPERTIES,
                    commit_properties=self.commit_properties(None, {"tributary.operation": "compact"}),
                )

            self.with_conflict_retry(f"compact {table} {column}={value}", compact)
        return compacted

    def commit_properties(
        self,
        app_id: str | None,
        metadata: dict[str, Any] | None = None,
        transactions: dict[str, int] | None = None,
    ) -> CommitProperties:
        txns = [Transaction(app_id=app_id, version=1)] if app_id else []
        txns += [Transaction(app_id=k, version=v) for k, v in (transactions or {}).items()]
        return CommitProperties(
            custom_metadata={"tributary.app_id": app_id or "", **(metadata or {})},
            max_commit_retries=self.retries,
            app_transactions=txns or None,
        )

    def with_conflict_retry(self, what: str, action: Callable[[], T]) -> T:
        """Run a read-modify-commit ``action``, re-running it when a concurrent commit wins.

        delta-rs already retries commits whose files do not overlap; a MERGE that read
        files another writer rewrote fails and must be recomputed from a fresh snapshot.
        """
        for attempt in range(self.retries):
            try:
                return action()
            except (CommitFailedError, DeltaError) as exc:
                if not _is_conflict(exc) or attempt == self.retries - 1:
                    raise TransientError(f"{what}: {exc}") from exc
                delay = min(5.0, 0.1 * 2**attempt) * (0.5 + random.random())
                log.warning("%s: commit conflict (attempt %d), retrying in %.2fs", what, attempt + 1, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")


def sql_in(column: str, values: list[str]) -> str:
    """``column IN ('a', 'b')`` with the values quoted as SQL string literals."""
    quoted = ", ".join("'" + v.replace("'", "''") + "'" for v in values)
    return f"{column} IN ({quoted})"


def _is_conflict(exc: Exception) -> bool:
    text = str(exc).lower()
    return isinstance(exc, CommitFailedError) or any(
        word in text for word in ("conflict", "concurrent", "version already exists", "transaction failed")
    )


def _storage_options(storage: Storage) -> dict[str, str]:
    options = {"account_name": storage.account_name}
    if storage.account_key:
        options["account_key"] = storage.account_key
    if storage.is_emulator:
        options["azure_storage_endpoint"] = storage.blob_endpoint.rstrip("/")
        options["allow_http"] = "true"
    return options


__all__ = ["WRITER_PROPERTIES", "Lake", "TableNotFoundError"]
