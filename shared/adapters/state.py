"""Batch state in Azure Table Storage: one entity per batch, every update ETag-conditional.

PartitionKey is the dataset, RowKey the batch id. Counts, versions, durations, GB-seconds,
Spark usage and the transition log are JSON strings (Table properties are flat); the headline counts, the
state and the lake are also top-level properties, so queries can filter on them. Every
query is parameterised.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.adapters.blobs import outlast
from shared.adapters.clients import Identity, managed_identity, table_client
from shared.batches import HEADLINE_COUNTS, BatchState, Counts, Route, State, Transition
from shared.costs import SparkUsage
from shared.errors import StateConflict
from shared.settings import StorageAccount

if TYPE_CHECKING:
    from azure.data.tables import TableClient


def now_iso(at: datetime | None = None) -> str:
    """ISO-8601 UTC to the millisecond with ``Z``: how every recorded time is written."""
    return (at or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class BatchStateStore:
    """Reads and writes batch entities in one table."""

    def __init__(
        self,
        account: StorageAccount,
        table: str,
        *,
        retry_seconds: float = 60.0,
        identity: Identity = managed_identity,
    ) -> None:
        self.account = account
        self.table = table
        self.retry_seconds = retry_seconds
        self.identity = identity

    @cached_property
    def client(self) -> TableClient:
        return self._outlast(lambda: table_client(self.account, self.table, self.identity))

    def _outlast(self, call: Any) -> Any:
        return outlast(f"{self.account.table_uri}/{self.table}", call, self.retry_seconds)

    def get(self, dataset: str, batch_id: str) -> BatchState | None:
        try:
            return _from_entity(self._outlast(lambda: self.client.get_entity(dataset, batch_id)))
        except ResourceNotFoundError:
            return None

    def find(self, batch_id: str) -> BatchState | None:
        """A batch by id alone, whatever its dataset."""
        rows = self._outlast(
            lambda: list(self.client.query_entities("RowKey eq @id", parameters={"id": batch_id}))
        )
        return _from_entity(rows[0]) if rows else None

    def create(self, batch: BatchState, *, at: datetime | None = None) -> tuple[BatchState, bool]:
        """Insert a new batch in RECEIVED; returns (the stored batch, whether it was new)."""
        stamped = replace(batch, state=State.RECEIVED, transitions=(Transition(State.RECEIVED, now_iso(at)),))
        try:
            meta = self._outlast(lambda: self.client.create_entity(_entity(stamped)))
        except ResourceExistsError:
            existing = self.get(batch.dataset, batch.batch_id)
            if existing is None:  # deleted between the two calls: try once more
                return self.create(batch, at=at)
            return existing, False
        return replace(stamped, revision=meta.get("etag")), True

    def save(self, previous: BatchState, updated: BatchState) -> BatchState:
        """Replace the entity if it still carries ``previous``'s revision.

        Raises:
            StateConflict: another writer updated (or deleted) it since ``previous`` was read.
        """
        try:
            meta = self._outlast(
                lambda: self.client.update_entity(
                    _entity(updated),
                    mode=UpdateMode.REPLACE,
                    etag=previous.revision,
                    match_condition=MatchConditions.IfNotModified,
                )
            )
        except (ResourceNotFoundError, HttpResponseError) as exc:
            if isinstance(exc, ResourceNotFoundError) or getattr(exc, "status_code", None) in (404, 409, 412):
                raise StateConflict(
                    f"batch {previous.batch_id} changed since it was read; re-read and retry"
                ) from exc
            raise
        return replace(updated, revision=meta.get("etag"))

    def list(
        self,
        *,
        lake: str | None = None,
        dataset: str | None = None,
        state: State | None = None,
        since: str | None = None,
    ) -> Iterator[BatchState]:
        """Batches, filtered by lake, dataset, state and receipt time (ISO string, inclusive)."""
        clauses, params = [], {}
        for column, value in (("lake", lake), ("PartitionKey", dataset), ("state", state)):
            if value:
                clauses.append(f"{column} eq @{column}")
                params[column] = str(value)
        if since:
            clauses.append("received_at ge @since")
            params["since"] = since
        if clauses:
            entities = self._outlast(
                lambda: list(self.client.query_entities(" and ".join(clauses), parameters=params))
            )
        else:
            entities = self._outlast(lambda: list(self.client.list_entities()))
        for entity in entities:
            yield _from_entity(entity)

    def delete(self, batch: BatchState) -> None:
        """Remove a batch's record (tests that lose state on purpose)."""
        try:
            self._outlast(lambda: self.client.delete_entity(batch.dataset, batch.batch_id))
        except ResourceNotFoundError:
            pass


def _entity(batch: BatchState) -> dict[str, Any]:
    counts = batch.counts.to_dict()
    entity: dict[str, Any] = {
        "PartitionKey": batch.dataset,
        "RowKey": batch.batch_id,
        "source": batch.source,
        "size": batch.size,
        "source_etag": batch.etag,
        "lake": batch.lake,
        "landed_at": batch.landed_at,
        "state": batch.state.value,
        "route": batch.route.value if batch.route else "",
        "transitions": json.dumps([t.to_dict() for t in batch.transitions]),
        "counts": json.dumps(counts, sort_keys=True),
        "versions": json.dumps(dict(batch.versions), sort_keys=True),
        "durations": json.dumps(dict(batch.durations), sort_keys=True),
        "gb_seconds": json.dumps(dict(batch.gb_seconds), sort_keys=True),
        "error": batch.error or "",
        "quarantined_to": batch.quarantined_to or "",
        "runs": json.dumps(dict(batch.runs), sort_keys=True),
        "run_pages": json.dumps(dict(batch.run_pages), sort_keys=True),
        "spark_usage": json.dumps({k: v.to_dict() for k, v in batch.spark_usage.items()}, sort_keys=True),
        "received_at": batch.received_at,
    }
    for key in HEADLINE_COUNTS:
        if key in counts:
            entity[key] = int(counts[key])
    return entity


def _from_entity(entity: Mapping[str, Any]) -> BatchState:
    route = entity.get("route")
    return BatchState(
        batch_id=entity["RowKey"],
        dataset=entity["PartitionKey"],
        source=entity.get("source", ""),
        size=int(entity.get("size", 0)),
        etag=entity.get("source_etag", ""),
        lake=entity.get("lake", ""),
        landed_at=entity.get("landed_at", ""),
        state=State(entity.get("state", "RECEIVED")),
        route=Route(route) if route else None,
        transitions=tuple(Transition.from_dict(t) for t in json.loads(entity.get("transitions") or "[]")),
        counts=Counts.from_dict(json.loads(entity.get("counts") or "{}")),
        versions=json.loads(entity.get("versions") or "{}"),
        durations=json.loads(entity.get("durations") or "{}"),
        # Records written before GB-seconds and Spark usage were recorded have neither.
        gb_seconds=json.loads(entity.get("gb_seconds") or "{}"),
        error=entity.get("error") or None,
        quarantined_to=entity.get("quarantined_to") or None,
        runs=json.loads(entity.get("runs") or "{}"),
        run_pages=json.loads(entity.get("run_pages") or "{}"),
        spark_usage={
            run: SparkUsage.from_dict(usage)
            for run, usage in json.loads(entity.get("spark_usage") or "{}").items()
        },
        revision=entity.metadata.get("etag") if hasattr(entity, "metadata") else None,
    )
