"""Nightly (MAINTENANCE_SCHEDULE) compaction and vacuum of every Delta table."""

from __future__ import annotations

import logging

import azure.functions as func

from shared import telemetry
from shared.blueprints import app
from shared.errors import MaintenanceFailed

log = logging.getLogger(__name__)

bp = func.Blueprint()


@bp.timer_trigger(schedule="%MAINTENANCE_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def maintain_tables(timer: func.TimerRequest, context: func.Context) -> None:
    """Compact and vacuum the Delta tables and record what was done."""
    with telemetry.traced(context.trace_context):
        _maintain(timer)


def _maintain(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.warning("maintenance is running late")
    from shared.services.maintenance import run_maintenance

    built = app()
    summary = run_maintenance(built.context, built.ledger)
    log.info("maintenance done: %d tables, %d failed", len(summary["tables"]), summary["failed"])
    if summary["failed"]:
        failed = [t["table"] for t in summary["tables"] if "error" in t]
        raise MaintenanceFailed(f"maintenance failed for {', '.join(failed)}; see the recorded summary")
