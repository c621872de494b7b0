"""Activities: each runs one layer's step for one batch and returns its small result.

The bindings are annotated ``dict``: the Functions worker accepts only plain types on a
binding (``dict[str, Any]`` fails the app's load). Each runs in its invocation's trace
(``telemetry.traced``): activities are synchronous, and the worker's thread would not have it.
"""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from shared import telemetry
from shared.batches import CANCEL_ACTIVITY, FAIL_ACTIVITY, POLL_ACTIVITY, SUBMIT_ACTIVITY, BatchRef, Layer

bp = df.Blueprint()


def _run(layer: Layer, batch: dict, context: func.Context) -> dict:
    from shared import layers
    from shared.blueprints import app

    with telemetry.traced(context.trace_context):
        return layers.run(app().context, layer, BatchRef.from_dict(batch)).to_dict()


@bp.activity_trigger(input_name="batch", activity=Layer.VALIDATE.activity)
def validate_batch(batch: dict, context: func.Context) -> dict:
    """Check the file is readable, count its records and record its route (may end EMPTY/QUARANTINED)."""
    return _run(Layer.VALIDATE, batch, context)


@bp.activity_trigger(input_name="batch", activity=Layer.BRONZE.activity)
def write_bronze(batch: dict, context: func.Context) -> dict:
    """Append the batch's valid rows to bronze and its rejects to quarantine."""
    return _run(Layer.BRONZE, batch, context)


@bp.activity_trigger(input_name="batch", activity=Layer.SILVER.activity)
def merge_silver(batch: dict, context: func.Context) -> dict:
    """Dedupe, enrich and insert the batch's new keys into silver (a checked append, not a MERGE)."""
    return _run(Layer.SILVER, batch, context)


@bp.activity_trigger(input_name="batch", activity=Layer.GOLD.activity)
def update_gold(batch: dict, context: func.Context) -> dict:
    """Fold the batch's silver rows into each gold table, for the keys it touched."""
    return _run(Layer.GOLD, batch, context)


@bp.activity_trigger(input_name="failure", activity=FAIL_ACTIVITY)
def fail_batch(failure: dict, context: func.Context) -> dict:
    """Record FAILED for a batch whose step ran out of retries."""
    from shared.blueprints import app
    from shared.layers import step

    ref = BatchRef.from_dict(failure["batch"])
    with telemetry.traced(context.trace_context):
        return step.fail(app().context, ref, str(failure["error"])).to_dict()


# -- the Databricks route ---------------------------------------------------------------------
@bp.activity_trigger(input_name="request", activity=SUBMIT_ACTIVITY)
def submit_run(request: dict, context: func.Context) -> dict:
    """Submit the batch's Spark run for the layers it has left (idempotent); FAILED when it cannot be."""
    from shared.blueprints import app

    with telemetry.traced(context.trace_context):
        return app().databricks.submit(BatchRef.from_dict(request["batch"]))


@bp.activity_trigger(input_name="request", activity=POLL_ACTIVITY)
def poll_run(request: dict, context: func.Context) -> dict:
    """The state of a batch's Spark run now; once it ended, what it used, in batch state."""
    from shared.blueprints import app

    ref = BatchRef.from_dict(request["batch"])
    with telemetry.traced(context.trace_context):
        return app().databricks.status(ref, int(request["run_id"])).to_dict()


@bp.activity_trigger(input_name="request", activity=CANCEL_ACTIVITY)
def cancel_run(request: dict, context: func.Context) -> dict:
    """Ask a batch's Spark run to stop (its deadline passed)."""
    from shared.blueprints import app

    with telemetry.traced(context.trace_context):
        app().databricks.cancel(int(request["run_id"]))
        return {"run_id": int(request["run_id"]), "cancelled": True}
