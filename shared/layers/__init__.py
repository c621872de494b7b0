"""The four layers every batch passes through, each a short module run by one wrapper.

``run(ctx, layer, ref)`` is what an activity or the CLI runner calls: ``step.run`` loads
the batch, skips what it already reached, resumes a FAILED one, times the work of the
layer's module and records the outcome.
"""

from __future__ import annotations

from shared.batches import BatchRef, Layer, StepResult
from shared.layers import bronze, gold, silver, step, validate
from shared.layers.context import Context

WORK: dict[Layer, step.Work] = {
    Layer.VALIDATE: validate.work,
    Layer.BRONZE: bronze.work,
    Layer.SILVER: silver.work,
    Layer.GOLD: gold.work,
}


def run(ctx: Context, layer: Layer, ref: BatchRef) -> StepResult:
    """Run one layer's step for a batch (see ``shared.layers.step``)."""
    return step.run(ctx, layer, ref, WORK[layer])


__all__ = ["WORK", "Context", "run"]
