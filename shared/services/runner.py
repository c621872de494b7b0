"""The CLI's runner: the orchestrator's walk over the layers, in this process, file by file.

It applies the orchestrator's rules: a permanent error is recorded by the step itself and
ends the batch; anything else is retried with the same backoff (``RETRY``), and when the
attempts run out the batch is recorded FAILED with the last error. A file that fails
never stops the run: every file ends in a final state or FAILED, and the caller gets
each batch's record to report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from shared import layers, telemetry
from shared.adapters.storage import ObjectInfo
from shared.batches import (
    LAYERS,
    MAX_POLL_SECONDS,
    RETRY,
    BatchRef,
    BatchState,
    Layer,
    RetryPolicy,
    Route,
    RunStatus,
    StepResult,
)
from shared.errors import DatabricksNotConfigured, StateUnrecorded
from shared.layers import step
from shared.layers.context import Context
from shared.services.databricks import DatabricksRoute
from shared.services.intake import register

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Ran:
    """One file's run: its batch record at the end, and the error that stopped it, if any."""

    source: str
    batch: BatchState | None
    error: str | None = None


class Runner:
    """Runs files through every layer, as the orchestrator sequences them."""

    def __init__(
        self,
        ctx: Context,
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        databricks: DatabricksRoute | None = None,
    ) -> None:
        self.ctx = ctx
        self.retry = retry or RETRY
        self.sleep = sleep
        self.databricks = databricks

    def run_all(self, files: Iterable[ObjectInfo]) -> Iterator[Ran]:
        """Each file's run, in order; one file's failure never stops the others."""
        for info in files:
            yield self.run(info)

    def run(self, info: ObjectInfo) -> Ran:
        """Register one file and run every layer; the batch ends final or FAILED."""
        try:
            batch = register(self.ctx.settings, self.ctx.states, info)
        except Exception as exc:  # the batch could not even be recorded: report it and go on
            log.exception("%s: not registered", info.uri)
            return Ran(info.uri, None, f"{type(exc).__name__}: {exc}")
        ref = batch.ref
        try:
            on_spark = False
            for layer in LAYERS:
                if layer is not Layer.VALIDATE and not on_spark and self._routed_to_databricks(ref):
                    # As the orchestrator does: one Spark run, then each layer records it.
                    on_spark = True
                    if self._attempt(layer, ref, self._run_on_databricks).state.stops:
                        break
                if self._attempt(layer, ref).state.stops:
                    break
        except StateUnrecorded as exc:
            return Ran(info.uri, None, str(exc))
        final = self.ctx.states.get(ref.dataset, ref.batch_id)
        return Ran(info.uri, final, final.error if final else "batch record lost")

    def _routed_to_databricks(self, ref: BatchRef) -> bool:
        batch = self.ctx.states.get(ref.dataset, ref.batch_id)
        return batch is not None and batch.route is Route.DATABRICKS

    def _run_on_databricks(self, ctx: Context, layer: Layer, ref: BatchRef) -> StepResult:
        """Submit the batch's Spark run and wait for its end (here a sleep, not a durable timer)."""
        if self.databricks is None:
            raise DatabricksNotConfigured()
        submitted = self.databricks.submit(ref)
        if "run" not in submitted:  # recorded FAILED (no workspace, a refused request)
            return StepResult.from_dict(submitted)
        run = RunStatus.from_dict(submitted["run"])
        deadline = time.monotonic() + float(submitted["timeout_seconds"])
        wait = float(submitted["poll_seconds"])
        while not run.ended:
            if time.monotonic() >= deadline:
                self.databricks.cancel(run.run_id)
                return step.fail(
                    ctx, ref, f"{layer} on Databricks: {run.describe()}; cancelled at its deadline"
                )
            self.sleep(wait)
            wait = min(wait * 2, MAX_POLL_SECONDS)
            run = self.databricks.status(ref, run.run_id)
        if not run.succeeded:
            return step.fail(ctx, ref, f"{layer} on Databricks: {run.describe()}")
        return StepResult.of(step.load(ctx, ref))  # the layers' steps record what the run committed

    def _attempt(
        self,
        layer: Layer,
        ref: BatchRef,
        work: Callable[[Context, Layer, BatchRef], StepResult] | None = None,
    ) -> StepResult:
        """One layer with the orchestrator's retries; FAILED when they run out, unless another
        writer (a second run of the same file) moved the batch on meanwhile."""
        error = ""
        try:
            before = self.ctx.states.get(ref.dataset, ref.batch_id)
        except Exception:  # unreadable just now: the attempts below report why
            before = None
        for attempt in range(1, self.retry.attempts + 1):
            try:
                return (work or layers.run)(self.ctx, layer, ref)
            except Exception as exc:  # everything not permanent is retried, as Durable does
                error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "batch %s: %s attempt %d failed: %s", ref.batch_id, layer, attempt, error,
                    extra=telemetry.about(ref, layer),
                )  # fmt: skip
                if attempt < self.retry.attempts:
                    self.sleep(self.retry.delay(attempt))
        message = f"{layer} failed after {self.retry.attempts} attempts: {error}"
        try:
            return step.fail(self.ctx, ref, message, expect=before)
        except Exception as exc:  # even the record could not be written: the caller reports it
            log.exception("batch %s: FAILED not recorded", ref.batch_id, extra=telemetry.about(ref, layer))
            raise StateUnrecorded(f"batch {ref.batch_id}: {message}; FAILED not recorded: {exc}") from exc
