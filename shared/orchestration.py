"""The per-batch orchestration: one activity per layer, walked in order.

The generator is replayed from history on every wake-up, so it is deterministic: it does
no I/O, reads no clock (only ``context.current_utc_datetime``) and no settings, and passes
only the batch reference and the small step results (state, counts, versions, run ids)
between activities.

Transient failures are retried by the Durable runtime (``RETRY``, with backoff). A
permanent one (a quarantined file, a contract violation, no Databricks workspace) is not
raised by the activity at all: the activity records it and returns the batch QUARANTINED
or FAILED, and the orchestration stops there. When retries run out, ``fail_batch``
records FAILED with the last error.

A batch that validate routes to Databricks runs each later layer as a Spark run: submit
(idempotent, so a replay never starts a second run), then poll between durable timers
whose interval doubles up to ``MAX_POLL_SECONDS``, never a wait inside an activity. A run
that succeeded is recorded by the layer's own activity, which finds the run's commits in
the lake; one that failed, or outlived its deadline (and is cancelled), ends the batch
FAILED with the run id, its page and its message.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from shared.batches import (
    CANCEL_ACTIVITY,
    FAIL_ACTIVITY,
    HEADLINE_COUNTS,
    LAYERS,
    MAX_POLL_SECONDS,
    POLL_ACTIVITY,
    RETRY,
    SUBMIT_ACTIVITY,
    Layer,
    RetryPolicy,
    Route,
    RunStatus,
    StepResult,
)


class BackoffRetryOptions(df.RetryOptions):
    """``df.RetryOptions`` plus the backoff the Durable extension applies between attempts.

    azure-functions-durable 1.7 serialises only the first interval and the attempt count;
    the extension's retry options (``RetryOptionsConverter``) also read
    ``backoffCoefficient`` and ``maxRetryIntervalInMilliseconds``.
    """

    def __init__(self, policy: RetryPolicy) -> None:
        super().__init__(int(policy.first_seconds * 1000), policy.attempts)
        self.backoff_coefficient = policy.coefficient
        self.max_retry_interval_in_milliseconds = int(policy.max_seconds * 1000)

    def to_json(self) -> dict[str, str | int]:
        payload: dict[str, Any] = dict(super().to_json())
        payload["backoffCoefficient"] = self.backoff_coefficient
        payload["maxRetryIntervalInMilliseconds"] = self.max_retry_interval_in_milliseconds
        return payload


RETRY_OPTIONS = BackoffRetryOptions(RETRY)


def run_batch(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    """Run one batch through every layer; returns the last step result.

    The input is a ``BatchRef`` dict; every activity gets that same dict.
    """
    ref: dict[str, Any] = context.get_input(expected_type=dict)
    result: dict[str, Any] = {"batch_id": ref["batch_id"], "state": "RECEIVED", "counts": {}}
    on_spark = False
    for layer in LAYERS:
        context.set_custom_status(custom_status(layer, result))
        try:
            if layer is not Layer.VALIDATE and result.get("route") == Route.DATABRICKS.value and not on_spark:
                # One Spark run does every layer left; each layer's activity then records it.
                on_spark = True
                failed = yield from _run_on_databricks(context, layer, ref)
                if failed is not None:
                    context.set_custom_status(custom_status(layer, failed))
                    return failed
            result = yield _activity(context, layer.activity, ref)
        except Exception as exc:  # retries exhausted: the runtime reports it as a plain Exception
            result = yield from _fail(context, ref, f"{layer} failed after {RETRY.attempts} attempts: {exc}")
        context.set_custom_status(custom_status(layer, result))
        if StepResult.from_dict(result).state.stops:
            break
    return result


def _run_on_databricks(
    context: df.DurableOrchestrationContext, layer: Layer, ref: dict[str, Any]
) -> Generator[Any, Any, dict[str, Any] | None]:
    """Submit the batch's Spark run from ``layer`` on and watch it to its end.

    Returns None when the run succeeded (the layers' activities record it next), else the
    FAILED result recorded for the batch.
    """
    submitted = yield _activity(context, SUBMIT_ACTIVITY, {"batch": ref})
    if "run" not in submitted:  # recorded FAILED by the activity (no workspace, a refused request)
        return dict(submitted)
    run = RunStatus.from_dict(submitted["run"])
    limit = int(submitted["timeout_seconds"])
    deadline = context.current_utc_datetime + timedelta(seconds=limit)
    wait = int(submitted["poll_seconds"])
    while not run.ended:
        if context.current_utc_datetime >= deadline:
            yield _activity(context, CANCEL_ACTIVITY, {"batch": ref, "run_id": run.run_id})
            message = f"{layer} on Databricks: {run.describe()}; cancelled after {limit // 60} minutes"
            return (yield from _fail(context, ref, message))
        yield context.create_timer(context.current_utc_datetime + timedelta(seconds=wait))
        wait = min(wait * 2, MAX_POLL_SECONDS)
        polled = yield _activity(context, POLL_ACTIVITY, {"batch": ref, "run_id": run.run_id})
        run = RunStatus.from_dict(polled)
    if not run.succeeded:
        return (yield from _fail(context, ref, f"{layer} on Databricks: {run.describe()}"))
    return None


def _activity(context: df.DurableOrchestrationContext, name: str, payload: dict[str, Any]) -> Any:
    return context.call_activity_with_retry(name, RETRY_OPTIONS, payload, expected_type=dict)


def _fail(
    context: df.DurableOrchestrationContext, ref: dict[str, Any], error: str
) -> Generator[Any, Any, dict[str, Any]]:
    failed: dict[str, Any] = yield _activity(context, FAIL_ACTIVITY, {"batch": ref, "error": error})
    return failed


def custom_status(layer: Layer, result: dict[str, Any]) -> dict[str, Any]:
    """What the Durable status API shows: the layer, the batch state and headline counts."""
    counts = result.get("counts") or {}
    return {
        "layer": layer.label,
        "state": result.get("state"),
        "route": result.get("route") or None,
        "counts": {k: counts[k] for k in HEADLINE_COUNTS if k in counts},
        "error": result.get("error"),
    }
