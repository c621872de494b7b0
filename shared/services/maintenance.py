"""Table maintenance: compact small files and vacuum unreferenced ones, then record it.

Every batch appends or merges a few small files into each table, so a busy day leaves
hundreds of them; compaction rewrites them into fewer large ones (a data-neutral commit
that concurrent MERGEs can conflict with, hence the conflict retry). Vacuum then deletes
files no version newer than the retention window references.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from shared.adapters.lake import Table
from shared.adapters.ledger import RunLedger
from shared.contracts import CONTRACTS
from shared.layers.context import Context

log = logging.getLogger(__name__)


def maintain_table(table: Table, retention_hours: int) -> dict[str, Any]:
    """Compact then vacuum one table; returns what changed (``skipped`` when it does not exist)."""
    started = time.perf_counter()
    name = table.spec.name
    if not table.exists():
        return {"table": name, "skipped": "does not exist yet"}
    before = table.snapshot()
    table.compact()
    compacted = table.snapshot()
    removed = table.vacuum(retention_hours)
    return {
        "table": name,
        "version_before": before.version,
        "version_after": compacted.version,
        "compaction_version": compacted.version if compacted.version != before.version else None,
        "files_before": before.files().height,
        "files_after": compacted.files().height,
        "files_vacuumed": removed,
        "seconds": round(time.perf_counter() - started, 3),
    }


def run_maintenance(ctx: Context, ledger: RunLedger, *, now: datetime | None = None) -> dict[str, Any]:
    """Maintain every table of every contract, record the run in the operations table, return it.

    A table that fails is reported in the summary and does not stop the others.
    """
    at = now or datetime.now(UTC)
    results: list[dict[str, Any]] = []
    for dataset in CONTRACTS:
        for table in ctx.tables(dataset).by_short_name().values():
            try:
                result = maintain_table(table, ctx.settings.vacuum_retention_hours)
            except Exception as exc:  # one table's failure must not hide the others' results
                log.exception("maintenance of %s failed", table.spec.name)
                result = {"table": table.spec.name, "error": f"{type(exc).__name__}: {exc}"}
            log.info("maintenance %s", result)
            results.append(result)
    summary = {
        "retention_hours": ctx.settings.vacuum_retention_hours,
        "tables": results,
        "failed": sum(1 for r in results if "error" in r),
    }
    ledger.record_maintenance(summary, at)
    return {"at": at.isoformat(), **summary}
