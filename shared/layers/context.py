"""What a layer works with, as small protocols: the app wires real adapters, tests fakes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import BinaryIO, Protocol

from shared.adapters.lake import Lake
from shared.adapters.storage import ObjectInfo
from shared.batches import BatchState, Counts, Route, State
from shared.contracts import CONTRACTS
from shared.layers.tables import Tables
from shared.settings import Settings


class Files(Protocol):
    """Landed files: read, identify and move them (``adapters.storage.Storage``)."""

    def open(self, uri: str) -> BinaryIO: ...
    def info(self, uri: str) -> ObjectInfo: ...
    def move(self, uri: str, destination: str) -> None: ...
    def list(self, uri: str, suffixes: tuple[str, ...] = ()) -> Iterator[ObjectInfo]: ...


class States(Protocol):
    """Batch records, each update conditional on the revision read (``adapters.state``)."""

    def get(self, dataset: str, batch_id: str) -> BatchState | None: ...
    def find(self, batch_id: str) -> BatchState | None: ...
    def create(self, batch: BatchState) -> tuple[BatchState, bool]: ...
    def save(self, previous: BatchState, updated: BatchState) -> BatchState: ...
    def list(
        self,
        *,
        lake: str | None = None,
        dataset: str | None = None,
        state: State | None = None,
        since: str | None = None,
    ) -> Iterator[BatchState]: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a layer's work produced: the state to record and what changed with it."""

    state: State
    counts: Counts = field(default_factory=Counts)
    versions: Mapping[str, int | None] = field(default_factory=dict)
    route: Route | None = None
    error: str | None = None
    quarantined_to: str | None = None
    landed_at: str | None = None
    """The time the batch's rows carry, when the layer found it in the lake (a re-registered batch)."""


@dataclass(frozen=True)
class Context:
    """Everything the layers reach: settings, landed files, batch state, the lake."""

    settings: Settings
    files: Files
    states: States
    lake: Lake

    @cached_property
    def _tables(self) -> dict[str, Tables]:
        return {name: Tables(self.lake, contract) for name, contract in CONTRACTS.items()}

    def tables(self, dataset: str) -> Tables:
        return self._tables[dataset]
