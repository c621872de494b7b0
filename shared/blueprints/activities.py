"""Activities: each runs one core step for one batch and returns its small result.

The step modules import the data stack, so each activity imports them when it runs.
Inputs are annotated ``dict``: the worker rejects a parameterized ``dict[str, Any]``.
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from shared.blueprints import operations
from shared.orchestration import (
    ACTIVITY_BRONZE,
    ACTIVITY_FAIL,
    ACTIVITY_GOLD,
    ACTIVITY_SILVER,
    ACTIVITY_VALIDATE,
)

bp = df.Blueprint()


@bp.activity_trigger(input_name="batch", activity=ACTIVITY_VALIDATE)
def validate_batch(batch: dict) -> dict[str, Any]:
    """Check the file is readable, count its records and record its route (may end EMPTY/QUARANTINED)."""
    from shared.operations import run_step

    return run_step(operations().pipeline, "validate", batch)


@bp.activity_trigger(input_name="batch", activity=ACTIVITY_BRONZE)
def write_bronze(batch: dict) -> dict[str, Any]:
    """Append the batch's valid rows to bronze and its rejects to quarantine."""
    from shared.operations import run_step

    return run_step(operations().pipeline, "bronze", batch)


@bp.activity_trigger(input_name="batch", activity=ACTIVITY_SILVER)
def merge_silver(batch: dict) -> dict[str, Any]:
    """Dedupe, enrich and insert the batch's new keys into silver (a checked append, not a MERGE)."""
    from shared.operations import run_step

    return run_step(operations().pipeline, "silver", batch)


@bp.activity_trigger(input_name="batch", activity=ACTIVITY_GOLD)
def update_gold(batch: dict) -> dict[str, Any]:
    """Fold the batch's silver rows into each gold table, for the keys it touched."""
    from shared.operations import run_step

    return run_step(operations().pipeline, "gold", batch)


@bp.activity_trigger(input_name="failure", activity=ACTIVITY_FAIL)
def fail_batch(failure: dict) -> dict[str, Any]:
    """Record FAILED for a batch whose step ran out of retries."""
    from shared.operations import fail_step

    return fail_step(operations().pipeline, failure)
