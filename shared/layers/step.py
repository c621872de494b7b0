"""The one wrapper every layer runs in: load, skip what is done, resume, time, record.

A layer's own module only does its work and returns an ``Outcome``; around it, ``run``:

1. loads the batch (``BatchNotRegistered`` if batch state does not know it);
2. returns the recorded result if the batch already reached the layer's state, or a
   final one, provided the lake still holds every commit the record names (a lake
   deleted or swapped under the record sends the batch back to the first missing layer);
3. resumes a FAILED batch from the last state it reached (an explicit re-run);
4. runs the layer and times it (its GB-seconds: the time x ``INSTANCE_MEMORY_MB``);
5. records the outcome, or FAILED with the message of a ``PermanentError``, and reports
   what it recorded to telemetry (``shared.telemetry``).

Recording never moves a batch backwards: when another writer advanced the record
meanwhile (a racing delivery of the same file), its state stands and is returned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from shared import costs, telemetry
from shared.adapters.state import now_iso
from shared.batches import LAYERS, PROGRESS, BatchRef, BatchState, Layer, State, StepResult
from shared.errors import BatchNotRegistered, PermanentError, StateConflict
from shared.layers.context import Context, Outcome

log = logging.getLogger(__name__)

Work = Callable[[Context, BatchState], Outcome]
#: Re-reads and re-tries of a state write that lost to a concurrent writer.
SAVE_ATTEMPTS = 5
#: The state-version keys each layer commits, by prefix (``gold.`` covers every gold table).
LAYER_TABLES: dict[Layer, tuple[str, ...]] = {
    Layer.VALIDATE: (),
    Layer.BRONZE: ("bronze", "quarantine"),
    Layer.SILVER: ("silver",),
    Layer.GOLD: ("gold.",),
}


def load(ctx: Context, ref: BatchRef) -> BatchState:
    batch = ctx.states.get(ref.dataset, ref.batch_id)
    if batch is None:
        raise BatchNotRegistered(ref.batch_id)
    return batch


def run(ctx: Context, layer: Layer, ref: BatchRef, work: Work) -> StepResult:
    """Run ``work`` as ``layer``'s step for the batch ``ref`` names; see the module docstring."""
    batch = load(ctx, ref)
    if batch.state.final or batch.state.reached(layer.done):
        missing = _first_missing(ctx, batch)
        if missing is None:
            return StepResult.of(batch)
        log.warning(
            "batch %s: state says %s but the lake lacks its %s commit; redoing from %s",
            batch.batch_id, batch.state, missing, missing.starts_from,
            extra=telemetry.about(batch, missing),
        )  # fmt: skip
        batch = _save(ctx, batch, lambda b: replace(b.moved(missing.starts_from, now_iso()), error=None))
        if batch.state.reached(layer.done):
            return StepResult.of(batch)
    if batch.state is State.FAILED:
        batch = _save(ctx, batch, lambda b: replace(b.moved(resume_state(b), now_iso()), error=None))
        if batch.state.reached(layer.done):  # resumed past this layer: the next one continues
            return StepResult.of(batch)
    started = time.perf_counter()
    try:
        outcome = work(ctx, batch)
    except PermanentError as exc:
        log.error(
            "batch %s: %s failed permanently: %s",
            batch.batch_id, layer, exc,
            extra=telemetry.about(batch, layer),
        )  # fmt: skip
        return fail(ctx, ref, f"{layer}: {type(exc).__name__}: {exc}", expect=batch)
    seconds = round(time.perf_counter() - started, 3)

    def record(current: BatchState) -> BatchState:
        return current.moved(
            outcome.state,
            now_iso(),
            counts=outcome.counts,
            versions=outcome.versions,
            durations={layer.label: seconds},
            gb_seconds={layer.label: costs.gb_seconds(seconds, ctx.settings.instance_memory_mb)},
            route=outcome.route or current.route,
            error=outcome.error,
            quarantined_to=outcome.quarantined_to or current.quarantined_to,
            landed_at=outcome.landed_at or current.landed_at,
        )

    recorded = _save(ctx, batch, record, goal=outcome.state)
    telemetry.layer_completed(recorded, layer)
    return StepResult.of(recorded)


def fail(ctx: Context, ref: BatchRef, error: str, *, expect: BatchState | None = None) -> StepResult:
    """Record FAILED with ``error``, unless the batch is final or another writer moved it on.

    A FAILED it records is reported as ``BATCH_EVENT``, in the layer the batch was to run next.

    Args:
        ctx: The layers' context.
        ref: The batch.
        error: Why it failed (kept to 4,000 characters).
        expect: The record as the failing step read it. When the stored record has moved
            past it since, a concurrent writer is making progress and FAILED is not written.
    """
    batch = load(ctx, ref)
    for _ in range(SAVE_ATTEMPTS):
        if batch.state.final or (expect is not None and _ahead(batch, expect)):
            return StepResult.of(batch)
        try:
            failed = ctx.states.save(batch, replace(batch.moved(State.FAILED, now_iso()), error=error[:4000]))
        except StateConflict:
            batch = load(ctx, ref)
            continue
        telemetry.batch_finished(failed, failing_layer(batch))
        return StepResult.of(failed)
    raise StateConflict(f"batch {ref.batch_id}: FAILED not recorded after {SAVE_ATTEMPTS} conflicting writes")


def failing_layer(batch: BatchState) -> Layer:
    """The layer a failure of ``batch`` stops in: the one that runs next from where it is."""
    state = resume_state(batch) if batch.state is State.FAILED else batch.state
    return next((layer for layer in LAYERS if layer.starts_from is state), LAYERS[-1])


def update(ctx: Context, batch: BatchState, change: Callable[[BatchState], BatchState]) -> BatchState:
    """Apply ``change`` to the stored record (re-read and re-applied on a conflict)."""
    return _save(ctx, batch, change)


def resume_state(batch: BatchState) -> State:
    """Where a FAILED batch resumes: the last happy-path state it recorded before failing."""
    last = State.RECEIVED
    for transition in batch.transitions:
        if transition.state in PROGRESS and transition.state is not State.GOLD_DONE:
            last = transition.state
    return last


def _save(
    ctx: Context,
    batch: BatchState,
    change: Callable[[BatchState], BatchState],
    *,
    goal: State | None = None,
) -> BatchState:
    """Apply ``change`` to the stored record, re-reading it on a conflict.

    When another writer has meanwhile brought the record to ``goal`` (or further, or to a
    final state), that record stands: the work was done once, and is reported as done.
    """
    for _ in range(SAVE_ATTEMPTS):
        try:
            return ctx.states.save(batch, change(batch))
        except StateConflict:
            batch = load(ctx, batch.ref)
            if batch.state.final or (
                goal is not None and (batch.state is goal or _ahead_of(batch.state, goal))
            ):
                return batch
    raise StateConflict(
        f"batch {batch.batch_id}: state not recorded after {SAVE_ATTEMPTS} conflicting writes"
    )


def _ahead_of(state: State, goal: State) -> bool:
    return state in PROGRESS and goal in PROGRESS and PROGRESS.index(state) > PROGRESS.index(goal)


def _ahead(stored: BatchState, read: BatchState) -> bool:
    """Whether the stored record moved on (to a later happy-path state) since ``read``."""
    return stored.revision != read.revision and _ahead_of(stored.state, read.state)


def _first_missing(ctx: Context, batch: BatchState) -> Layer | None:
    """The earliest layer whose recorded commit the lake does not hold, if any."""
    tables = ctx.tables(batch.dataset)
    for layer in LAYERS:
        for name, version in batch.versions.items():
            if version is None or not name.startswith(LAYER_TABLES[layer]) or not LAYER_TABLES[layer]:
                continue
            if not tables.holds(name, batch.batch_id):
                return layer
    return None
