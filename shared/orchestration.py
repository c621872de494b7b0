"""The per-batch orchestration: one activity per layer, walked in order.

The generator is replayed from history on every wake-up, so it is deterministic: it does
no I/O, reads no clock and no settings, and passes only the batch reference and the
small step results (state, counts, versions) between activities.

Transient failures are retried by the Durable runtime (``RETRY``, with backoff). A
permanent one (a quarantined file, a contract violation) is not raised by the activity
at all: the activity records it and returns the batch QUARANTINED or FAILED, and the
orchestration stops there. When retries run out, ``fail_batch`` records FAILED with the
last error.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from shared.batches import FAIL_ACTIVITY, HEADLINE_COUNTS, LAYERS, RETRY, Layer, RetryPolicy, StepResult


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
    for layer in LAYERS:
        context.set_custom_status(custom_status(layer, result))
        try:
            result = yield context.call_activity_with_retry(
                layer.activity, RETRY_OPTIONS, ref, expected_type=dict
            )
        except Exception as exc:  # retries exhausted: the runtime reports it as a plain Exception
            error = f"{layer} failed after {RETRY.attempts} attempts: {exc}"
            result = yield context.call_activity_with_retry(
                FAIL_ACTIVITY, RETRY_OPTIONS, {"batch": ref, "error": error}, expected_type=dict
            )
        context.set_custom_status(custom_status(layer, result))
        if StepResult.from_dict(result).state.stops:
            break
    return result


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
