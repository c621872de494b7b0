"""The per-batch orchestration: validate, then bronze, silver and gold, each an activity.

The generator is replayed from history on every wake-up, so it is deterministic: it does
no I/O, reads no clock and no settings, and passes only the batch reference and the
small step results (state, counts, versions) between activities.

Transient failures are retried by the Durable runtime (``RETRY``, with backoff). A
permanent one (a quarantined file, a contract violation) is not raised by the activity
at all: the activity records it and returns the batch in QUARANTINED or FAILED, and the
orchestration stops there. When retries run out, the ``fail_batch`` activity records
FAILED with the last error.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

import azure.durable_functions as df

ORCHESTRATOR = "batch_orchestrator"
ACTIVITY_VALIDATE = "validate_batch"
ACTIVITY_BRONZE = "write_bronze"
ACTIVITY_SILVER = "merge_silver"
ACTIVITY_GOLD = "update_gold"
ACTIVITY_FAIL = "fail_batch"

# (layer, activity), in order. Routing by size happens inside validate, which records the
# route; until the Databricks route exists every route runs these same activities.
LAYERS: tuple[tuple[str, str], ...] = (
    ("validate", ACTIVITY_VALIDATE),
    ("bronze", ACTIVITY_BRONZE),
    ("silver", ACTIVITY_SILVER),
    ("gold", ACTIVITY_GOLD),
)
# States after which no later layer runs.
STOP_STATES = frozenset({"GOLD_DONE", "EMPTY", "QUARANTINED", "FAILED"})
# Counts small enough for the Durable status API; the full record is in batch state.
STATUS_COUNTS = (
    "records",
    "rows_in",
    "rows_valid",
    "rows_quarantined",
    "duplicates_dropped",
    "silver_inserted",
)


class BackoffRetryOptions(df.RetryOptions):
    """``df.RetryOptions`` plus the backoff the Durable extension applies between attempts.

    azure-functions-durable 1.7 serializes only the first interval and the attempt count;
    the extension's out-of-process action schema (the one the JavaScript SDK writes) also
    reads ``backoffCoefficient`` and ``maxRetryIntervalInMilliseconds``.
    """

    def __init__(
        self,
        first_retry_interval_in_milliseconds: int,
        max_number_of_attempts: int,
        *,
        backoff_coefficient: float = 2.0,
        max_retry_interval_in_milliseconds: int = 300_000,
    ) -> None:
        super().__init__(first_retry_interval_in_milliseconds, max_number_of_attempts)
        self.backoff_coefficient = backoff_coefficient
        self.max_retry_interval_in_milliseconds = max_retry_interval_in_milliseconds

    def to_json(self) -> dict[str, str | int]:
        payload: dict[str, Any] = dict(super().to_json())
        payload["backoffCoefficient"] = self.backoff_coefficient
        payload["maxRetryIntervalInMilliseconds"] = self.max_retry_interval_in_milliseconds
        return payload


# 5 s, 10 s, 20 s, 40 s: rides out throttling and a storage blip, not an outage.
RETRY = BackoffRetryOptions(5_000, 5, backoff_coefficient=2.0, max_retry_interval_in_milliseconds=60_000)


def run_batch(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    """Run one batch through every layer; returns the last step result.

    The input is a ``BatchRef`` dict; every activity gets that same dict.
    """
    ref: dict[str, Any] = context.get_input(expected_type=dict)
    result: dict[str, Any] = {"batch_id": ref["batch_id"], "state": "RECEIVED", "counts": {}}
    for layer, activity in LAYERS:
        context.set_custom_status(custom_status(layer, result))
        try:
            result = yield context.call_activity_with_retry(activity, RETRY, ref, expected_type=dict)
        except Exception as exc:  # retries exhausted: the runtime reports it as a plain Exception
            error = f"{layer} failed after {RETRY.max_number_of_attempts} attempts: {exc}"
            result = yield context.call_activity_with_retry(
                ACTIVITY_FAIL, RETRY, {"batch": ref, "error": error}, expected_type=dict
            )
        context.set_custom_status(custom_status(layer, result))
        if result["state"] in STOP_STATES:
            break
    return result


def custom_status(layer: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """What the Durable status API shows: the layer, the batch state and headline counts."""
    counts = result.get("counts") or {}
    return {
        "layer": layer,
        "state": result.get("state"),
        "route": result.get("route") or None,
        "counts": {k: counts[k] for k in STATUS_COUNTS if k in counts},
        "error": result.get("error"),
    }
