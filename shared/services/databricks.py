"""The Databricks route: a large file's bronze, silver and gold as one Spark run.

One run does every layer the batch has yet to reach (``databricks_jobs/main.py``), each
layer committing with the same ids as the in-function route, so the layers' own steps
then record the run's work from its commits. What this module does:

- ``submit``: start the run (idempotent: a retried submit returns the run the first one
  started) and record its id and page in batch state;
- ``status``: the run's state now, and once it ended (whatever its result) what it used
  (seconds, DBU-hours, VM-hours) in batch state: idempotent, as the run's times are fixed;
- ``cancel``: ask the run to stop (the orchestrator's deadline passed).

A batch routed here when no workspace is configured ends FAILED, saying which settings
to set; replayed once they are set, it runs. It never runs in-function instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from shared.batches import BatchRef, BatchState, Layer, RunStatus, State
from shared.costs import SparkUsage
from shared.errors import PermanentError
from shared.layers import step
from shared.layers.context import Context
from shared.uris import abfss

if TYPE_CHECKING:
    from shared.adapters.databricks import DatabricksJobs

log = logging.getLogger(__name__)

#: The layers a Spark run can do, in order (validate always runs in the Function).
SPARK_LAYERS = (Layer.BRONZE, Layer.SILVER, Layer.GOLD)
_FORMATS = {
    ".avro": "avro",
    ".parquet": "parquet",
    ".csv": "csv",
    ".json": "ndjson",
    ".jsonl": "ndjson",
    ".ndjson": "ndjson",
}


class DatabricksRoute:
    """Submit, watch and cancel a batch's Spark run; record it in batch state."""

    def __init__(self, ctx: Context, jobs: Callable[[], DatabricksJobs]) -> None:
        self.ctx = ctx
        self._jobs = jobs

    def submit(self, ref: BatchRef) -> dict[str, Any]:
        """Start the batch's run for the layers it has yet to reach.

        Returns:
            ``{"run": RunStatus, "poll_seconds", "timeout_seconds"}``, or, when the run
            cannot be submitted for a reason no retry fixes (no workspace configured, a
            refused request), the FAILED ``StepResult`` recorded for the batch.
        """
        batch = step.load(self.ctx, ref)
        todo = [layer for layer in SPARK_LAYERS if not batch.state.reached(layer.done)]
        if not todo:
            raise ValueError(f"batch {ref.batch_id} is {batch.state}: no layer left for Databricks")
        try:
            jobs = self._jobs()
            run_id = jobs.submit(self._run(batch, todo))
            status = jobs.status(run_id)
        except PermanentError as exc:
            log.error("batch %s: Databricks run not submitted: %s", ref.batch_id, exc)
            return step.fail(self.ctx, ref, f"{todo[0]} on Databricks: {type(exc).__name__}: {exc}").to_dict()
        self._record(batch, todo, status)
        if status.ended:  # a retried submit found its run already over
            self._record_usage(ref, status)
        settings = self.ctx.settings.databricks
        return {
            "run": status.to_dict(),
            "poll_seconds": settings.poll_seconds,
            "timeout_seconds": settings.timeout_minutes * 60,
        }

    def status(self, ref: BatchRef, run_id: int) -> RunStatus:
        """The batch's run's state now; once it ended, its usage is recorded for the batch."""
        status = self._jobs().status(run_id)
        if status.ended:
            self._record_usage(ref, status)
        return status

    def cancel(self, run_id: int) -> None:
        self._jobs().cancel(run_id)
        log.warning("Databricks run %s cancelled", run_id)

    def _run(self, batch: BatchState, todo: list[Layer]) -> Any:
        """The job's parameters: the file, the batch time and every table, as Spark names them."""
        from shared.adapters.databricks import JobRun
        from shared.pipeline.geo import database_sha256

        account = self.ctx.settings.lake_storage.name
        tables = self.ctx.tables(batch.dataset)
        uris = {}
        for name, table in tables.by_short_name().items():
            table.snapshot()  # every table exists before the run: the job only ever appends and merges
            uris[name] = abfss(table.uri, account)
        return JobRun(
            batch_id=batch.batch_id,
            dataset=batch.dataset,
            source=abfss(batch.source, account),
            format=_format(batch.source),
            batch_time=batch.landed_at or batch.received_at,
            tables=uris,
            layers=tuple(layer.label for layer in todo),
            attempt=_attempt(batch),
            geo_sha256=database_sha256(),
        )

    def _record(self, batch: BatchState, todo: list[Layer], status: RunStatus) -> None:
        """The run id and page of each layer it does, in batch state (for operators and alerts)."""
        runs = {**batch.runs, **{layer.label: status.run_id for layer in todo}}
        pages = {**batch.run_pages, **{layer.label: status.url for layer in todo}}
        if runs == dict(batch.runs) and pages == dict(batch.run_pages):
            return
        step.update(self.ctx, batch, lambda b: replace(b, runs=runs, run_pages=pages))

    def _record_usage(self, ref: BatchRef, status: RunStatus) -> None:
        """What an ended run used, under its run id; a record that already holds it is left alone."""
        if status.seconds is None:
            log.warning("batch %s: run %s ended without a duration; its cost is unknown", ref.batch_id,
                        status.run_id)  # fmt: skip
            return
        settings = self.ctx.settings.databricks
        # A job cluster is a driver and its workers; serverless DBUs include the machines.
        nodes = 0 if settings.serverless else settings.workers + 1
        usage = SparkUsage.of(status.seconds, dbu_per_hour=settings.dbu_per_hour, nodes=nodes)
        key = str(status.run_id)
        batch = step.load(self.ctx, ref)
        if batch.spark_usage.get(key) == usage:
            return
        step.update(self.ctx, batch, lambda b: replace(b, spark_usage={**b.spark_usage, key: usage}))


def _attempt(batch: BatchState) -> int:
    """How many times this batch failed before: a replay after a failed run is a new run
    (a new idempotency token), while a retried submit of the same attempt finds its run."""
    return sum(1 for t in batch.transitions if t.state is State.FAILED)


def _format(source: str) -> str:
    """The job's ``--format`` for a landed file, by its name (``.gz`` aside); Capture's by default."""
    suffixes = [s for s in PurePosixPath(source).suffixes if s != ".gz"]
    return _FORMATS.get(suffixes[-1] if suffixes else "", "avro")


__all__ = ["SPARK_LAYERS", "DatabricksRoute"]
