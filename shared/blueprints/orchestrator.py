"""The per-batch orchestrator; its logic is ``shared.orchestration.run_batch``."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from shared.batches import ORCHESTRATOR
from shared.orchestration import run_batch

bp = df.Blueprint()


@bp.orchestration_trigger(context_name="context", orchestration=ORCHESTRATOR)
def batch_orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    """Validate, then bronze, silver and gold for one batch (instance id = batch id)."""
    return (yield from run_batch(context))
