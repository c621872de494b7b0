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

from shared.adapters.lake import WRITER_PROPERTIES, Lake
from shared.contracts import CONTRACTS
from shared.operations import RunLedger
from shared.pipeline import medallion
from shared.settings import Settings
from shared.steps import gold_table, table_name

log = logging.getLogger(__name__)


def tables() -> list[str]:
    """Every table the pipeline writes, in lake order."""
    names = [
        table_name(layer, contract)
        for contract in CONTRACTS.values()
        for layer in ("bronze", "quarantine", "silver")
    ]
    return names + [gold_table(name) for name in medallion.GOLD_SCHEMAS]


def maintain_table(lake: Lake, table: str, retention_hours: int) -> dict[str, Any]:
    """Compact then vacuum one table; returns what changed (``skipped`` when it does not exist)."""
    started = time.perf_counter()
    if lake.open(table) is None:
        return {"table": table, "skipped": "does not exist yet"}

    def compact() -> tuple[int, dict[str, Any]]:
        dt = lake.open(table)
        assert dt is not None
        metrics = dt.optimize.compact(
            writer_properties=WRITER_PROPERTIES,
            commit_properties=lake.commit_properties(None, {"tributary.operation": "maintenance"}),
        )
        return dt.version(), metrics

    before = lake.open(table)
    assert before is not None
    version_before = before.version()
    version, metrics = lake.with_conflict_retry(f"compact {table}", compact)
    after = lake.open(table)
    assert after is not None
    # VACUUM_RETENTION_HOURS is the policy, not the table's own property (7 days by default).
    removed = after.vacuum(retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False)
    return {
        "table": table,
        "version_before": version_before,
        "version_after": after.version(),
        "compaction_version": version if version != version_before else None,
        "files_added": int(metrics.get("numFilesAdded", 0)),
        "files_removed": int(metrics.get("numFilesRemoved", 0)),
        "files_vacuumed": len(removed),
        "seconds": round(time.perf_counter() - started, 3),
    }


def run_maintenance(
    settings: Settings,
    *,
    lake: Lake | None = None,
    ledger: RunLedger | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Maintain every table, record the run in the operations table, and return it.

    A table that fails is reported in the summary and does not stop the others.

    Args:
        settings: Lake location, vacuum retention and the operations table.
        lake: The lake (tests pass their own).
        ledger: Where the run is recorded.
        now: Time of the run (tests).
    """
    lake = lake or Lake(settings)
    ledger = ledger or RunLedger(settings.storage_connection, settings.operations_table)
    at = now or datetime.now(UTC)
    results: list[dict[str, Any]] = []
    for table in tables():
        try:
            result = maintain_table(lake, table, settings.vacuum_retention_hours)
        except Exception as exc:  # one table's failure must not hide the others' results
            log.exception("maintenance of %s failed", table)
            result = {"table": table, "error": f"{type(exc).__name__}: {exc}"}
        log.info("maintenance %s", result)
        results.append(result)
    summary = {
        "retention_hours": settings.vacuum_retention_hours,
        "tables": results,
        "failed": sum(1 for r in results if "error" in r),
    }
    ledger.record_maintenance(summary, at)
    return {"at": at.isoformat(), **summary}
