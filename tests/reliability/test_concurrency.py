"""Many batches into the same tables at once, and a long run of them back to back.

Concurrent runs must equal a sequential run of the same files (silver's business columns
and every gold table), and every batch's commits must be in the log: delta-rs issues
#3166 and #3736 report writers on Azure that gave up ("Failed to commit transaction: 15")
and commits that went missing under concurrency. Here each commit carries its
batch's application transaction and is looked for afterwards (``Tables.holds``).
"""

from __future__ import annotations

import itertools
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from shared.adapters import lake
from shared.app import App
from shared.batches import BatchState, State
from shared.contracts import USER_ACTIVITY
from shared.layers.context import Context
from shared.pipeline.schemas import SOURCE_VERSION, business_columns
from tests.reliability.audit import check, first_wins, report
from tests.reliability.conftest import app_on
from tests.reliability.emulator import Emulator
from tests.reliability.inputs import File, mixed_file
from tests.reliability.steps import ROOT, cli, cli_env, land, run_all

#: The short names of the tables every GOLD_DONE batch commits to.
COMMITTED = ("bronze", "quarantine", "silver", *(f"gold.{t.name}" for t in USER_ACTIVITY.gold))


def day_of_files(n: int, seed: int, events: int = 120) -> list[File]:
    """``n`` files of one day; each also repeats a few events of the file before it (redeliveries)."""
    files = [
        mixed_file(f"ns/hub/{i % 4}/2026/11/21/{i // 60:02d}/{i % 60:02d}/00.ndjson", events, seed=seed + i)
        for i in range(n)
    ]
    for before, after in itertools.pairwise(files):
        for event in before.valid[:3]:
            after.add(dict(event))
    return files


def tables_of(ctx: Context) -> dict[str, pl.DataFrame]:
    handles = ctx.tables(USER_ACTIVITY.dataset).by_short_name()
    silver = handles["silver"].snapshot().scan().select(business_columns(USER_ACTIVITY)).collect()
    out = {"silver": silver.sort("log_id")}
    for name in COMMITTED[3:]:
        frame = handles[name].snapshot().scan().collect().drop(SOURCE_VERSION)
        out[name] = frame.sort(frame.columns)
    return out


def assert_same_tables(got: Context, want: Context) -> None:
    ours, theirs = tables_of(got), tables_of(want)
    for name in ours:
        assert_frame_equal(ours[name], theirs[name], check_exact=False, rel_tol=1e-9)


def missing_commits(ctx: Context, batches: list[BatchState]) -> list[str]:
    tables = ctx.tables(USER_ACTIVITY.dataset)
    return [
        f"{b.batch_id} {name}" for b in batches for name in COMMITTED if not tables.holds(name, b.batch_id)
    ]


def concurrently(ctx: Context, files: list[File], workers: int) -> list[BatchState]:
    refs = [land(ctx, f).ref for f in files]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda ref: run_all(ctx, ref), refs))


def run_and_compare(seq: Context, con: Context, files: list[File], workers: int, what: str) -> None:
    started = time.perf_counter()
    sequential = [run_all(seq, land(seq, f).ref) for f in files]
    seq_seconds = time.perf_counter() - started
    started = time.perf_counter()
    parallel = concurrently(con, files, workers)
    con_seconds = time.perf_counter() - started
    assert [b.state for b in parallel] == [State.GOLD_DONE] * len(files)
    assert missing_commits(con, parallel) == []
    assert_same_tables(con, seq)
    findings = check(con, first_wins(f.valid for f in files), parallel)
    assert findings.problems() == []
    assert check(seq, first_wins(f.valid for f in files), sequential).problems() == []
    report(
        what,
        concurrent=workers,
        batches=len(files),
        bad_inputs=sum(f.invalid for f in files),
        rows_lost=len(findings.lost),
        rows_altered=len(findings.altered),
        seconds=round(con_seconds, 1),
        sequential_seconds=round(seq_seconds, 1),
    )


@pytest.mark.azurite
def test_eight_batches_in_threads_equal_a_sequential_run_and_lose_no_commit(
    up: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small partitions compact at 4 files, so concurrent batches also race to compact.
    monkeypatch.setattr(lake, "COMPACT_AT_FILES", 4)
    files = day_of_files(8, seed=100)
    seq, con = (app_on(up, tmp_path, remote=False).context for _ in range(2))
    run_and_compare(seq, con, files, 8, "8 batches in 8 threads (local lake), vs sequential")


@pytest.mark.azurite
@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("workers", [8, 16])
def test_many_batches_in_threads_on_azurite_equal_a_sequential_run(
    up: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    monkeypatch.setattr(lake, "COMPACT_AT_FILES", 4)
    files = day_of_files(workers, seed=200 + workers)
    seq, con = (app_on(up, tmp_path).context for _ in range(2))
    run_and_compare(
        seq, con, files, workers, f"{workers} batches in {workers} threads on Azurite, vs sequential"
    )


@pytest.mark.azurite
@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("processes", [8, 16])
def test_many_ingest_processes_on_azurite_equal_a_sequential_run(
    up: Emulator, tmp_path: Path, processes: int
) -> None:
    files = day_of_files(processes, seed=300 + processes)
    seq, con = app_on(up, tmp_path), app_on(up, tmp_path)
    for f in files:
        run_all(seq.context, land(seq.context, f).ref)
    batches = [land(con.context, f) for f in files]
    env = cli_env(con.settings)
    started = time.perf_counter()
    runs = [cli("ingest", b.source, env=env) for b in batches]
    outcomes = [run.communicate(timeout=600) for run in runs]
    seconds = time.perf_counter() - started
    assert [run.returncode for run in runs] == [0] * processes, [err for _, err in outcomes]
    final = list(con.states.list(lake=con.settings.lake_uri))
    assert [b.state for b in final] == [State.GOLD_DONE] * processes
    assert missing_commits(con.context, final) == []
    assert_same_tables(con.context, seq.context)
    findings = check(con.context, first_wins(f.valid for f in files), final)
    assert findings.problems() == []
    report(
        f"{processes} ingest processes on Azurite, vs sequential",
        concurrent=processes,
        batches=processes,
        bad_inputs=sum(f.invalid for f in files),
        rows_lost=len(findings.lost),
        rows_altered=len(findings.altered),
        seconds=round(seconds, 1),
    )


@pytest.mark.azurite
@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_soak_two_hundred_small_batches_back_to_back(up: Emulator, tmp_path: Path) -> None:
    app: App = app_on(up, tmp_path)
    files = day_of_files(200, seed=1000, events=100)
    for f in files:
        land(app.context, f)
    log = tmp_path / "soak.log"
    with log.open("w") as out:
        started = time.perf_counter()
        run = subprocess.Popen(
            [sys.executable, "-m", "shared", "ingest", app.settings.capture_uri],
            cwd=ROOT,
            env=cli_env(app.settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(run.pid, 0)
        seconds = time.perf_counter() - started
    assert os.waitstatus_to_exitcode(status) == 0, log.read_text()[-3000:]
    final = list(app.states.list(lake=app.settings.lake_uri))
    assert len(final) == 200 and {b.state for b in final} == {State.GOLD_DONE}
    findings = check(app.context, first_wins(f.valid for f in files), final)
    assert findings.problems() == []
    assert missing_commits(app.context, final) == []
    peak_mb = usage.ru_maxrss / 1024  # kilobytes on Linux
    # Whether a step slows as the tables grow: each layer's mean time, first and last 20 batches.
    ordered = sorted(final, key=lambda b: b.received_at)
    drift = {
        f"{layer}_s_first20_last20": [
            round(sum(b.durations.get(layer, 0.0) for b in part) / len(part), 3)
            for part in (ordered[:20], ordered[-20:])
        ]
        for layer in ("bronze", "silver", "gold")
    }
    rows = sum(len(f.lines) for f in files)
    report(
        "soak: 200 small batches back to back on Azurite",
        batches=200,
        bad_inputs=sum(f.invalid for f in files),
        rows_lost=len(findings.lost),
        rows_altered=len(findings.altered),
        seconds=round(seconds, 1),
        batches_per_second=round(200 / seconds, 2),
        rows_per_second=round(rows / seconds),
        peak_rss_mb=round(peak_mb),
        **drift,
        test_process_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    )
