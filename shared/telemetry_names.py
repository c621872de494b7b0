"""The names the pipeline's telemetry is queried by: custom events and their dimensions.

The code emits one ``LAYER_EVENT`` per layer step that finishes and one ``BATCH_EVENT``
when a batch reaches a final state or FAILED. Both arrive in Application Insights as
``customEvents`` (and ``traces``) whose ``customDimensions`` are strings: counts and
durations as decimal text, ``gb_seconds`` (the step's, or the batch's in all) and
``cost_usd`` (``shared.costs``, at list prices) as decimal text too,
``quarantined_by_expectation`` as a JSON object's text, and ``landed_at`` as ISO-8601 UTC.
The alerts, queries and workbook under ``infra/monitoring/`` use only these names (a test
holds them to it), so renaming one here means changing them.
"""

from __future__ import annotations

from typing import Final

LAYER_EVENT: Final = "LayerCompleted"
BATCH_EVENT: Final = "BatchFinished"

#: What every log record about a batch carries (the events carry these and the rest below).
BATCH_DIMENSIONS: Final[tuple[str, ...]] = (
    "batch_id",
    "dataset",
    "layer",
    "route",
    "state",
    "rows_in",
    "rows_valid",
    "rows_quarantined",
    "duplicates_dropped",
    "silver_inserted",
    "duration_ms",
)
DIMENSIONS: Final[tuple[str, ...]] = (
    *BATCH_DIMENSIONS,
    "quarantined_by_expectation",
    "landed_at",
    "error",
    "run_id",
    "run_page_url",
    "gb_seconds",
    "cost_usd",
)
