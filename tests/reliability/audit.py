"""What every reliability test checks at the end, and the figures it reports.

The oracle is independent of the pipeline: the events a test wrote (valid ones, in the
order their files were ingested) say which rows silver must hold and with which values;
gold must be the aggregate of silver (``shared.pipeline.gold.from_scratch``); each batch
must be final, or FAILED with a reason, with its counts balanced *and* equal to what the
lake holds for it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from polars.testing import assert_frame_equal

from shared.batches import BatchState, State
from shared.contracts import USER_ACTIVITY
from shared.layers.context import Context
from shared.pipeline import gold
from shared.pipeline.schemas import SOURCE_VERSION

Event = dict[str, Any]
#: The fields an event carries into silver unchanged (typed).
VALUES = ("user_id", "event_time", "action", "content_id", "watch_time_sec", "ip_address", "device")
#: Set by ``make reliability``: each test appends its figures here as JSON lines.
REPORT_ENV = "TRIBUTARY_RELIABILITY_REPORT"


def first_wins(files: Iterable[Iterable[Event]]) -> dict[str, Event]:
    """The silver silver must hold: per key, the first valid event in ingest order."""
    kept: dict[str, Event] = {}
    for events in files:
        for event in events:
            kept.setdefault(str(event["log_id"]), event)
    return kept


def expected_frame(expected: Mapping[str, Event]) -> pl.DataFrame:
    """The expected silver rows, typed as silver types them."""

    def when(value: Any) -> dt.datetime:
        if isinstance(value, int | float):
            return dt.datetime.fromtimestamp(value / 1000, dt.UTC)
        return dt.datetime.fromisoformat(str(value)).astimezone(dt.UTC)

    rows = [
        {
            "log_id": key,
            "user_id": e["user_id"],
            "event_time": when(e["event_time"]),
            "action": e["action"],
            "content_id": e["content_id"],
            "watch_time_sec": float(e["watch_time_sec"]),
            "ip_address": e.get("ip_address"),
            "device": e.get("device"),
        }
        for key, e in expected.items()
    ]
    schema = {
        "log_id": pl.String,
        "user_id": pl.String,
        "event_time": pl.Datetime("us", "UTC"),
        "action": pl.String,
        "content_id": pl.String,
        "watch_time_sec": pl.Float64,
        "ip_address": pl.String,
        "device": pl.String,
    }
    return pl.DataFrame(rows, schema=schema)


@dataclass
class Findings:
    """What the lake and batch state hold against what they must hold."""

    expected: int = 0
    silver_rows: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: int = 0
    altered: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    gold: list[str] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        out = [f"lost {len(self.lost)} rows, e.g. {self.lost[:3]}"] if self.lost else []
        out += [f"{self.duplicated} duplicate rows in silver"] if self.duplicated else []
        out += [f"altered {len(self.altered)} rows, e.g. {self.altered[:3]}"] if self.altered else []
        out += [f"{len(self.unexpected)} rows that are not valid input, e.g. {self.unexpected[:3]}"] * bool(
            self.unexpected
        )
        return out + self.gold + self.batches


def tables(ctx: Context) -> Any:
    return ctx.tables(USER_ACTIVITY.dataset)


def silver(ctx: Context) -> pl.DataFrame:
    table = tables(ctx).silver
    return table.snapshot().scan().collect() if table.exists() else pl.DataFrame()


def check(ctx: Context, expected: Mapping[str, Event], batches: Iterable[BatchState]) -> Findings:
    """Silver against the expected rows, gold against silver, every batch against the lake."""
    found = Findings(expected=len(expected))
    rows = silver(ctx)
    keys = set(rows.get_column("log_id").to_list()) if rows.height else set()
    found.silver_rows = rows.height
    found.lost = sorted(set(expected) - keys)
    found.unexpected = sorted(keys - set(expected))
    found.duplicated = rows.height - len(keys)
    if rows.height:
        want = expected_frame(expected)
        got = rows.select("log_id", *VALUES).unique("log_id", keep="first")
        joined = got.join(want, on="log_id", suffix="_want")
        differs = pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}_want")) for c in VALUES)
        found.altered = joined.filter(differs).get_column("log_id").to_list()
        found.gold = gold_problems(ctx, rows)
    found.batches = batch_problems(ctx, batches)
    return found


def gold_problems(ctx: Context, rows: pl.DataFrame) -> list[str]:
    """Each gold table against the aggregate of all of silver."""
    problems = []
    keys = {t.name: list(t.keys) for t in gold.tables(USER_ACTIVITY)}
    for name, reference in gold.from_scratch(USER_ACTIVITY, rows):
        table = tables(ctx).gold[name][1]
        got = table.snapshot().scan().collect().drop(SOURCE_VERSION).select(reference.columns)
        try:
            assert_frame_equal(
                got.sort(keys[name]),
                reference.sort(keys[name]),
                check_exact=False,
                rel_tol=1e-9,
                check_dtypes=False,
            )
        except AssertionError as exc:
            problems.append(f"gold {name} is not the aggregate of silver: {str(exc)[:300]}")
    return problems


def batch_problems(ctx: Context, batches: Iterable[BatchState]) -> list[str]:
    """Each batch final (or FAILED with a reason), balanced, and its counts what the lake holds."""
    problems = []
    t = tables(ctx)
    per_batch: dict[str, dict[str, int]] = {}
    for name in ("bronze", "quarantine", "silver"):
        table = t.by_short_name()[name]
        if table.exists():
            counted = table.snapshot().scan().group_by("_batch_id").len().collect()
            for batch_id, n in counted.iter_rows():
                per_batch.setdefault(batch_id, {})[name] = n
    for b in batches:
        c = b.counts
        if not (b.state.final or (b.state is State.FAILED and b.error)):
            problems.append(f"batch {b.batch_id} ended {b.state} (error {b.error!r})")
        problems += [f"batch {b.batch_id}: {p}" for p in c.unbalanced()]
        negative = [k for k, v in c.to_dict().items() if isinstance(v, int) and v < 0]
        problems += [f"batch {b.batch_id}: negative counts {negative}"] if negative else []
        if b.state is not State.GOLD_DONE:
            continue
        held = per_batch.get(b.batch_id, {})
        for name, count in (
            ("bronze", c.rows_valid),
            ("quarantine", c.rows_quarantined),
            ("silver", c.silver_inserted),
        ):
            if held.get(name, 0) != (count or 0):
                problems.append(
                    f"batch {b.batch_id}: counts say {count} {name} rows, the lake holds {held.get(name, 0)}"
                )
    return problems


def report(test: str, **figures: Any) -> None:
    """Append one test's figures to the run's report (only under ``make reliability``)."""
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    with Path(path).open("a", encoding="utf-8") as out:
        out.write(json.dumps({"test": test, **figures}, default=str) + "\n")
