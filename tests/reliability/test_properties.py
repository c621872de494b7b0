"""Property: any sequence of batches lands silver = the deduplicated valid rows, first ingested wins.

Hypothesis draws sequences of files whose rows are drawn from a small pool of events over
three days, so keys repeat within a file, across files and across dates; some rows are
the same key with other values (a re-used id: the first ingested must stay), some are
invalid in one of the ways the contract names. After every file runs, silver must hold
exactly the first valid row of each key, gold must be the aggregate of silver, and every
batch's counts must balance and match the lake. The lake is local and batch state in
memory (``MemoryStates``), so an example costs a few hundred milliseconds.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.adapters.lake import Lake
from shared.adapters.storage import Storage
from shared.batches import State
from shared.layers.context import Context
from shared.settings import AZURITE_CONNECTION, Settings
from tests.reliability.audit import Event, check, first_wins, report
from tests.reliability.conftest import LONG
from tests.reliability.inputs import INVALID, File, events
from tests.reliability.steps import land, run_all
from tests.support.fakes import MemoryStates

POOL = [e for day in range(3) for e in events(12, seed=400 + day, day=day)]

Row = tuple[str, int, str]
"""(kind, index into POOL, detail): ``valid``, ``variant`` (same key, other values) or ``invalid``."""

rows = st.one_of(
    st.tuples(st.just("valid"), st.integers(0, len(POOL) - 1), st.just("")),
    st.tuples(st.just("variant"), st.integers(0, len(POOL) - 1), st.sampled_from(["action", "watch", "day"])),
    st.tuples(st.just("invalid"), st.integers(0, len(POOL) - 1), st.sampled_from(sorted(INVALID))),
)
batches = st.lists(st.lists(rows, min_size=1, max_size=25), min_size=1, max_size=5)


def variant(event: Event, detail: str) -> Event:
    """The same key with other values: what a producer re-using an id would send."""
    other = dict(event)
    if detail == "action":
        other["action"] = "stop" if event["action"] != "stop" else "play"
    elif detail == "watch":
        other["watch_time_sec"] = float(event["watch_time_sec"]) + 1.5
    else:  # the next day: a re-used id on another date
        when = dt.datetime.fromisoformat(str(event["event_time"])) + dt.timedelta(days=1)
        other["event_time"] = when.isoformat().replace("+00:00", "Z")
    return other


def build(number: int, drawn: list[Row]) -> File:
    made = File(f"ns/hub/0/2026/11/21/12/00/{number:02d}.ndjson")
    for kind, index, detail in drawn:
        event = POOL[index]
        if kind == "valid":
            made.add(dict(event))
        elif kind == "variant":
            made.add(variant(event, detail))
        else:
            made.reject(INVALID[detail](event))
    return made


def fresh_context(root: Path) -> Context:
    s = Settings.from_env(
        {
            "AzureWebJobsStorage": AZURITE_CONNECTION,
            "LAKE_URI": str(root / "lake"),
            "CAPTURE_URI": str(root / "capture"),
            "QUARANTINE_URI": str(root / "quarantine"),
        }
    )
    return Context(s, Storage(s.lake_storage), MemoryStates(), Lake(s.lake_uri))


TRIED = {"examples": 0, "batches": 0, "bad_inputs": 0, "rows_lost": 0, "rows_altered": 0}


@pytest.mark.timeout(3600)
@settings(
    max_examples=300 if LONG else 12,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batches)
def test_any_sequence_of_batches_lands_the_first_valid_row_of_each_key_once(drawn: list[list[Row]]) -> None:
    files = [build(i, rows) for i, rows in enumerate(drawn)]
    with tempfile.TemporaryDirectory() as root:
        ctx = fresh_context(Path(root))
        done = [run_all(ctx, land(ctx, f).ref) for f in files]
        assert {b.state for b in done} <= {State.GOLD_DONE}
        findings = check(ctx, first_wins(f.valid for f in files), done)
        assert findings.problems() == []
    TRIED["examples"] += 1
    TRIED["batches"] += len(files)
    TRIED["bad_inputs"] += sum(f.invalid for f in files)


def test_report_the_properties_run() -> None:
    """Runs after the property (file order): what it tried, for ``make reliability``'s table."""
    report("property: random batch sequences (dups, variants, invalid rows)", **TRIED)
