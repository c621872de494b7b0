"""Intake: register a landed file as a batch, and start its orchestration exactly once.

However many copies of a file's event arrive, and at the same moment, one orchestration
starts. Three guards, in order:

1. batch state: a batch in a final state (or FAILED) is never restarted by an event;
2. the Durable instance (instance id = batch id): one that exists in any status is left alone;
3. a start claim in the operations table: inserts are atomic, so of N deliveries that
   passed 1 and 2 exactly one wins and calls ``start_new``. A claim whose start never
   happened (the winner crashed) goes stale and the next delivery takes it over.

host.json's ``overridableExistingInstanceStates: NonRunningStates`` is the backstop.
Re-running a finished batch is only ever a replay, an explicit operator action.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from shared import telemetry
from shared.adapters.ledger import RunLedger
from shared.adapters.state import now_iso
from shared.adapters.storage import ObjectInfo
from shared.batches import ORCHESTRATOR, BatchState, Counts, State, batch_id_for
from shared.contracts import USER_ACTIVITY
from shared.errors import SourceGone, StateConflict
from shared.events import CAPTURE_SUFFIXES, CaptureTarget, Envelope, decide
from shared.layers.context import Files, States
from shared.settings import Settings
from shared.uris import is_remote, join

log = logging.getLogger(__name__)

Action = Literal["started", "skipped", "empty", "ignored"]


class DurableClient(Protocol):
    """What intake needs of ``df.DurableOrchestrationClient``."""

    async def start_new(
        self, orchestration_function_name: str, instance_id: str | None = None, client_input: Any = None
    ) -> str: ...
    async def get_status(self, instance_id: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """What intake or backfill did with one file."""

    action: Action
    reason: str
    batch_id: str = ""
    state: str = ""
    source: str = ""
    batch: BatchState | None = field(default=None, compare=False, repr=False)
    """The batch record the decision was made on, when there is one (not part of ``to_dict``)."""

    @classmethod
    def on(cls, action: Action, reason: str, batch: BatchState) -> Outcome:
        """The decision ``action`` about ``batch``."""
        return cls(action, reason, batch.batch_id, batch.state, batch.source, batch)

    def to_dict(self) -> dict[str, str]:
        return {
            "action": self.action,
            "reason": self.reason,
            "batch_id": self.batch_id,
            "state": self.state,
            "source": self.source,
        }


def runtime_status(status: Any) -> str | None:
    """The Durable runtime status of an instance as text, or None when it never ran."""
    value = getattr(status, "runtime_status", None)
    return None if value is None else str(getattr(value, "value", value))


def register(
    settings: Settings, states: States, info: ObjectInfo, dataset: str = USER_ACTIVITY.dataset
) -> BatchState:
    """Record a landed file as a batch in RECEIVED, or return the record it already has."""
    batch = BatchState(
        batch_id=batch_id_for(settings.lake_uri, info.uri, info.etag),
        dataset=dataset,
        source=info.uri,
        size=info.size,
        etag=info.etag,
        lake=settings.lake_uri,
        landed_at=info.modified,
    )
    stored, _ = states.create(batch)
    return stored


class Intake:
    """Events and backfills in; batches registered and started out."""

    def __init__(self, settings: Settings, files: Files, states: States, ledger: RunLedger) -> None:
        self.settings = settings
        self.files = files
        self.states = states
        self.ledger = ledger
        self.target = CaptureTarget.from_settings(settings)

    async def event(self, envelope: Envelope, client: DurableClient) -> Outcome:
        """Handle one Event Grid event: ignore it, record an EMPTY batch, or start its batch.

        Raises:
            UnknownEventType: the event's type is not one this app handles.
        """
        decision = decide(envelope, self.target)
        if decision.action == "ignore":
            log.warning("event %s ignored: %s", envelope.id, decision.reason)
            return Outcome("ignored", decision.reason)
        try:
            # The file's own properties, not the event's: its ETag and time identify the
            # batch, and a file deleted since the event is acknowledged, not retried.
            info = await asyncio.to_thread(self.files.info, decision.source)
            batch = await asyncio.to_thread(register, self.settings, self.states, info)
        except SourceGone as exc:
            log.warning("event %s ignored: %s", envelope.id, exc)
            return Outcome("ignored", str(exc), source=decision.source)
        if decision.action == "empty":
            batch = await asyncio.to_thread(self._mark_empty, batch)
            return Outcome.on("empty", decision.reason, batch)
        return await self.start(batch, client)

    def _mark_empty(self, batch: BatchState) -> BatchState:
        """Record a header-only Capture window EMPTY (a final state, reported as such)."""
        for _ in range(5):
            if batch.state is not State.RECEIVED:
                return batch
            try:
                empty = self.states.save(batch, batch.moved(State.EMPTY, now_iso(), counts=Counts(records=0)))
            except StateConflict:
                reread = self.states.get(batch.dataset, batch.batch_id)
                assert reread is not None
                batch = reread
                continue
            telemetry.batch_finished(empty, None)
            return empty
        return batch

    async def start(self, batch: BatchState, client: DurableClient) -> Outcome:
        """Start the batch's orchestration unless it is done, running, or being started."""

        def skipped(reason: str) -> Outcome:
            log.info("batch %s not started: %s", batch.batch_id, reason, extra=telemetry.about(batch))
            return Outcome.on("skipped", reason, batch)

        if batch.state.stops:
            return skipped(
                f"batch is {batch.state}; re-run it with POST /api/batches/{batch.batch_id}/replay"
            )
        status = runtime_status(await client.get_status(batch.batch_id))
        if status is not None:
            return skipped(f"its orchestration is {status}")
        if not await asyncio.to_thread(self.ledger.claim, batch.batch_id):
            return skipped("another delivery of the same file is starting it")
        if not await start_instance(client, batch):
            return skipped("another delivery of the same file started it")
        log.info("batch %s started for %s", batch.batch_id, batch.source, extra=telemetry.about(batch))
        return Outcome.on("started", "orchestration started", batch)

    async def backfill(
        self, prefix: str, client: DurableClient, *, limit: int | None = None
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
        found = await asyncio.to_thread(lambda: list(self.files.list(root, CAPTURE_SUFFIXES)))
        found = found[:limit] if limit is not None else found
        gate = asyncio.Semaphore(self.settings.backfill_concurrency)

        async def one(info: ObjectInfo) -> Outcome:
            async with gate:
                batch = await asyncio.to_thread(register, self.settings, self.states, info)
                return await self.start(batch, client)

        outcomes = await asyncio.gather(*(one(info) for info in found))
        counts: dict[str, int] = {}
        for outcome in outcomes:
            counts[outcome.action] = counts.get(outcome.action, 0) + 1
        return {"prefix": root, "files": len(found), **counts, "batches": [o.to_dict() for o in outcomes]}


async def start_instance(client: DurableClient, batch: BatchState) -> bool:
    """``start_new`` with the batch id as instance id; False when the instance already existed."""
    try:
        await client.start_new(ORCHESTRATOR, batch.batch_id, batch.ref.to_dict())
    except Exception as exc:  # the Durable SDK raises a bare Exception for every non-2xx answer
        if (
            runtime_status(await client.get_status(batch.batch_id)) is None
            and "already exists" not in str(exc).lower()
        ):
            raise
        return False
    return True
