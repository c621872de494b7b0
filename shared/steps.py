"""The pipeline's steps, shaped as the Durable activities that will call them.

Each step takes a small reference to a batch, does one layer's work, records the
transition in batch state and returns a small, JSON-ready result: ids, counts, Delta
versions. No rows pass between steps; each reads what the previous layer committed.

Every step is idempotent. A step whose state the batch has already reached returns the
recorded result without touching anything. A step that crashed after its Delta commit
but before its state update finds its commit by application transaction id and
completes the record without committing again.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from deltalake import DeltaTable

from shared.adapters.lake import WRITER_PROPERTIES, Lake, sql_in
from shared.adapters.state import FINAL_STATES, BatchState, BatchStateStore, reached
from shared.adapters.storage import Storage, is_remote, join
from shared.contracts import CONTRACTS, USER_ACTIVITY, Contract
from shared.errors import BatchNotRegistered, PipelineError, QuarantinedFile, TransientError
from shared.pipeline import decode, keyindex, medallion
from shared.pipeline.prefetch import prefetch
from shared.pipeline.validate import failure_counts, validate
from shared.settings import Settings

log = logging.getLogger(__name__)

ROUTE_IN_FUNCTION = "in_function"
# Application transaction every silver commit advances: concurrent silver writers conflict.
SILVER_WRITER = "silver-writer"
ROUTE_DATABRICKS = "databricks"


@dataclass(frozen=True, slots=True)
class BatchRef:
    """What activities pass around: enough to find the batch and its file."""

    batch_id: str
    dataset: str
    source: str
    size: int
    etag: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchRef:
        return cls(
            batch_id=str(data["batch_id"]),
            dataset=str(data["dataset"]),
            source=str(data["source"]),
            size=int(data["size"]),
            etag=str(data["etag"]),
        )


def batch_id_for(source: str, etag: str) -> str:
    """Deterministic batch id: the same file (URL + ETag/content identity) maps to one batch."""
    return hashlib.sha256(f"{source}\n{etag}".encode()).hexdigest()[:32]


def table_name(layer: str, contract: Contract) -> str:
    return f"{layer}/{contract.dataset}"


def gold_table(name: str) -> str:
    return f"gold/{name}"


class Pipeline:
    """The steps over one lake, one landing store and one batch-state table."""

    def __init__(
        self,
        settings: Settings,
        *,
        storage: Storage | None = None,
        lake: Lake | None = None,
        states: BatchStateStore | None = None,
    ) -> None:
        self.settings = settings
        self.storage = storage or Storage(settings.storage_connection)
        self.lake = lake or Lake(settings, self.storage)
        self.states = states or BatchStateStore(settings.storage_connection, settings.state_table)
        self._tables_ready = False

    # -- step 0: register ------------------------------------------------------------------
    def register(
        self,
        source: str,
        *,
        dataset: str = USER_ACTIVITY.dataset,
        size: int | None = None,
        etag: str | None = None,
    ) -> BatchState:
        """Record a landed file as a batch in RECEIVED (or return its existing record).

        Args:
            source: Blob URL, ``az://`` URI or local path of the file.
            dataset: Contract the file follows.
            size: Size in bytes, when the caller (an event) already knows it.
            etag: ETag or content identity, when the caller already knows it.
        """
        if size is None or etag is None or not source.startswith("az://"):
            info = self.storage.info(source)
            source, size, etag = info.uri, info.size, info.etag
        batch = BatchState(
            batch_id=batch_id_for(source, etag),
            dataset=dataset,
            source=source,
            size=size,
            etag=etag,
        )
        stored, _ = self.states.create(batch)
        return stored

    # -- step 1: validate ------------------------------------------------------------------
    def validate(self, ref: BatchRef) -> dict[str, Any]:
        """Check the whole file is readable, count its records and choose its route.

        Ends the batch as EMPTY (no records) or QUARANTINED (unreadable, file moved).
        """
        batch, done = self._start(ref, "VALIDATED")
        if done:
            return self._result(batch)
        started = time.perf_counter()
        try:
            with self.storage.open(ref.source) as stream:
                probe = decode.probe(stream, ref.source)
        except QuarantinedFile as exc:
            return self._quarantine_file(batch, exc.reason)
        route = ROUTE_DATABRICKS if ref.size > self.settings.large_file_bytes else ROUTE_IN_FUNCTION
        # Until the Databricks route exists every size runs in-function; the choice is recorded.
        changes: dict[str, Any] = {
            "route": route,
            "counts": {"records": probe.records},
            "durations": {"validate": _elapsed(started)},
        }
        if probe.records == 0:
            batch = self.states.transition(batch, "EMPTY", **changes)
        else:
            batch = self.states.transition(batch, "VALIDATED", **changes)
        return self._result(batch)

    # -- step 2: bronze + quarantine ----------------------------------------------------
    def bronze(self, ref: BatchRef) -> dict[str, Any]:
        """Decode and check every record; append valid rows to bronze, failures to quarantine."""
        batch, done = self._start(ref, "BRONZE_DONE")
        if done:
            return self._result(batch)
        started = time.perf_counter()
        contract = CONTRACTS[ref.dataset]
        self._ensure_tables(contract)
        bronze, quarantine = table_name("bronze", contract), table_name("quarantine", contract)
        bronze_app, quarantine_app = f"bronze:{ref.batch_id}", f"quarantine:{ref.batch_id}"
        batch_time = _batch_time(batch)
        bronze_schema = medallion.bronze_schema(contract)
        quarantine_schema = medallion.quarantine_schema()
        tally = _Tally()

        def valid_batches() -> Iterator[pa.RecordBatch]:
            with self.storage.open(ref.source) as stream:
                chunks = decode.decode(stream, ref.source, contract, chunk_rows=self.settings.chunk_rows)
                for chunk in _remember_failure(prefetch(chunks), tally):
                    checked = validate(chunk, contract)
                    tally.add(chunk.height, checked.valid.height, checked.quarantined)
                    if not checked.quarantined.is_empty():
                        tally.quarantined_frames.append(
                            medallion.with_batch(
                                checked.quarantined,
                                quarantine_schema,
                                batch_id=ref.batch_id,
                                source=ref.source,
                                batch_time=batch_time,
                            )
                        )
                    rows = medallion.with_batch(
                        checked.valid,
                        bronze_schema,
                        batch_id=ref.batch_id,
                        source=ref.source,
                        batch_time=batch_time,
                    )
                    yield from rows.to_arrow().to_batches()

        arrow_schema = _arrow_schema(bronze_schema)
        try:
            if self.lake.committed(bronze, bronze_app):
                for _ in valid_batches():  # recount what the earlier run committed
                    pass
                bronze_version = self.lake.commit_version(bronze, bronze_app)
            else:
                reader = pa.RecordBatchReader.from_batches(arrow_schema, valid_batches())
                bronze_version = self.lake.append(
                    bronze, reader, app_id=bronze_app, metadata={"tributary.batch_id": ref.batch_id}
                )
        except QuarantinedFile as exc:
            return self._quarantine_file(batch, exc.reason)
        except Exception:
            # delta-rs wraps an exception raised by the stream it reads; nothing was committed.
            if tally.failure is None:
                raise
            return self._quarantine_file(batch, tally.failure.reason)
        quarantine_version = None
        if tally.quarantined_frames:
            frame = pl.concat(tally.quarantined_frames)
            quarantine_version = self.lake.append(
                quarantine, frame.to_arrow(), app_id=quarantine_app
            ) or self.lake.commit_version(quarantine, quarantine_app)
        batch = self.states.transition(
            batch,
            "BRONZE_DONE",
            counts={
                "rows_in": tally.rows_in,
                "rows_valid": tally.rows_valid,
                "rows_quarantined": tally.rows_quarantined,
                "quarantined_by_expectation": tally.by_expectation,
            },
            versions={"bronze": bronze_version, "quarantine": quarantine_version},
            durations={"bronze": _elapsed(started)},
        )
        return self._result(batch)

    # -- step 3: silver --------------------------------------------------------------------
    def silver(self, ref: BatchRef) -> dict[str, Any]:
        """Type, dedupe (in-batch and against silver), geo-enrich and insert into silver.

        Insert-when-not-matched on (event date, key), done without a MERGE: delta-rs' MERGE
        reads every file of the touched partitions, so its cost grows with silver. Here the
        batch's key hashes are checked against silver's ``_key_hash`` column in the touched
        partitions (``keyindex``) and only the new rows are appended, streamed in chunks.
        Every silver commit also bumps the ``silver-writer`` application transaction, so two
        writers whose checks raced conflict, and the loser re-checks against the winner's rows.
        """
        batch, done = self._start(ref, "SILVER_DONE")
        if done:
            return self._result(batch)
        started = time.perf_counter()
        contract = CONTRACTS[ref.dataset]
        self._ensure_tables(contract)
        silver = table_name("silver", contract)
        app_id = f"silver:{ref.batch_id}"
        part, step = contract.partition_by, self.settings.chunk_rows
        bronze_dt = self.lake.open(table_name("bronze", contract))
        assert bronze_dt is not None
        rows = keyindex.BatchRows.of(
            self.lake.scan_version(bronze_dt, sql_in("_batch_id", [ref.batch_id])), ref.batch_id
        )
        first = keyindex.index(rows, contract, keyindex.SCAN_ROWS)
        repeated = keyindex.repeats(rows, first, contract)
        total, touched = first.rows, first.dates
        keys: keyindex.BatchKeys | None = first
        del first
        schema = _arrow_schema(medallion.silver_schema(contract))

        def insert() -> tuple[int | None, int, list[str]]:
            nonlocal keys
            dt = self.lake.open(silver)
            assert dt is not None
            if dt.transaction_version(app_id) is not None:
                recorded = self._batch_scan(dt, batch, part, touched).select(part).collect()
                dates = sorted(d.isoformat() for d in recorded.get_column(part).unique().to_list())
                return self.lake.commit_version(silver, app_id), recorded.height, dates
            if total == len(repeated):
                return None, 0, []
            if keys is None:  # freed by an attempt that lost a commit race
                keys = keyindex.index(rows, contract, keyindex.SCAN_ROWS)
            # Before the check reads the touched partitions: what it reads, and the log every
            # open replays, then stay bounded however many batches a partition has taken.
            if compacted := self.lake.compact_small_files(dt, silver, part, touched):
                log.info("silver: compacted the small files of %s=%s", part, ",".join(compacted))
                dt = self.lake.open(silver)
                assert dt is not None
            held = self.lake.scan_version(dt, sql_in(part, touched))
            dropped = np.union1d(repeated, keyindex.held(held, rows, keys, repeated, contract))
            keys = None  # 8 bytes a row the write below does not need
            written: set[str] = set()

            def typed() -> Iterator[pl.DataFrame]:
                for chunk in rows.chunks(step, dropped):
                    if chunk.height:
                        frame = medallion.silver_rows(chunk, contract)
                        written.update(d.isoformat() for d in frame.get_column(part).unique().to_list())
                        yield frame

            def batches() -> Iterator[pa.RecordBatch]:
                for frame in prefetch(typed()):
                    yield from frame.to_arrow().to_batches()

            writer = dt.transaction_version(SILVER_WRITER) or 0
            version = self.lake.append_to(
                dt,
                pa.RecordBatchReader.from_batches(schema, batches()),
                app_id=app_id,
                partition_by=[part],
                transactions={SILVER_WRITER: writer + 1},
            )
            return version, total - len(dropped), sorted(written)

        version, inserted, dates = self.lake.with_conflict_retry(f"silver insert {ref.batch_id}", insert)
        rows_valid = int(batch.counts.get("rows_valid", total))
        batch = self.states.transition(
            batch,
            "SILVER_DONE",
            counts={
                "silver_inserted": inserted,
                "duplicates_dropped": rows_valid - inserted,
                "duplicates_in_batch": len(repeated),
                # The silver partitions this batch wrote: gold reads only these.
                "event_dates": dates,
            },
            versions={"silver": version},
            durations={"silver": _elapsed(started)},
        )
        return self._result(batch)

    # -- step 4: gold ----------------------------------------------------------------------
    def gold(self, ref: BatchRef) -> dict[str, Any]:
        """Fold the rows this batch inserted into silver into every gold table.

        Each gold table takes this batch's aggregate for the keys it touched and merges it
        additively (sums and counts add, first/last take the extreme), tagged with a Delta
        application transaction per table and batch, so each batch counts exactly once
        and the cost follows the batch's keys, not the size of silver. Distinct users per
        region and day are counted from a (date, region, user) table, so they never add.
        """
        batch, done = self._start(ref, "GOLD_DONE")
        if done:
            return self._result(batch)
        started = time.perf_counter()
        contract = CONTRACTS[ref.dataset]
        self._ensure_tables(contract)
        silver = table_name("silver", contract)
        versions: dict[str, int | None] = {}
        dates = batch.counts.get("event_dates") or None
        silver_dt = self.lake.open(silver)
        assert silver_dt is not None
        if dates:
            inserted = self._batch_scan(silver_dt, batch, contract.partition_by, dates).select(
                list(medallion.GOLD_INPUT)
            )
            expected = int(batch.counts.get("silver_inserted", 0))
            versions = self._update_gold(ref.batch_id, inserted, silver_dt.version(), expected)
        batch = self.states.transition(
            batch,
            "GOLD_DONE",
            versions={f"gold.{k}": v for k, v in versions.items()},
            durations={"gold": _elapsed(started)},
        )
        return self._result(batch)

    def _update_gold(
        self, batch_id: str, inserted: pl.LazyFrame, version: int, expected: int
    ) -> dict[str, int | None]:
        """Aggregate the batch's silver rows, streamed: memory follows the keys, not the rows.

        The rows read must be the ``expected`` rows the silver step inserted, or nothing is
        merged: files pruned wrongly would otherwise fold a partial batch into gold.
        """
        # One aggregate at a time: each holds a hash table of its keys, not the rows.
        daily, users, region_days = (
            query.collect(engine="streaming")
            for query in (
                medallion.daily_user_watch_time(inserted),
                medallion.region_user_events(inserted),
                medallion.region_daily_watch_time(inserted),
            )
        )
        read = int(daily.get_column("events").sum())
        if read != expected:
            raise TransientError(
                f"gold read {read} rows of batch {batch_id} from silver, "
                f"but the silver step inserted {expected}"
            )
        if daily.is_empty():
            return {}
        deltas = {
            "daily_user_watch_time": daily,
            "user_watch_time": medallion.user_watch_time(daily).collect(),
            medallion.REGION_USERS: users,
        }
        versions: dict[str, int | None] = {}
        for name, rows in deltas.items():
            versions[name] = self.lake.with_conflict_retry(
                f"gold {name} {batch_id}",
                lambda name=name, rows=rows: self._merge_gold(name, rows, version, batch_id),  # type: ignore[misc]
            )
        regions = region_days.select("event_date", "region")

        def region_daily() -> int | None:
            users = self.lake.open(gold_table(medallion.REGION_USERS))
            assert users is not None
            touched = self.lake.scan_version(users).join(regions.lazy(), on=["event_date", "region"])
            counted = touched.group_by("event_date", "region").agg(pl.len().cast(pl.Int64).alias("users"))
            rows = region_days.lazy().drop("users").join(counted, on=["event_date", "region"]).collect()
            # users is a count of the (date, region, user) table at its version, not a sum.
            return self._merge_gold("region_daily_watch_time", rows, users.version(), batch_id)

        versions["region_daily_watch_time"] = self.lake.with_conflict_retry(
            f"gold region_daily_watch_time {batch_id}", region_daily
        )
        return versions

    def _merge_gold(self, name: str, rows: pl.DataFrame, source_version: int, batch_id: str) -> int | None:
        table = gold_table(name)
        app_id = f"gold.{name}:{batch_id}"
        dt = self.lake.open(table)
        assert dt is not None
        if dt.transaction_version(app_id) is not None:
            return self.lake.commit_version(table, app_id)
        keys = medallion.GOLD_KEYS[name]
        source = rows.with_columns(pl.lit(source_version, pl.Int64).alias("_source_version"))
        dt.merge(
            source.select(list(medallion.GOLD_SCHEMAS[name])).to_arrow(),
            predicate=" AND ".join(f"t.{k} = s.{k}" for k in keys),
            source_alias="s",
            target_alias="t",
            writer_properties=WRITER_PROPERTIES,
            commit_properties=self.lake.commit_properties(app_id),
        ).when_matched_update(updates=medallion.GOLD_UPDATES[name]).when_not_matched_insert_all().execute()
        return dt.version()

    # -- failure and quarantine -----------------------------------------------------------
    def fail(self, ref: BatchRef, error: str) -> dict[str, Any]:
        """Record that a batch failed permanently (or ran out of retries)."""
        batch = self._load(ref)
        if batch.state in FINAL_STATES:
            return self._result(batch)
        batch = self.states.transition(batch, "FAILED", error=error[:4000])
        return self._result(batch)

    def _quarantine_file(self, batch: BatchState, reason: str) -> dict[str, Any]:
        destination = self.quarantine_destination(batch.source)
        self.storage.move(batch.source, destination)
        log.warning("quarantined %s -> %s: %s", batch.source, destination, reason)
        batch = self.states.transition(
            batch, "QUARANTINED", error=reason, counts={"quarantined_to": destination}
        )
        return self._result(batch)

    def quarantine_destination(self, source: str) -> str:
        """Where an unreadable file goes: the quarantine root plus the file's own path."""
        capture = self.settings.capture_uri
        if source.startswith(capture + "/"):
            relative = source[len(capture) + 1 :]
        elif is_remote(source):
            loc = self.storage.locate(source)
            relative = f"{loc.container}/{loc.path}"
        else:
            relative = Path(source).resolve().as_posix().lstrip("/")
        return join(self.settings.quarantine_uri, relative)

    # -- a whole batch, sequentially (CLI, backfills) ------------------------------------
    def run(self, source: str, *, dataset: str = USER_ACTIVITY.dataset) -> BatchState:
        """Every step for one file, in order, as the orchestrator sequences them."""
        batch = self.register(source, dataset=dataset)
        ref = BatchRef(batch.batch_id, batch.dataset, batch.source, batch.size, batch.etag)
        for step in (self.validate, self.bronze, self.silver, self.gold):
            try:
                result = step(ref)
            except PipelineError as exc:
                self.fail(ref, f"{type(exc).__name__}: {exc}")
                raise
            if result["state"] in FINAL_STATES:
                break
        return self._load(ref)

    # -- helpers ---------------------------------------------------------------------------
    def _load(self, ref: BatchRef) -> BatchState:
        batch = self.states.get(ref.dataset, ref.batch_id)
        if batch is None:
            raise BatchNotRegistered(ref.batch_id)
        return batch

    def _start(self, ref: BatchRef, target: str) -> tuple[BatchState, bool]:
        """Load the batch; say whether ``target`` (or a final state) is already reached."""
        batch = self._load(ref)
        if batch.state in FINAL_STATES or reached(batch.state, target):
            return batch, True
        if batch.state == "FAILED":
            # An explicit re-run of a failed batch resumes where its commits stopped.
            batch = self.states.save(batch, _resume_state(batch))
        return batch, False

    def _result(self, batch: BatchState) -> dict[str, Any]:
        return {
            "batch_id": batch.batch_id,
            "state": batch.state,
            "route": batch.route,
            "counts": batch.counts,
            "versions": batch.versions,
            "error": batch.error,
        }

    def _ensure_tables(self, contract: Contract) -> None:
        if self._tables_ready:
            return
        self.lake.prepare()
        self.lake.ensure(table_name("bronze", contract), _arrow_schema(medallion.bronze_schema(contract)))
        self.lake.ensure(table_name("quarantine", contract), _arrow_schema(medallion.quarantine_schema()))
        self.lake.ensure(
            table_name("silver", contract),
            _arrow_schema(medallion.silver_schema(contract)),
            partition_by=[contract.partition_by],
        )
        for name, schema in medallion.GOLD_SCHEMAS.items():
            self.lake.ensure(gold_table(name), _arrow_schema(schema))
        self._tables_ready = True

    def _batch_scan(
        self, dt: DeltaTable, batch: BatchState, column: str, dates: list[str] | None
    ) -> pl.LazyFrame:
        """One batch's rows at ``dt``'s version, its files pruned by the batch's id, its
        registration time and the ``column`` values in ``dates``. The time matters once files
        are compacted: they span many (random) batch ids but only earlier batches' times."""
        where = [sql_in("_batch_id", [batch.batch_id]), f"_batch_time = '{_batch_time(batch).isoformat()}'"]
        if dates:
            where.append(sql_in(column, dates))
        return self.lake.scan_version(dt, " AND ".join(where)).filter(pl.col("_batch_id") == batch.batch_id)


class _Tally:
    def __init__(self) -> None:
        self.rows_in = 0
        self.rows_valid = 0
        self.rows_quarantined = 0
        self.by_expectation: dict[str, int] = {}
        self.quarantined_frames: list[pl.DataFrame] = []
        self.failure: QuarantinedFile | None = None

    def add(self, rows_in: int, rows_valid: int, quarantined: pl.DataFrame) -> None:
        self.rows_in += rows_in
        self.rows_valid += rows_valid
        self.rows_quarantined += quarantined.height
        for name, count in failure_counts(quarantined).items():
            self.by_expectation[name] = self.by_expectation.get(name, 0) + count


def _remember_failure(chunks: Iterator[pl.DataFrame], tally: _Tally) -> Iterator[pl.DataFrame]:
    """Pass chunks through, noting a QuarantinedFile before it propagates."""
    try:
        yield from chunks
    except QuarantinedFile as exc:
        tally.failure = exc
        raise


def _resume_state(batch: BatchState) -> BatchState:
    from dataclasses import replace

    last_good = "RECEIVED"
    for transition in batch.transitions:
        if transition["state"] in ("RECEIVED", "VALIDATED", "BRONZE_DONE", "SILVER_DONE"):
            last_good = transition["state"]
    return replace(batch, state=last_good, error=None)


def _batch_time(batch: BatchState) -> datetime:
    at = batch.transitions[0]["at"] if batch.transitions else None
    if not at:
        return datetime.now(UTC)
    return datetime.fromisoformat(at.replace("Z", "+00:00"))


def _elapsed(started: float) -> float:
    return round(time.perf_counter() - started, 3)


def _arrow_schema(schema: dict[str, pl.DataType]) -> pa.Schema:
    return pl.DataFrame(schema=schema).to_arrow().schema
