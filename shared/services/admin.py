"""Operator actions and views over batches: one batch, a filtered listing, a replay."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from shared import telemetry
from shared.adapters.ledger import RunLedger
from shared.adapters.state import now_iso
from shared.batches import ORCHESTRATOR, PROGRESS, BatchState, Layer, State
from shared.errors import BadRequest, BatchNotFound, ReplayRefused
from shared.layers.context import States
from shared.services.intake import DurableClient, runtime_status
from shared.settings import Settings

log = logging.getLogger(__name__)

_BATCH_ID = re.compile(r"[0-9a-f]{32}")
#: Durable runtime statuses of an orchestration that is still going.
ACTIVE = frozenset({"Pending", "Running", "ContinuedAsNew", "Suspended"})


class Admin:
    """Views and replays for the HTTP API (and anything else an operator drives)."""

    def __init__(self, settings: Settings, states: States, ledger: RunLedger) -> None:
        self.settings = settings
        self.states = states
        self.ledger = ledger

    async def batch(self, batch_id: str, client: DurableClient) -> dict[str, Any]:
        """One batch's record with its orchestration's runtime status.

        Raises:
            BatchNotFound: no batch has this id.
        """
        batch = await asyncio.to_thread(self.states.find, checked_id(batch_id))
        if batch is None:
            raise BatchNotFound(f"no batch {batch_id}")
        return view(batch, await client.get_status(batch_id))

    async def batches(
        self,
        client: DurableClient,
        *,
        dataset: str | None = None,
        state: str | None = None,
        since: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """This lake's batches filtered by dataset, state and receipt time, newest first.

        Raises:
            BadRequest: ``state`` is not a state, or ``since`` is not an ISO date or date-time.
        """
        wanted = _state(state)
        since_iso = _since(since)

        def load() -> list[BatchState]:
            found = self.states.list(
                lake=self.settings.lake_uri, dataset=dataset, state=wanted, since=since_iso
            )
            return sorted(found, key=lambda b: b.received_at, reverse=True)[:limit]

        rows = await asyncio.to_thread(load)
        gate = asyncio.Semaphore(self.settings.backfill_concurrency)

        async def with_status(batch: BatchState) -> dict[str, Any]:
            async with gate:
                return view(batch, await client.get_status(batch.batch_id))

        return list(await asyncio.gather(*(with_status(b) for b in rows)))

    async def replay(
        self, batch_id: str, client: DurableClient, from_layer: str = "validate"
    ) -> dict[str, Any]:
        """Re-run a batch from a layer; the steps' idempotency makes the result the first run's.

        Raises:
            BadRequest: ``from_layer`` is not a layer.
            BatchNotFound: no batch has this id.
            ReplayRefused: the orchestration is still active, or the file is in quarantine.
        """
        try:
            layer = Layer.named(from_layer)
        except KeyError:
            names = ", ".join(layer.label for layer in Layer)
            raise BadRequest(f"from must be one of {names}, not {from_layer!r}") from None
        batch = await asyncio.to_thread(self.states.find, checked_id(batch_id))
        if batch is None:
            raise BatchNotFound(f"no batch {batch_id}")
        status = runtime_status(await client.get_status(batch_id))
        if status in ACTIVE:
            raise ReplayRefused(f"batch {batch_id} is still {status}")
        if batch.state is State.QUARANTINED:
            raise ReplayRefused(
                f"batch {batch_id}'s file was moved to quarantine; land it again to reprocess it"
            )
        target = min(layer.starts_from, batch.furthest(), key=PROGRESS.index)
        reset = await asyncio.to_thread(self._reset, batch, target)
        await asyncio.to_thread(self.ledger.claim, batch_id, force=True)
        await client.start_new(ORCHESTRATOR, batch_id, reset.ref.to_dict())
        log.warning(
            "batch %s replayed from %s (state reset to %s)", batch_id, layer, target,
            extra=telemetry.about(reset, layer),
        )  # fmt: skip
        return {"replayed_from": layer.label, "reset_to": target.value, **reset.to_dict()}

    def _reset(self, batch: BatchState, state: State) -> BatchState:
        return self.states.save(batch, replace(batch.moved(state, now_iso()), error=None))


def checked_id(batch_id: str) -> str:
    """A batch id from a request, if it is one: 32 lowercase hex digits (``batch_id_for``).

    Raises:
        BadRequest: anything else; it never reaches a query or an instance id.
    """
    if not _BATCH_ID.fullmatch(batch_id):
        raise BadRequest(f"not a batch id: {batch_id[:80]!r} (32 hex digits)")
    return batch_id


def view(batch: BatchState, status: Any) -> dict[str, Any]:
    """A batch's record plus its Durable runtime status (None when it never ran)."""
    runtime: dict[str, Any] | None = None
    if runtime_status(status) is not None:
        runtime = {
            "status": runtime_status(status),
            "custom_status": status.custom_status,
            "created_time": _iso(status.created_time),
            "last_updated_time": _iso(status.last_updated_time),
        }
    return {**batch.to_dict(), "runtime": runtime}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _state(value: str | None) -> State | None:
    if not value:
        return None
    try:
        return State(value)
    except ValueError:
        raise BadRequest(f"state must be one of {', '.join(State)}, not {value!r}") from None


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
