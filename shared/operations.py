"""Operations on batches, callable without HTTP: intake, starting, replay, backfill, views.

Starting an orchestration for a batch must happen once per batch however many copies of
its event arrive, and at the same moment. Three guards, in order:

1. batch state: a batch in a final state (or FAILED) is never restarted by an event;
2. the Durable instance (instance id = batch id): an instance that exists in any
   runtime status is left alone;
3. a start claim, inserted into the operations table: Table Storage inserts are atomic,
   so of N deliveries that all passed 1 and 2 exactly one wins and calls ``start_new``.
   A claim whose start never happened (the winner crashed) goes stale after
   ``CLAIM_STALE_AFTER`` and the next delivery takes it over.

host.json's ``overridableExistingInstanceStates: NonRunningStates`` is the backstop:
``start_new`` on a running instance fails, and that failure means someone else started it.
Re-running a finished batch is only ever ``replay``, an explicit operator action.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import azure.durable_functions as df
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.adapters.state import FINAL_STATES, PROGRESS, BatchState, open_table
from shared.adapters.storage import is_remote, join
from shared.errors import BadRequest, BatchNotFound, PermanentError, ReplayRefused, StateConflict
from shared.events import CAPTURE_SUFFIXES, CaptureTarget, Decision, Envelope, decide
from shared.orchestration import ORCHESTRATOR
from shared.settings import Settings
from shared.steps import BatchRef, Pipeline

log = logging.getLogger(__name__)

CLAIM_STALE_AFTER = timedelta(minutes=15)
# Replaying from a layer resets the batch to the state that layer starts from.
REPLAY_FROM: dict[str, str] = {
    "validate": "RECEIVED",
    "bronze": "VALIDATED",
    "silver": "BRONZE_DONE",
    "gold": "SILVER_DONE",
}
ACTIVE_RUNTIME_STATES = frozenset(
    {
        df.OrchestrationRuntimeStatus.Pending,
        df.OrchestrationRuntimeStatus.Running,
        df.OrchestrationRuntimeStatus.ContinuedAsNew,
        df.OrchestrationRuntimeStatus.Suspended,
    }
)

Action = Literal["started", "skipped", "empty", "ignored"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What intake or backfill did with one file."""

    action: Action
    reason: str
    batch_id: str = ""
    state: str = ""
    source: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "action": self.action,
            "reason": self.reason,
            "batch_id": self.batch_id,
            "state": self.state,
            "source": self.source,
        }


# -- activities ------------------------------------------------------------------------------
def run_step(pipeline: Pipeline, layer: str, batch: dict[str, Any]) -> dict[str, Any]:
    """Run one layer's step for the activity of the same name.

    A ``PermanentError`` is recorded (FAILED) and returned, not raised: retrying cannot
    fix it, and the orchestrator stops on the returned state. Anything else propagates
    and the Durable runtime retries the activity.
    """
    steps: dict[str, Callable[[BatchRef], dict[str, Any]]] = {
        "validate": pipeline.validate,
        "bronze": pipeline.bronze,
        "silver": pipeline.silver,
        "gold": pipeline.gold,
    }
    ref = BatchRef.from_dict(batch)
    try:
        return steps[layer](ref)
    except PermanentError as exc:
        log.error("batch %s: %s failed permanently: %s", ref.batch_id, layer, exc)
        return pipeline.fail(ref, f"{layer}: {type(exc).__name__}: {exc}")


def fail_step(pipeline: Pipeline, payload: dict[str, Any]) -> dict[str, Any]:
    """Record FAILED for a batch whose step ran out of retries."""
    return pipeline.fail(BatchRef.from_dict(payload["batch"]), str(payload["error"]))


# -- the operations table: start claims and maintenance records -----------------------------
class RunLedger:
    """Start claims (partition ``run``) and maintenance records (partition ``maintenance``)."""

    RUNS = "run"
    MAINTENANCE = "maintenance"

    def __init__(self, connection: str, table: str) -> None:
        self._connection = connection
        self._table = table
        self._client: TableClient | None = None

    @property
    def client(self) -> TableClient:
        if self._client is None:
            self._client = open_table(self._connection, self._table)
        return self._client

    def claim(self, batch_id: str, *, force: bool = False, now: datetime | None = None) -> bool:
        """Claim the right to start ``batch_id``'s orchestration; True for exactly one caller.

        Args:
            batch_id: The batch (and orchestration instance) id.
            force: An operator replay: take the claim whatever its age.
            now: The current time (tests).
        """
        now = now or datetime.now(UTC)
        entity = {"PartitionKey": self.RUNS, "RowKey": batch_id, "claimed_at": now.isoformat(), "starts": 1}
        try:
            self.client.create_entity(entity)
            return True
        except ResourceExistsError:
            pass
        try:
            existing = self.client.get_entity(self.RUNS, batch_id)
        except ResourceNotFoundError:
            return False
        claimed_at = datetime.fromisoformat(str(existing.get("claimed_at")))
        if not force and now - claimed_at < CLAIM_STALE_AFTER:
            return False
        entity["starts"] = int(existing.get("starts", 1)) + 1
        try:
            self.client.update_entity(
                entity,
                mode=UpdateMode.REPLACE,
                etag=existing.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except HttpResponseError as exc:
            if exc.status_code == 412:  # another caller took it first
                return False
            raise
        return True

    def record_maintenance(self, summary: dict[str, Any], at: datetime) -> None:
        """Store one maintenance run; newest first in the partition."""
        inverted = f"{10**13 - int(at.timestamp() * 1000):013d}"
        self.client.upsert_entity(
            {
                "PartitionKey": self.MAINTENANCE,
                "RowKey": inverted,
                "at": at.isoformat(),
                "summary": json.dumps(summary, sort_keys=True, default=str)[:30_000],
            }
        )

    def maintenance_runs(self, limit: int = 10) -> list[dict[str, Any]]:
        """The latest maintenance runs, newest first."""
        rows = self.client.query_entities("PartitionKey eq @p", parameters={"p": self.MAINTENANCE})
        out: list[dict[str, Any]] = []
        for row in rows:
            out.append({"at": row["at"], **json.loads(row["summary"])})
            if len(out) >= limit:
                break
        return out


# -- operations ------------------------------------------------------------------------------
class Operations:
    """Intake, replay, backfill and views over one pipeline and one Durable task hub."""

    def __init__(
        self,
        settings: Settings,
        *,
        pipeline: Pipeline | None = None,
        ledger: RunLedger | None = None,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline or Pipeline(settings)
        self.ledger = ledger or RunLedger(settings.storage_connection, settings.operations_table)
        self.target = CaptureTarget.from_settings(settings)

    # -- intake ------------------------------------------------------------------------------
    def decide(self, envelope: Envelope) -> Decision:
        """What an event means for this app (see ``shared.events.decide``)."""
        return decide(envelope, self.target)

    async def intake(self, envelope: Envelope, client: df.DurableOrchestrationClient) -> Outcome:
        """Handle one Event Grid event: ignore it, record an EMPTY batch, or start its batch.

        Raises:
            UnknownEventType: the event's type is not one this app handles.
        """
        decision = self.decide(envelope)
        if decision.action == "ignore":
            log.warning("event %s ignored: %s", envelope.id, decision.reason)
            return Outcome("ignored", decision.reason)
        try:
            batch = await asyncio.to_thread(
                self.pipeline.register, decision.source, size=decision.size, etag=decision.etag
            )
        except ResourceNotFoundError:
            reason = f"{decision.source} no longer exists"
            log.warning("event %s ignored: %s", envelope.id, reason)
            return Outcome("ignored", reason, source=decision.source)
        if decision.action == "empty":
            batch = await asyncio.to_thread(self._mark_empty, batch)
            return Outcome("empty", decision.reason, batch.batch_id, batch.state, batch.source)
        return await self.start(batch, client)

    def _mark_empty(self, batch: BatchState) -> BatchState:
        states = self.pipeline.states
        for _ in range(5):
            if batch.state != "RECEIVED":
                return batch
            try:
                return states.transition(batch, "EMPTY", counts={"records": 0})
            except StateConflict:
                reread = states.get(batch.dataset, batch.batch_id)
                assert reread is not None
                batch = reread
        return batch

    async def start(self, batch: BatchState, client: df.DurableOrchestrationClient) -> Outcome:
        """Start the batch's orchestration unless it is done, running, or being started."""

        def skipped(reason: str) -> Outcome:
            log.info("batch %s not started: %s", batch.batch_id, reason)
            return Outcome("skipped", reason, batch.batch_id, batch.state, batch.source)

        if batch.state in FINAL_STATES or batch.state == "FAILED":
            return skipped(
                f"batch is {batch.state}; re-run it with POST /api/batches/{batch.batch_id}/replay"
            )
        status = await client.get_status(batch.batch_id)
        if status.runtime_status is not None:
            return skipped(f"its orchestration is {status.runtime_status.value}")
        if not await asyncio.to_thread(self.ledger.claim, batch.batch_id):
            return skipped("another delivery of the same file is starting it")
        if not await self._start_new(client, batch):
            return skipped("another delivery of the same file started it")
        log.info("batch %s started for %s", batch.batch_id, batch.source)
        return Outcome("started", "orchestration started", batch.batch_id, batch.state, batch.source)

    async def _start_new(self, client: df.DurableOrchestrationClient, batch: BatchState) -> bool:
        """``start_new`` with the batch id; False when the instance already existed."""
        ref = BatchRef(batch.batch_id, batch.dataset, batch.source, batch.size, batch.etag)
        try:
            await client.start_new(ORCHESTRATOR, batch.batch_id, ref.to_dict())
        except Exception as exc:  # the SDK raises bare Exception for every non-2xx answer
            status = await client.get_status(batch.batch_id)
            if status.runtime_status is None and "already exists" not in str(exc).lower():
                raise
            return False
        return True

    # -- replay ------------------------------------------------------------------------------
    async def replay(
        self, batch_id: str, client: df.DurableOrchestrationClient, from_layer: str = "validate"
    ) -> dict[str, Any]:
        """Re-run a batch from a layer; the steps' idempotency makes the result the first run's.

        Raises:
            BadRequest: ``from_layer`` is not a layer.
            BatchNotFound: no batch has this id.
            ReplayRefused: the orchestration is still active, or the file is in quarantine.
        """
        if from_layer not in REPLAY_FROM:
            raise BadRequest(f"from must be one of {', '.join(REPLAY_FROM)}, not {from_layer!r}")
        batch = await asyncio.to_thread(self.pipeline.states.find, batch_id)
        if batch is None:
            raise BatchNotFound(f"no batch {batch_id}")
        status = await client.get_status(batch_id)
        if status.runtime_status in ACTIVE_RUNTIME_STATES:
            raise ReplayRefused(f"batch {batch_id} is still {status.runtime_status.value}")
        if batch.state == "QUARANTINED":
            raise ReplayRefused(
                f"batch {batch_id}'s file was moved to quarantine; land it again to reprocess it"
            )
        target = _earlier(REPLAY_FROM[from_layer], _furthest_reached(batch))
        batch = await asyncio.to_thread(self._reset, batch, target)
        await asyncio.to_thread(self.ledger.claim, batch_id, force=True)
        ref = BatchRef(batch.batch_id, batch.dataset, batch.source, batch.size, batch.etag)
        await client.start_new(ORCHESTRATOR, batch_id, ref.to_dict())
        log.warning("batch %s replayed from %s (state reset to %s)", batch_id, from_layer, target)
        return {"replayed_from": from_layer, "reset_to": target, **batch.to_dict()}

    def _reset(self, batch: BatchState, state: str) -> BatchState:
        return self.pipeline.states.transition(batch, state, error=None)

    # -- backfill ----------------------------------------------------------------------------
    async def backfill(
        self, prefix: str, client: df.DurableOrchestrationClient, *, limit: int | None = None
    ) -> dict[str, Any]:
        """Register and start every Capture file under a prefix, skipping done batches.

        Args:
            prefix: ``az://container/path`` or a path relative to CAPTURE_URI.
            client: The Durable client.
            limit: Start at most this many files (in name order).

        Returns:
            Counts per action and one outcome per file.
        """
        root = prefix if is_remote(prefix) else join(self.settings.capture_uri, prefix)
        storage = self.pipeline.storage
        files = await asyncio.to_thread(lambda: list(storage.list(root, CAPTURE_SUFFIXES)))
        if limit is not None:
            files = files[:limit]
        gate = asyncio.Semaphore(self.settings.backfill_concurrency)

        async def one(uri: str, size: int, etag: str) -> Outcome:
            async with gate:
                batch = await asyncio.to_thread(self.pipeline.register, uri, size=size, etag=etag)
                return await self.start(batch, client)

        outcomes = await asyncio.gather(*(one(f.uri, f.size, f.etag) for f in files))
        counts: dict[str, int] = {}
        for outcome in outcomes:
            counts[outcome.action] = counts.get(outcome.action, 0) + 1
        return {"prefix": root, "files": len(files), **counts, "batches": [o.to_dict() for o in outcomes]}

    # -- views -------------------------------------------------------------------------------
    async def batch(self, batch_id: str, client: df.DurableOrchestrationClient) -> dict[str, Any]:
        """One batch's record with its orchestration's runtime status.

        Raises:
            BatchNotFound: no batch has this id.
        """
        batch = await asyncio.to_thread(self.pipeline.states.find, batch_id)
        if batch is None:
            raise BatchNotFound(f"no batch {batch_id}")
        return view(batch, await client.get_status(batch_id))

    async def batches(
        self,
        client: df.DurableOrchestrationClient,
        *,
        dataset: str | None = None,
        state: str | None = None,
        since: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Batches filtered by dataset, state and receipt date, newest first, with runtime status.

        Raises:
            BadRequest: ``since`` is not an ISO date or date-time.
        """
        since_iso = _since(since)

        def load() -> list[BatchState]:
            found = self.pipeline.states.list(dataset=dataset, state=state, since=since_iso)
            rows = sorted(found, key=_received_at, reverse=True)
            return rows[:limit]

        rows = await asyncio.to_thread(load)
        gate = asyncio.Semaphore(self.settings.backfill_concurrency)

        async def with_status(batch: BatchState) -> dict[str, Any]:
            async with gate:
                return view(batch, await client.get_status(batch.batch_id))

        return list(await asyncio.gather(*(with_status(b) for b in rows)))


def view(batch: BatchState, status: df.DurableOrchestrationStatus | None) -> dict[str, Any]:
    """A batch's record plus its Durable runtime status (None when it never ran)."""
    runtime: dict[str, Any] | None = None
    if status is not None and status.runtime_status is not None:
        runtime = {
            "status": status.runtime_status.value,
            "custom_status": status.custom_status,
            "created_time": _iso(status.created_time),
            "last_updated_time": _iso(status.last_updated_time),
        }
    return {**batch.to_dict(), "runtime": runtime}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _received_at(batch: BatchState) -> str:
    return batch.transitions[0]["at"] if batch.transitions else ""


def _since(value: str | None) -> str | None:
    if not value:
        return None
    try:
        if len(value) == 10:
            return date.fromisoformat(value).isoformat()
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"since must be an ISO date or date-time, not {value!r}") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed.isoformat(timespec="milliseconds") + "Z"


def _furthest_reached(batch: BatchState) -> str:
    furthest = 0
    for transition in _transitions(batch):
        if transition in PROGRESS:
            furthest = max(furthest, PROGRESS.index(transition))
    return PROGRESS[furthest]


def _transitions(batch: BatchState) -> Iterator[str]:
    yield from (t["state"] for t in batch.transitions)
    yield batch.state


def _earlier(a: str, b: str) -> str:
    return a if PROGRESS.index(a) <= PROGRESS.index(b) else b


__all__ = [
    "REPLAY_FROM",
    "BadRequest",
    "BatchNotFound",
    "Operations",
    "Outcome",
    "ReplayRefused",
    "RunLedger",
    "fail_step",
    "run_step",
    "view",
]
