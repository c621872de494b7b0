"""What the CLI prints: batch tables, table contents and the demo's summary of one lake."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import polars as pl

from shared import costs
from shared.batches import HEADLINE_COUNTS, BatchState
from shared.contracts import CONTRACTS

if TYPE_CHECKING:
    from shared.adapters.lake import Table
    from shared.app import App


def table(app: App, name: str) -> Table:
    """The table ``show`` calls ``name`` (gold tables by their own name)."""
    for dataset in CONTRACTS:
        tables = app.context.tables(dataset).by_short_name()
        found = tables.get(name) or tables.get(f"gold.{name}")
        if found is not None:
            return found
    raise KeyError(name)


def frame_text(frame: pl.DataFrame, *, rows: int) -> str:
    with pl.Config(
        tbl_rows=rows, tbl_cols=30, fmt_str_lengths=40, tbl_width_chars=220, tbl_hide_dataframe_shape=True
    ):
        return str(frame)


def batch_table(batches: list[BatchState]) -> str:
    """Batches as a printable table: state, counts, time, GB-seconds, cost and where the file came from."""
    if not batches:
        return "no batches"
    rows = [
        {
            "batch": b.batch_id[:12],
            "state": b.state.value,
            "route": b.route.value if b.route else "",
            "source": _short(b.source, 34),
            "rows_in": b.counts.rows_in or 0,
            "valid": b.counts.rows_valid or 0,
            "quarantined": b.counts.rows_quarantined or 0,
            "inserted": b.counts.silver_inserted or 0,
            "dups": b.counts.duplicates_dropped or 0,
            "seconds": round(sum(b.durations.values()), 2),
            "gb_s": round(sum(b.gb_seconds.values()), 2),
            "spark_s": round(sum(u.seconds for u in b.spark_usage.values()), 1),
            "usd": f"{costs.batch_cost(b).total_usd:.6f}",
            "error": (b.error or "")[:60],
        }
        for b in batches
    ]
    with pl.Config(
        tbl_rows=len(rows),
        tbl_cols=15,
        fmt_str_lengths=60,
        tbl_width_chars=220,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
    ):
        return str(pl.DataFrame(rows))


def summary(app: App) -> str:
    """What a run left in this lake: batch states and totals, table sizes and versions, top users."""
    batches = sorted(app.states.list(lake=app.settings.lake_uri), key=lambda b: b.source)
    lines = [batch_table(batches), ""]
    by_state = Counter(b.state.value for b in batches)
    totals = {key: sum(int(b.counts.to_dict().get(key, 0)) for b in batches) for key in HEADLINE_COUNTS[1:]}
    unbalanced = [b.batch_id for b in batches if b.counts.unbalanced()]
    lines.append("batches by state: " + ", ".join(f"{k}={v}" for k, v in sorted(by_state.items())))
    lines.append("rows: " + ", ".join(f"{k}={v}" for k, v in totals.items()))
    lines.append("accounting: " + ("every batch balances" if not unbalanced else f"UNBALANCED {unbalanced}"))
    lines.append(cost_line(batches))
    lines.append("")
    sizes = []
    for dataset in CONTRACTS:
        for name, handle in app.context.tables(dataset).by_short_name().items():
            if handle.exists():
                snapshot = handle.snapshot()
                sizes.append(
                    {
                        "table": name,
                        "rows": snapshot.rows(),
                        "files": snapshot.files().height,
                        "version": snapshot.version,
                    }
                )
    with pl.Config(
        tbl_rows=20, tbl_width_chars=220, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True
    ):
        lines.append(str(pl.DataFrame(sizes)))
        users = table(app, "user_watch_time")
        if users.exists():
            top = (
                users.snapshot()
                .scan()
                .sort("total_watch_sec", descending=True)
                .head(10)
                .select(
                    "user_id",
                    (pl.col("total_watch_sec") / 3600).round(2).alias("watch_hours"),
                    "events",
                    "first_event_time",
                    "last_event_time",
                )
                .collect()
            )
            lines += ["", "top users by watch time", str(top)]
    return "\n".join(lines)


def cost_line(batches: list[BatchState]) -> str:
    """What the batches cost in all and per million events read, at the rates of ``shared.costs``."""
    spent = [costs.batch_cost(b) for b in batches]
    total = sum(c.total_usd for c in spent)
    events = sum(b.counts.rows_in or 0 for b in batches)
    per_million = costs.per_million_events(total, events)
    return (
        f"cost: ${total:.6f} (Functions ${sum(c.functions_usd for c in spent):.6f}, "
        f"Databricks ${sum(c.databricks_usd for c in spent):.6f}; "
        f"{sum(sum(b.gb_seconds.values()) for b in batches):.2f} GB-s)"
        + (f", ${per_million:.4f} per million events" if per_million is not None else "")
        + f" at list prices as of {costs.RATES_AS_LISTED} (shared/costs.py)"
    )


def _short(uri: str, width: int) -> str:
    return uri if len(uri) <= width else "…" + uri[-(width - 1) :]
