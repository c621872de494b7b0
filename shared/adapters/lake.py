"""Delta tables through delta-rs, behind handles that never hand out a ``DeltaTable``.

``Lake.table(spec)`` gives a ``Table``; ``Table.snapshot()`` a ``Snapshot`` of its latest
version, which scans (as polars frames) and commits on top of the version it read. Every
commit that belongs to a batch carries a Delta application transaction (its
``commit_id``) and the batch's figures as commit metadata, so a retried step finds its own
commit, and what that commit recorded, instead of writing again. A commit that loses a
race raises ``CommitConflict``; ``Table.retrying`` re-runs a read-modify-commit on a
fresh snapshot. Every open asks for fresh storage options (a signed-in lake's bearer
token is fixed for the life of the ``DeltaTable``); a store that refuses them raises
``StoreAccessDenied``.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
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

from shared.adapters.blobs import store_error, unreachable
from shared.adapters.clients import access_denied, denied
from shared.adapters.storage import is_remote, join, local_lock
from shared.batches import APP_ID_KEY
from shared.errors import CommitConflict

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
FIGURES_KEY = "tributary.figures"
# Rows a commit added, by the metric each writer reports: delta-rs appends and MERGEs,
# Delta Spark MERGEs and appends.
_ADDED_ROWS = ("num_added_rows", "numTargetRowsInserted", "numOutputRows")
# delta-rs 1.6 commits two compactions planned on the same version both (neither conflict
# checks against the other, and optimize drops application transactions), so the rows of
# the files they both rewrote appear twice. One compaction per table at a time: a lock
# (a blob lease, or flock) beside the log; a writer that finds it held leaves the work.
COMPACTION_LOCK = "_compaction.lock"
Lock = Callable[[str], AbstractContextManager[bool]]
# object_store (under delta-rs and polars) gives up on an unreachable store after 10 retries,
# about 4 s; it is told to ride out an outage for the lake's retry budget instead, its
# backoff capped by its own default (15 s). The attempts are bounded by the time, not the count.
STORE_MAX_RETRIES = 1000


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A table's name under the lake root (``silver/user_activity``), schema and partitioning."""

    name: str
    schema: pa.Schema
    partition_by: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Commit:
    """One batch's commit: its version, and the figures it recorded with it."""

    version: int | None
    """None only when the log no longer holds the commit's entry (log retention)."""
    figures: Mapping[str, Any]
    rows: int | None = None
    """Rows the commit added, as Delta's own operation metrics count them."""
    found: bool = False
    """Found in the log (an earlier or concurrent writer's), not written by this call."""


class Lake:
    """The Delta tables under one root (LAKE_URI): a container path or a local folder."""

    def __init__(
        self,
        root: str,
        *,
        storage_options: Callable[[], dict[str, str]] | None = None,
        commit_retries: int = 8,
        prepare: Callable[[], None] | None = None,
        retry_seconds: float = 60.0,
        lock: Lock | None = None,
    ) -> None:
        self.root = root
        self._options = storage_options
        self.retries = commit_retries
        self._prepare = prepare
        self._prepared = False
        self.retry_seconds = retry_seconds
        self.lock: Lock = lock or (_unlocked if is_remote(root) else local_lock)

    def uri(self, name: str) -> str:
        return join(self.root, name) if is_remote(self.root) else str(Path(self.root, name).resolve())

    def storage_options(self) -> dict[str, str] | None:
        """delta-rs' options for one table open, asked for anew each time (tokens expire),
        with object_store's retries stretched to the lake's retry budget."""
        if self._options is None or not is_remote(self.root):
            return None
        retry = {"max_retries": str(STORE_MAX_RETRIES), "retry_timeout": f"{self.retry_seconds:g}s"}
        return {**self._options(), **retry}

    def scan_options(self) -> dict[str, str | int] | None:
        """The same for polars, which reads the data files itself and names its retry keys apart."""
        if self._options is None or not is_remote(self.root):
            return None
        retry = {"max_retries": STORE_MAX_RETRIES, "retry_timeout_ms": int(self.retry_seconds * 1000)}
        return {**self._options(), **retry}

    def table(self, spec: TableSpec) -> Table:
        """The handle of a table; it is created, empty, the first time it is used."""
        return Table(self, spec)

    def prepare(self) -> None:
        """Create the lake's container (or folder) once."""
        if self._prepared:
            return
        if self._prepare is not None:
            self._prepare()
        elif not is_remote(self.root):
            Path(self.root).mkdir(parents=True, exist_ok=True)
        self._prepared = True


class Table:
    """One Delta table of the lake."""

    def __init__(self, lake: Lake, spec: TableSpec) -> None:
        self.lake = lake
        self.spec = spec
        self.uri = lake.uri(spec.name)

    def __repr__(self) -> str:
        return f"Table({self.spec.name!r})"

    def exists(self) -> bool:
        return self._open() is not None

    def snapshot(self) -> Snapshot:
        """The table at its latest version (created empty first if it does not exist)."""
        dt = self._open()
        if dt is None:
            self._create()
            dt = self._open()
            assert dt is not None
        return Snapshot(self, dt)

    def commit(self, app_id: str, *, in_metadata: bool = False) -> Commit | None:
        """The commit ``app_id`` recorded, with its figures; None if it never landed.

        Args:
            app_id: The commit's id (``shared.batches.commit_id``).
            in_metadata: Also find a commit that carries the id only in its
                ``userMetadata`` JSON, as the Databricks jobs' MERGEs do (Delta Spark records
                one application transaction per write). That reads the table's history, so
                only the Databricks route's recording asks for it.
        """
        dt = self._open()
        if dt is None:
            return None
        recorded = dt.transaction_version(app_id) is not None
        if not recorded and not in_metadata:
            return None
        for entry in dt.history():
            # delta-rs writes the id and figures under their own keys; Delta Spark can only
            # set commitInfo.userMetadata, where the Databricks jobs put the same JSON.
            carried = json.loads(entry.get("userMetadata") or "{}")
            if app_id not in (entry.get(APP_ID_KEY), carried.get(APP_ID_KEY)):
                continue
            figures = json.loads(entry[FIGURES_KEY]) if FIGURES_KEY in entry else carried
            metrics = entry.get("operationMetrics") or {}
            added = next((metrics[k] for k in _ADDED_ROWS if metrics.get(k) is not None), None)
            return Commit(int(entry["version"]), figures, None if added is None else int(added), found=True)
        if not recorded:
            return None
        # The transaction is in the snapshot but its commit info is no longer in the log
        # (log retention): the figures are gone, the commit is not.
        return Commit(None, {}, found=True)

    def append_once(
        self, data: pa.Table | pa.RecordBatchReader, app_id: str, figures: Mapping[str, Any] | None = None
    ) -> Commit:
        """Append ``data`` unless ``app_id`` already committed; returns the commit either way.

        ``data`` may be a stream: delta-rs writes files as it reads and commits once at
        the end, so an exception from the stream leaves the table untouched. The check is
        made on the very snapshot the append commits on top of: delta-rs refuses a commit
        whose application transaction a *concurrent* commit set, but not one the snapshot
        it writes on already holds (a second look at the table would let that through).
        ``Commit.found`` tells the caller the stream was not read.

        Raises:
            CommitConflict: a concurrent writer committed first (perhaps this very ``app_id``):
                look again.
        """
        snapshot = self.snapshot()
        if snapshot.recorded(app_id):
            found = self.commit(app_id)
            assert found is not None
            return found
        return snapshot.append(data, app_id, figures or {})

    def merge_once(
        self,
        source: pl.DataFrame,
        keys: tuple[str, ...],
        updates: Mapping[str, str],
        app_id: str,
        figures: Mapping[str, Any] | None = None,
    ) -> Commit:
        """MERGE ``source`` on ``keys`` (``updates`` for matched rows, insert the rest), once
        per ``app_id``; a MERGE that conflicts is planned again on a fresh snapshot."""

        def merge() -> Commit:
            snapshot = self.snapshot()
            if snapshot.recorded(app_id):
                found = self.commit(app_id)
                assert found is not None
                return found
            return snapshot.merge(source, keys, updates, app_id, figures or {})

        return self.retrying(f"merge into {self.spec.name} ({app_id})", merge)

    def compact(self, column: str | None = None, values: list[str] | None = None) -> list[str]:
        """Rewrite small files into files of up to ``SMALL_FILE_BYTES``; returns what was compacted.

        With ``column`` (a partition column) only the partitions among ``values`` holding
        ``COMPACT_AT_FILES`` small files are compacted (a step keeps the files it reads
        bounded); without it, every partition is (maintenance). A compaction changes no
        data, and one that loses a race is planned again.
        """
        if column is None:
            self._compact_where(None)
            return ["*"]
        if not values:
            return []
        files = self.snapshot().files()
        small = files.filter((pl.col("size_bytes") < SMALL_FILE_BYTES) & pl.col(column).is_in(values))
        due = small.group_by(column).len().filter(pl.col("len") >= COMPACT_AT_FILES)
        compacted = sorted(due.get_column(column).cast(pl.String).to_list())
        for value in compacted:
            self._compact_where((column, value))
        return compacted

    def _compact_where(self, partition: tuple[str, str] | None) -> None:
        with self.lake.lock(join(self.uri, COMPACTION_LOCK)) as held:
            if not held:
                log.info("%s: another writer is compacting it; left to that one", self.spec.name)
                return
            self._compact_locked(partition)

    def _compact_locked(self, partition: tuple[str, str] | None) -> None:
        def compact() -> None:
            dt = self._open()
            if dt is None:
                return
            try:
                dt.optimize.compact(
                    partition_filters=[(partition[0], "=", partition[1])] if partition else None,
                    target_size=SMALL_FILE_BYTES if partition else None,
                    writer_properties=WRITER_PROPERTIES,
                    commit_properties=_commit_properties(
                        None, {"tributary.operation": "compact"}, self.lake.retries
                    ),
                )
            except CommitFailedError as exc:  # a concurrent writer removed files it rewrote
                raise CommitConflict(f"compact {self.spec.name}: {exc}") from exc

        self.retrying(f"compact {self.spec.name} {partition or ''}", compact)

    def vacuum(self, retention_hours: int) -> int:
        """Delete files no version within ``retention_hours`` references; returns how many."""
        dt = self._open()
        if dt is None:
            return 0
        # The policy is VACUUM_RETENTION_HOURS, not the table's own property (7 days by default).
        removed = dt.vacuum(retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False)
        return len(removed)

    def retrying(self, what: str, action: Callable[[], T]) -> T:
        """Run a read-modify-commit ``action``, again on a fresh snapshot when a commit loses a race.

        delta-rs itself retries commits whose files do not overlap; a commit whose reads
        another writer invalidated raises ``CommitConflict`` here and is recomputed.

        Raises:
            CommitConflict: it lost every one of DELTA_COMMIT_RETRIES attempts.
        """
        for attempt in range(self.lake.retries):
            try:
                return action()
            except CommitConflict as exc:
                if attempt == self.lake.retries - 1:
                    raise CommitConflict(f"{what}: lost {self.lake.retries} commit races: {exc}") from exc
                delay = min(5.0, 0.1 * 2**attempt) * (0.5 + random.random())
                log.warning("%s: commit conflict (attempt %d), retrying in %.2fs", what, attempt + 1, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _open(self) -> DeltaTable | None:
        self.lake.prepare()  # a table in a container that does not exist yet is simply absent
        try:
            return DeltaTable(self.uri, storage_options=self.lake.storage_options())
        except TableNotFoundError:
            return None
        except (OSError, DeltaError) as exc:
            if denied(exc):
                raise access_denied(self.uri, exc) from exc
            raise store_error(self.uri, exc, "cannot open the table") from exc

    def _create(self) -> None:
        self.lake.prepare()
        try:
            DeltaTable.create(
                self.uri,
                self.spec.schema,
                mode="ignore",
                partition_by=list(self.spec.partition_by) or None,
                configuration=TABLE_PROPERTIES,
                storage_options=self.lake.storage_options(),
            )
        except (OSError, DeltaError) as exc:
            if self._open() is None:  # a racing creator that won is fine
                raise store_error(self.uri, exc, f"creating {self.spec.name}") from exc


class Snapshot:
    """A table at one version: what a step reads, and what it commits on top of."""

    def __init__(self, table: Table, dt: DeltaTable) -> None:
        self.table = table
        self._dt = dt
        self.version = dt.version()

    def recorded(self, app_id: str) -> bool:
        return self._dt.transaction_version(app_id) is not None

    def transaction(self, app_id: str) -> int | None:
        return self._dt.transaction_version(app_id)

    def scan(self, where: str | None = None) -> pl.LazyFrame:
        """A lazy scan of the files ``where`` may match (partition values and statistics).

        polars reads the Parquet files itself (natively, local or ``az://``), which costs
        a fraction of building a pyarrow dataset per file. Rows are not filtered by
        ``where``: filter the frame.
        """
        schema = pl.DataFrame(
            pa.Table.from_batches([], schema=pa.schema(self._dt.schema().to_arrow()))
        ).schema
        uris = self._dt.file_uris(file_pruning_predicate=where)
        if not uris:
            return pl.LazyFrame(schema=schema)
        partitions = self.table.spec.partition_by
        # Partition columns come last. (No reordering select: it would stop polars pushing a
        # slice down into the scan, and every slice would read from the start.)
        return pl.scan_parquet(
            uris,
            storage_options=self.table.lake.scan_options(),
            hive_partitioning=bool(partitions),
            hive_schema={name: schema[name] for name in partitions} or None,
        )

    def files(self) -> pl.DataFrame:
        """One row per data file: its partition values (text), ``size_bytes`` and ``num_records``."""
        actions = pl.DataFrame(self._dt.get_add_actions(flatten=True))
        partitions = self.table.spec.partition_by
        if actions.is_empty():
            return pl.DataFrame(
                schema={
                    **dict.fromkeys(partitions, pl.String),
                    "size_bytes": pl.Int64,
                    "num_records": pl.Int64,
                }
            )
        # Partition values as the text Delta records them, so callers compare strings.
        renamed = actions.rename({f"partition.{c}": c for c in partitions})
        return renamed.with_columns(pl.col(c).cast(pl.String) for c in partitions)

    def rows(self) -> int:
        files = self.files()
        return int(files.get_column("num_records").sum()) if files.height else 0

    def append(
        self,
        data: pa.Table | pa.RecordBatchReader,
        app_id: str,
        figures: Mapping[str, Any],
        *,
        advance: Mapping[str, int] | None = None,
    ) -> Commit:
        """Append on top of this version; returns the new commit.

        ``advance`` are further application transactions to set: two commits that race to
        set the same one cannot both land, so the loser raises ``CommitConflict``.
        """
        with self._committing(f"append to {self.table.spec.name} ({app_id})", f"append ({app_id})"):
            write_deltalake(
                self._dt,
                data,
                mode="append",
                partition_by=list(self.table.spec.partition_by) or None,
                writer_properties=WRITER_PROPERTIES,
                target_file_size=TARGET_FILE_BYTES,
                commit_properties=_commit_properties(app_id, figures, self.table.lake.retries, advance),
            )
        return Commit(self._dt.version(), dict(figures))

    def merge(
        self,
        source: pl.DataFrame,
        keys: tuple[str, ...],
        updates: Mapping[str, str],
        app_id: str,
        figures: Mapping[str, Any],
    ) -> Commit:
        with self._committing(f"merge into {self.table.spec.name} ({app_id})", f"merge ({app_id})"):
            self._dt.merge(
                source.to_arrow(),
                predicate=" AND ".join(f"t.{k} = s.{k}" for k in keys),
                source_alias="s",
                target_alias="t",
                writer_properties=WRITER_PROPERTIES,
                commit_properties=_commit_properties(app_id, figures, self.table.lake.retries),
            ).when_matched_update(updates=dict(updates)).when_not_matched_insert_all().execute()
        return Commit(self._dt.version(), dict(figures))

    @contextmanager
    def _committing(self, what: str, doing: str) -> Iterator[None]:
        """A write's errors as the callers handle them: a lost race is ``CommitConflict``, a
        refused identity ``StoreAccessDenied``, a store that never answered ``StoreUnavailable``."""
        try:
            yield
        except CommitFailedError as exc:
            raise CommitConflict(f"{what}: {exc}") from exc
        except (OSError, DeltaError) as exc:
            if denied(exc):
                raise access_denied(self.table.uri, exc) from exc
            if not unreachable(exc):
                raise
            raise store_error(self.table.uri, exc, doing) from exc


def _commit_properties(
    app_id: str | None,
    figures: Mapping[str, Any],
    retries: int,
    advance: Mapping[str, int] | None = None,
) -> CommitProperties:
    txns = [Transaction(app_id=app_id, version=1)] if app_id else []
    txns += [Transaction(app_id=k, version=v) for k, v in (advance or {}).items()]
    metadata = {APP_ID_KEY: app_id or "", FIGURES_KEY: json.dumps(dict(figures), sort_keys=True, default=str)}
    return CommitProperties(
        custom_metadata=metadata, max_commit_retries=retries, app_transactions=txns or None
    )


@contextmanager
def _unlocked(name: str) -> Iterator[bool]:
    yield True


__all__ = ["Commit", "Lake", "Snapshot", "Table", "TableSpec"]
