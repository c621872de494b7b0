"""In-memory stand-ins for the adapters' protocols, for unit tests of the layers.

``MemoryStates`` behaves as the Table Storage adapter does where the layers can tell: a
record's revision changes on every write, and a write carrying a stale revision raises
``StateConflict``. The lake in unit tests is the real one, on a local folder.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace

from shared.adapters.state import now_iso
from shared.batches import BatchState, State, Transition
from shared.errors import StateConflict


class MemoryStates:
    """Batch records in a dict, with revision-conditional writes."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], BatchState] = {}
        self._revisions = itertools.count(1)
        self.writes = 0

    def _stamp(self, batch: BatchState) -> BatchState:
        stamped = replace(batch, revision=str(next(self._revisions)))
        self.records[(batch.dataset, batch.batch_id)] = stamped
        self.writes += 1
        return stamped

    def get(self, dataset: str, batch_id: str) -> BatchState | None:
        return self.records.get((dataset, batch_id))

    def find(self, batch_id: str) -> BatchState | None:
        return next((b for (_, i), b in self.records.items() if i == batch_id), None)

    def create(self, batch: BatchState) -> tuple[BatchState, bool]:
        existing = self.get(batch.dataset, batch.batch_id)
        if existing is not None:
            return existing, False
        fresh = replace(batch, state=State.RECEIVED, transitions=(Transition(State.RECEIVED, now_iso()),))
        return self._stamp(fresh), True

    def save(self, previous: BatchState, updated: BatchState) -> BatchState:
        stored = self.get(previous.dataset, previous.batch_id)
        if stored is None or stored.revision != previous.revision:
            raise StateConflict(f"batch {previous.batch_id} changed since it was read")
        return self._stamp(updated)

    def list(
        self,
        *,
        lake: str | None = None,
        dataset: str | None = None,
        state: State | None = None,
        since: str | None = None,
    ) -> Iterator[BatchState]:
        for batch in list(self.records.values()):
            if (lake and batch.lake != lake) or (dataset and batch.dataset != dataset):
                continue
            if (state and batch.state is not state) or (since and batch.received_at < since):
                continue
            yield batch

    def delete(self, batch: BatchState) -> None:
        self.records.pop((batch.dataset, batch.batch_id), None)
