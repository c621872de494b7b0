"""The pipeline's vocabulary, in one module that imports no SDK.

A *batch* is one landed file processed into one lake. It moves through ``State`` s as
each ``Layer`` commits; what it recorded on the way is a ``BatchState``, and what each
step hands the orchestrator is a ``StepResult``. The orchestrator, the layers, the CLI,
the HTTP API and the tests all use these names, so a state or a count is spelled once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from enum import Enum, StrEnum
from typing import Any

from shared.costs import SparkUsage


class State(StrEnum):
    """Where a batch is. The happy path is ``PROGRESS``; EMPTY and QUARANTINED end early."""

    RECEIVED = "RECEIVED"
    VALIDATED = "VALIDATED"
    BRONZE_DONE = "BRONZE_DONE"
    SILVER_DONE = "SILVER_DONE"
    GOLD_DONE = "GOLD_DONE"
    EMPTY = "EMPTY"
    QUARANTINED = "QUARANTINED"
    FAILED = "FAILED"

    @property
    def final(self) -> bool:
        """Done for good: nothing runs again unless an operator replays it."""
        return self in _FINAL

    @property
    def stops(self) -> bool:
        """No later layer runs after this state (final, or FAILED)."""
        return self in _FINAL or self is State.FAILED

    def reached(self, target: State) -> bool:
        """Whether a batch in this state has passed ``target`` on the happy path."""
        return self in PROGRESS and target in PROGRESS and PROGRESS.index(self) >= PROGRESS.index(target)


PROGRESS: tuple[State, ...] = (
    State.RECEIVED,
    State.VALIDATED,
    State.BRONZE_DONE,
    State.SILVER_DONE,
    State.GOLD_DONE,
)
_FINAL = frozenset({State.GOLD_DONE, State.EMPTY, State.QUARANTINED})


class Route(StrEnum):
    """Which engine runs a batch's bronze, silver and gold, chosen by its size at validate."""

    IN_FUNCTION = "in_function"
    DATABRICKS = "databricks"


class Layer(Enum):
    """A step of every batch: the activity that runs it, the state it ends in, and the
    state a replay from it resets the batch to."""

    VALIDATE = ("validate", "validate_batch", State.VALIDATED, State.RECEIVED)
    BRONZE = ("bronze", "write_bronze", State.BRONZE_DONE, State.VALIDATED)
    SILVER = ("silver", "merge_silver", State.SILVER_DONE, State.BRONZE_DONE)
    GOLD = ("gold", "update_gold", State.GOLD_DONE, State.SILVER_DONE)

    def __init__(self, label: str, activity: str, done: State, starts_from: State) -> None:
        self.label = label
        self.activity = activity
        self.done = done
        self.starts_from = starts_from

    def __str__(self) -> str:
        return self.label

    @classmethod
    def named(cls, label: str) -> Layer:
        """The layer called ``label`` (``validate``, ``bronze``, ``silver``, ``gold``).

        Raises:
            KeyError: no layer has that name.
        """
        for layer in cls:
            if layer.label == label:
                return layer
        raise KeyError(label)


LAYERS: tuple[Layer, ...] = tuple(Layer)
ORCHESTRATOR = "batch_orchestrator"
FAIL_ACTIVITY = "fail_batch"
# The Databricks route's activities: a layer's Spark run is submitted, polled between
# durable timers, and cancelled when the orchestration's deadline passes.
SUBMIT_ACTIVITY = "submit_run"
POLL_ACTIVITY = "poll_run"
CANCEL_ACTIVITY = "cancel_run"
#: The longest wait between two polls of a Databricks run.
MAX_POLL_SECONDS = 600


class LifeCycle(StrEnum):
    """A Databricks run's ``RunLifeCycleState``, as the Jobs API spells it."""

    QUEUED = "QUEUED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"
    SKIPPED = "SKIPPED"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    BLOCKED = "BLOCKED"
    WAITING_FOR_RETRY = "WAITING_FOR_RETRY"


class Result(StrEnum):
    """A terminated Databricks run's ``RunResultState``."""

    SUCCESS = "SUCCESS"
    SUCCESS_WITH_FAILURES = "SUCCESS_WITH_FAILURES"
    FAILED = "FAILED"
    TIMEDOUT = "TIMEDOUT"
    CANCELED = "CANCELED"
    MAXIMUM_CONCURRENT_RUNS_REACHED = "MAXIMUM_CONCURRENT_RUNS_REACHED"
    EXCLUDED = "EXCLUDED"
    UPSTREAM_FAILED = "UPSTREAM_FAILED"
    UPSTREAM_CANCELED = "UPSTREAM_CANCELED"
    DISABLED = "DISABLED"


_ENDED = frozenset({LifeCycle.TERMINATED, LifeCycle.SKIPPED, LifeCycle.INTERNAL_ERROR})


@dataclass(frozen=True, slots=True)
class RunStatus:
    """A Databricks run's state as one ``runs/get`` saw it.

    Only TERMINATED with SUCCESS lets the batch go on; FAILED, TIMEDOUT, CANCELED (and every
    other result), INTERNAL_ERROR and SKIPPED end it FAILED.
    """

    run_id: int
    life_cycle: LifeCycle
    result: Result | None = None
    message: str = ""
    url: str = ""
    seconds: float | None = None
    """How long the run took, once it ended (the Jobs API's ``run_duration``, else its
    start to end); None while it runs."""

    @property
    def ended(self) -> bool:
        """Nothing more will happen: TERMINATED, SKIPPED or INTERNAL_ERROR."""
        return self.life_cycle in _ENDED

    @property
    def succeeded(self) -> bool:
        return self.life_cycle is LifeCycle.TERMINATED and self.result is Result.SUCCESS

    def describe(self) -> str:
        outcome = self.life_cycle.value + (f"/{self.result.value}" if self.result else "")
        return f"run {self.run_id} {outcome}: {self.message or 'no message'} ({self.url or 'no run page'})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "life_cycle": self.life_cycle.value,
            "result": self.result.value if self.result else None,
            "message": self.message,
            "url": self.url,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunStatus:
        result, seconds = data.get("result"), data.get("seconds")
        return cls(
            int(data["run_id"]),
            LifeCycle(data["life_cycle"]),
            Result(result) if result else None,
            str(data.get("message") or ""),
            str(data.get("url") or ""),
            None if seconds is None else float(seconds),
        )


# -- counts ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Counts:
    """What a batch's steps counted; None means that step has not run.

    The accounting every batch obeys: ``rows_in = rows_valid + rows_quarantined`` and
    ``rows_valid = silver_inserted + duplicates_dropped``.
    """

    records: int | None = None
    rows_in: int | None = None
    rows_valid: int | None = None
    rows_quarantined: int | None = None
    quarantined_by_expectation: Mapping[str, int] | None = None
    duplicates_in_batch: int | None = None
    duplicates_dropped: int | None = None
    silver_inserted: int | None = None
    event_dates: tuple[str, ...] | None = None
    """The silver partitions the batch wrote: what gold reads."""

    def merged(self, newer: Counts) -> Counts:
        """These counts with every value ``newer`` has replacing ours."""
        return replace(
            self, **{f.name: v for f in fields(newer) if (v := getattr(newer, f.name)) is not None}
        )

    def unbalanced(self) -> list[str]:
        """The accounting rules these counts break (empty when they balance)."""
        problems = []
        if None not in (self.rows_in, self.rows_valid, self.rows_quarantined) and self.rows_in != (
            (self.rows_valid or 0) + (self.rows_quarantined or 0)
        ):
            problems.append(
                f"rows_in {self.rows_in} != valid {self.rows_valid} + quarantined {self.rows_quarantined}"
            )
        if None not in (
            self.rows_valid,
            self.silver_inserted,
            self.duplicates_dropped,
        ) and self.rows_valid != ((self.silver_inserted or 0) + (self.duplicates_dropped or 0)):
            problems.append(
                f"rows_valid {self.rows_valid} != inserted {self.silver_inserted} "
                f"+ duplicates {self.duplicates_dropped}"
            )
        return problems

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = (
                    list(value)
                    if isinstance(value, tuple)
                    else dict(value)
                    if isinstance(value, Mapping)
                    else value
                )
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Counts:
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: v for k, v in data.items() if k in known and v is not None}
        if "event_dates" in values:
            values["event_dates"] = tuple(values["event_dates"])
        if "quarantined_by_expectation" in values:
            values["quarantined_by_expectation"] = {
                str(k): int(v) for k, v in values["quarantined_by_expectation"].items()
            }
        for name in ("records", "rows_in", "rows_valid", "rows_quarantined", "duplicates_in_batch",
                     "duplicates_dropped", "silver_inserted"):  # fmt: skip
            if name in values:
                values[name] = int(values[name])
        return cls(**values)


#: The counts the Durable status API and the batch listing show.
HEADLINE_COUNTS = (
    "records",
    "rows_in",
    "rows_valid",
    "rows_quarantined",
    "duplicates_dropped",
    "silver_inserted",
)


# -- batches ---------------------------------------------------------------------------------
def batch_id_for(lake: str, source: str, etag: str) -> str:
    """The id of a file's batch in one lake: the same file into the same lake is one batch.

    The lake is part of the id because batch state describes what a lake holds: the
    same file pointed at a fresh lake is new work there.
    """
    return hashlib.sha256(f"{lake}\n{source}\n{etag}".encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class BatchRef:
    """What activities pass around: enough to find the batch and its file, never its rows."""

    batch_id: str
    dataset: str
    source: str
    size: int
    etag: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchRef:
        return cls(
            batch_id=str(data["batch_id"]),
            dataset=str(data["dataset"]),
            source=str(data["source"]),
            size=int(data["size"]),
            etag=str(data["etag"]),
        )


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change, with when it happened (ISO-8601 UTC, milliseconds, ``Z``)."""

    state: State
    at: str

    def to_dict(self) -> dict[str, str]:
        return {"state": self.state.value, "at": self.at}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Transition:
        return cls(State(data["state"]), str(data["at"]))


@dataclass(frozen=True, slots=True)
class BatchState:
    """Everything recorded about one batch."""

    batch_id: str
    dataset: str
    source: str
    size: int
    etag: str
    lake: str = ""
    """The LAKE_URI the batch writes: state describes one lake."""
    landed_at: str = ""
    """When the file landed (its last-modified time): every row's ``_batch_time``. It comes
    from the file, not from registration, so a batch registered again stamps and finds the
    same rows."""
    state: State = State.RECEIVED
    route: Route | None = None
    transitions: tuple[Transition, ...] = ()
    counts: Counts = field(default_factory=Counts)
    versions: Mapping[str, int | None] = field(default_factory=dict)
    """The Delta version each table's commit for this batch landed at."""
    durations: Mapping[str, float] = field(default_factory=dict)
    gb_seconds: Mapping[str, float] = field(default_factory=dict)
    """Each in-function step's duration x the instance memory it ran with (``shared.costs``)."""
    error: str | None = None
    quarantined_to: str | None = None
    runs: Mapping[str, int] = field(default_factory=dict)
    """The Databricks run of each layer on the Databricks route."""
    run_pages: Mapping[str, str] = field(default_factory=dict)
    """Each of those runs' page in the workspace."""
    spark_usage: Mapping[str, SparkUsage] = field(default_factory=dict)
    """What each Databricks run of the batch used, by run id, recorded when it ended."""
    revision: str | None = None
    """The store's version of the record (the Table entity's ETag); not part of the record."""

    @property
    def ref(self) -> BatchRef:
        return BatchRef(self.batch_id, self.dataset, self.source, self.size, self.etag)

    @property
    def received_at(self) -> str:
        return self.transitions[0].at if self.transitions else ""

    def moved(self, state: State, at: str, **changes: Any) -> BatchState:
        """This batch moved to ``state`` at ``at``, with ``changes`` merged into its record:
        ``counts`` merge value by value, ``versions``, ``durations`` and ``gb_seconds`` key by key."""
        if "counts" in changes:
            changes["counts"] = self.counts.merged(changes["counts"])
        for key in ("versions", "durations", "gb_seconds"):
            if key in changes:
                changes[key] = {**getattr(self, key), **changes[key]}
        return replace(self, state=state, transitions=(*self.transitions, Transition(state, at)), **changes)

    def furthest(self) -> State:
        """The furthest state on the happy path this batch ever reached."""
        reached = [PROGRESS.index(t.state) for t in self.transitions if t.state in PROGRESS]
        if self.state in PROGRESS:
            reached.append(PROGRESS.index(self.state))
        return PROGRESS[max(reached, default=0)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "dataset": self.dataset,
            "source": self.source,
            "size": self.size,
            "etag": self.etag,
            "lake": self.lake,
            "landed_at": self.landed_at,
            "state": self.state.value,
            "route": self.route.value if self.route else None,
            "transitions": [t.to_dict() for t in self.transitions],
            "counts": self.counts.to_dict(),
            "versions": dict(self.versions),
            "durations": dict(self.durations),
            "gb_seconds": dict(self.gb_seconds),
            "error": self.error,
            "quarantined_to": self.quarantined_to,
            "runs": dict(self.runs),
            "run_pages": dict(self.run_pages),
            "spark_usage": {run: usage.to_dict() for run, usage in self.spark_usage.items()},
        }


@dataclass(frozen=True, slots=True)
class StepResult:
    """What an activity returns to the orchestrator: small, JSON-ready, no rows."""

    batch_id: str
    state: State
    route: Route | None = None
    counts: Counts = field(default_factory=Counts)
    versions: Mapping[str, int | None] = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def of(cls, batch: BatchState) -> StepResult:
        return cls(batch.batch_id, batch.state, batch.route, batch.counts, batch.versions, batch.error)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "state": self.state.value,
            "route": self.route.value if self.route else None,
            "counts": self.counts.to_dict(),
            "versions": dict(self.versions),
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepResult:
        route = data.get("route")
        return cls(
            batch_id=str(data["batch_id"]),
            state=State(data["state"]),
            route=Route(route) if route else None,
            counts=Counts.from_dict(data.get("counts") or {}),
            versions=dict(data.get("versions") or {}),
            error=data.get("error"),
        )


# -- retries ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a step that failed transiently is retried: by the orchestrator and the CLI alike."""

    first_seconds: float
    attempts: int
    coefficient: float
    max_seconds: float

    def delay(self, failures: int) -> float:
        """The wait after the ``failures``-th failed attempt (1-based): Durable's backoff."""
        return min(self.first_seconds * self.coefficient ** (failures - 1), self.max_seconds)


#: 5 s, 10 s, 20 s, 40 s: rides out throttling and a storage blip, not an outage.
RETRY = RetryPolicy(first_seconds=5.0, attempts=5, coefficient=2.0, max_seconds=60.0)


# -- application-transaction ids -------------------------------------------------------------
#: The commit-info key of a batch's commit id (in ``userMetadata`` JSON on Delta Spark):
#: both engines write it, and ``shared.adapters.lake.Table.commit`` finds commits by it.
APP_ID_KEY = "tributary.app_id"
#: Every silver commit also advances this application transaction, so two silver writers
#: whose duplicate checks raced cannot both land: the loser's commit conflicts.
SILVER_WRITER = "silver-writer"


def commit_id(table: str, batch_id: str) -> str:
    """The Delta application-transaction id of a batch's commit to ``table``.

    ``table`` is the table's short name: ``bronze``, ``quarantine``, ``silver`` or
    ``gold.<name>``. A retried or replayed step asks the table for this id and finds its
    own commit instead of writing again; both engines write the same id.
    """
    return f"{table}:{batch_id}"
