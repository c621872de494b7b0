"""Batch state in Azure Table Storage: one entity per batch, ETag-conditional updates.

PartitionKey is the dataset, RowKey the batch id. Counts, versions, durations and the
transition log are stored as JSON strings (Table properties are flat); the headline
numbers are also top-level properties so they can be filtered on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode

from shared.errors import StateConflict

State = Literal[
    "RECEIVED",
    "VALIDATED",
    "BRONZE_DONE",
    "SILVER_DONE",
    "GOLD_DONE",
    "EMPTY",
    "QUARANTINED",
    "FAILED",
]
FINAL_STATES: frozenset[str] = frozenset({"GOLD_DONE", "EMPTY", "QUARANTINED"})
# Order of the happy path; a step is done when the batch has reached its state.
PROGRESS: tuple[str, ...] = ("RECEIVED", "VALIDATED", "BRONZE_DONE", "SILVER_DONE", "GOLD_DONE")


def reached(state: str, target: str) -> bool:
    """Whether a batch in ``state`` has passed ``target`` on the happy path."""
    if state in PROGRESS and target in PROGRESS:
        return PROGRESS.index(state) >= PROGRESS.index(target)
    return False


@dataclass(frozen=True, slots=True)
class BatchState:
    """Everything recorded about one batch."""

    batch_id: str
    dataset: str
    source: str
    size: int
    etag: str
    state: str = "RECEIVED"
    route: str = ""
    transitions: tuple[dict[str, str], ...] = ()
    counts: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, int | None] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    row_etag: str | None = None  # the Table entity's ETag; not part of the record itself

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "dataset": self.dataset,
            "source": self.source,
            "size": self.size,
            "etag": self.etag,
            "state": self.state,
            "route": self.route,
            "transitions": list(self.transitions),
            "counts": self.counts,
            "versions": self.versions,
            "durations": self.durations,
            "error": self.error,
        }

    def _entity(self) -> dict[str, Any]:
        counts = self.counts
        entity: dict[str, Any] = {
            "PartitionKey": self.dataset,
            "RowKey": self.batch_id,
            "source": self.source,
            "size": self.size,
            "source_etag": self.etag,
            "state": self.state,
            "route": self.route,
            "transitions": json.dumps(list(self.transitions)),
            "counts": json.dumps(counts, sort_keys=True),
            "versions": json.dumps(self.versions, sort_keys=True),
            "durations": json.dumps(self.durations, sort_keys=True),
            "error": self.error or "",
            "received_at": self.transitions[0]["at"] if self.transitions else "",
        }
        for key in ("rows_in", "rows_valid", "rows_quarantined", "silver_inserted", "duplicates_dropped"):
            if key in counts:
                entity[key] = int(counts[key])
        return entity

    @classmethod
    def _from_entity(cls, entity: dict[str, Any]) -> BatchState:
        return cls(
            batch_id=entity["RowKey"],
            dataset=entity["PartitionKey"],
            source=entity.get("source", ""),
            size=int(entity.get("size", 0)),
            etag=entity.get("source_etag", ""),
            state=entity.get("state", "RECEIVED"),
            route=entity.get("route", ""),
            transitions=tuple(json.loads(entity.get("transitions") or "[]")),
            counts=json.loads(entity.get("counts") or "{}"),
            versions=json.loads(entity.get("versions") or "{}"),
            durations=json.loads(entity.get("durations") or "{}"),
            error=entity.get("error") or None,
            row_etag=entity.metadata.get("etag") if hasattr(entity, "metadata") else None,
        )


def open_table(connection: str, table: str) -> TableClient:
    """A client for ``table``, created first if it does not exist."""
    client = TableServiceClient.from_connection_string(connection).get_table_client(table)
    try:
        client.create_table()
    except ResourceExistsError:
        pass
    return client


class BatchStateStore:
    """Reads and writes batch entities; every update is conditional on the ETag read."""

    def __init__(self, connection: str, table: str) -> None:
        self._connection = connection
        self._table_name = table
        self._client: TableClient | None = None

    @property
    def client(self) -> TableClient:
        if self._client is None:
            self._client = open_table(self._connection, self._table_name)
        return self._client

    def get(self, dataset: str, batch_id: str) -> BatchState | None:
        try:
            return BatchState._from_entity(self.client.get_entity(dataset, batch_id))
        except ResourceNotFoundError:
            return None

    def find(self, batch_id: str) -> BatchState | None:
        """A batch by id alone, whatever its dataset."""
        rows = list(self.client.query_entities("RowKey eq @id", parameters={"id": batch_id}))
        return BatchState._from_entity(rows[0]) if rows else None

    def create(self, batch: BatchState, *, at: datetime | None = None) -> tuple[BatchState, bool]:
        """Insert a new batch in RECEIVED; returns (the stored batch, whether it was new)."""
        stamped = replace(
            batch,
            state="RECEIVED",
            transitions=({"state": "RECEIVED", "at": _iso(at)},),
        )
        try:
            meta = self.client.create_entity(stamped._entity())
        except ResourceExistsError:
            existing = self.get(batch.dataset, batch.batch_id)
            assert existing is not None
            return existing, False
        return replace(stamped, row_etag=meta.get("etag")), True

    def transition(
        self,
        batch: BatchState,
        state: str,
        *,
        at: datetime | None = None,
        **changes: Any,
    ) -> BatchState:
        """Move ``batch`` to ``state``, merging ``changes`` into its record.

        ``counts``, ``versions`` and ``durations`` are merged key by key.

        Raises:
            StateConflict: another writer updated the entity since ``batch`` was read.
        """
        merged: dict[str, Any] = {}
        for key in ("counts", "versions", "durations"):
            if key in changes:
                merged[key] = {**getattr(batch, key), **changes.pop(key)}
        updated = replace(
            batch,
            state=state,
            transitions=(*batch.transitions, {"state": state, "at": _iso(at)}),
            **merged,
            **changes,
        )
        return self.save(batch, updated)

    def save(self, previous: BatchState, updated: BatchState) -> BatchState:
        """Replace the entity if it still carries ``previous``'s ETag."""
        try:
            meta = self.client.update_entity(
                updated._entity(),
                mode=UpdateMode.REPLACE,
                etag=previous.row_etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceNotFoundError, HttpResponseError) as exc:
            if getattr(exc, "status_code", None) in (409, 412):
                raise StateConflict(
                    f"batch {previous.batch_id} changed since it was read; re-read and retry"
                ) from exc
            raise
        return replace(updated, row_etag=meta.get("etag"))

    def list(
        self,
        *,
        dataset: str | None = None,
        state: str | None = None,
        since: str | None = None,
    ) -> Iterator[BatchState]:
        """Batches, filtered by dataset, state and receipt time (ISO string, inclusive)."""
        clauses, params = [], {}
        if dataset:
            clauses.append("PartitionKey eq @dataset")
            params["dataset"] = dataset
        if state:
            clauses.append("state eq @state")
            params["state"] = state
        if since:
            clauses.append("received_at ge @since")
            params["since"] = since
        if clauses:
            entities = self.client.query_entities(" and ".join(clauses), parameters=params)
        else:
            entities = self.client.list_entities()
        for entity in entities:
            yield BatchState._from_entity(entity)


def _iso(at: datetime | None) -> str:
    return (at or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
