"""Writers racing on one batch: the loser finds the winner's commits and leaves its state alone.

A hostile tester ran ``python -m shared ingest FILE`` four times at once on the previous
core: no duplicate landed, but losers crashed on ``CommitFailedError`` or printed FAILED,
and a loser's FAILED overwrote the winner's progress. The process test below re-runs
that; the in-process tests pin each interleaving that broke on the new core, by letting
the winner land right after the loser's n-th look at a table (``lands_after_open``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shared import layers
from shared.adapters import lake
from shared.adapters.lake import Lake, Table
from shared.batches import BatchState, Layer, RetryPolicy, State
from shared.errors import StoreUnavailable
from shared.layers import bronze, gold, silver
from shared.layers.context import Context
from shared.services.runner import Runner
from tests.reliability.audit import check, first_wins, report
from tests.reliability.conftest import app_on
from tests.reliability.emulator import Emulator
from tests.reliability.inputs import File, mixed_file
from tests.reliability.steps import cli, cli_env, land, lands_after_open, run_all, run_layer, stored

BRONZE, SILVER = "bronze/user_activity", "silver/user_activity"


def path(i: int) -> str:
    return f"ns/hub/{i % 4}/2026/11/21/12/{i // 60:02d}/{i % 60:02d}.ndjson"


# -- real processes -------------------------------------------------------------------------
def four_at_once(emulator: Emulator, tmp_path: Path, *, remote: bool, seed: int) -> None:
    app = app_on(emulator, tmp_path, remote=remote)
    file = mixed_file(path(seed), 600, seed=seed)
    batch = land(app.context, file)
    env = cli_env(app.settings)
    runs = [cli("ingest", batch.source, env=env) for _ in range(4)]
    results = [(run.wait(timeout=280), *run.communicate()) for run in runs]
    for code, out, err in results:
        assert code == 0, err
        assert "GOLD_DONE" in out and "FAILED" not in out + err, out + err
    final = stored(app.context, batch.ref)
    assert final.state is State.GOLD_DONE
    assert State.FAILED not in [t.state for t in final.transitions]
    findings = check(app.context, first_wins([file.valid]), [final])
    assert findings.problems() == []
    report(
        "4 processes ingest one file",
        concurrent=4,
        batches=1,
        bad_inputs=file.invalid,
        rows_lost=len(findings.lost),
        rows_altered=len(findings.altered),
    )


@pytest.mark.azurite
@pytest.mark.parametrize("remote", [False, True], ids=["local lake", "lake on azurite"])
def test_four_processes_ingesting_one_file_land_it_once_and_all_report_it_done(
    up: Emulator, tmp_path: Path, remote: bool
) -> None:
    four_at_once(up, tmp_path, remote=remote, seed=1)


@pytest.mark.azurite
@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2, 8))
def test_four_processes_again_and_again(up: Emulator, tmp_path: Path, seed: int) -> None:
    four_at_once(up, tmp_path, remote=True, seed=seed)


# -- each interleaving, in one process ------------------------------------------------------
def at(ctx: Context, file: File, state: State) -> BatchState:
    """The file's batch run until it reached ``state``."""
    batch = land(ctx, file)
    for layer in Layer:
        if stored(ctx, batch.ref).state.reached(state):
            break
        run_layer(ctx, layer, batch.ref)
    return stored(ctx, batch.ref)


def finish_and_check(ctx: Context, files: list[File], batches: list[BatchState]) -> None:
    done = [run_all(ctx, b.ref) for b in batches]
    assert [b.state for b in done] == [State.GOLD_DONE] * len(done)
    findings = check(ctx, first_wins(f.valid for f in files), done)
    assert findings.problems() == []


@pytest.mark.parametrize("nth", [1, 2, 3])
def test_a_bronze_writer_overtaken_at_any_look_lands_the_rows_once_and_counts_them(
    memory_ctx: Context, monkeypatch: pytest.MonkeyPatch, nth: int
) -> None:
    file = mixed_file(path(0), 300, seed=3)
    read = at(memory_ctx, file, State.VALIDATED)
    with lands_after_open(monkeypatch, BRONZE, nth, lambda: bronze.work(memory_ctx, read)) as opens:
        result = run_layer(memory_ctx, Layer.BRONZE, read.ref)
    assert opens[0] >= nth  # the winner did land
    assert result.counts.rows_valid == len(file.valid) and result.counts.rows_quarantined == file.invalid
    finish_and_check(memory_ctx, [file], [result])


@pytest.mark.parametrize("nth", [1, 2, 3, 4])
def test_a_silver_writer_overtaken_at_any_look_inserts_once_and_counts_it(
    memory_ctx: Context, monkeypatch: pytest.MonkeyPatch, nth: int
) -> None:
    # Two batches of the same day already there, so this insert compacts first.
    monkeypatch.setattr(lake, "COMPACT_AT_FILES", 2)
    earlier = [mixed_file(path(i), 50, seed=20 + i) for i in (1, 2)]
    for file in earlier:
        run_all(memory_ctx, land(memory_ctx, file).ref)
    file = mixed_file(path(3), 200, seed=23)
    read = at(memory_ctx, file, State.BRONZE_DONE)
    with lands_after_open(monkeypatch, SILVER, nth, lambda: silver.work(memory_ctx, read)):
        result = run_layer(memory_ctx, Layer.SILVER, read.ref)
    assert result.counts.silver_inserted == len({e["log_id"] for e in file.valid})
    finish_and_check(memory_ctx, [*earlier, file], [stored(memory_ctx, read.ref)])


@pytest.mark.parametrize("table", ["gold/user_watch_time", "gold/region_daily_watch_time"])
@pytest.mark.parametrize("nth", [1, 2])
def test_a_gold_writer_overtaken_at_any_look_folds_the_batch_in_once(
    memory_ctx: Context, monkeypatch: pytest.MonkeyPatch, table: str, nth: int
) -> None:
    file = mixed_file(path(4), 300, seed=5)
    read = at(memory_ctx, file, State.SILVER_DONE)
    with lands_after_open(monkeypatch, table, nth, lambda: gold.work(memory_ctx, read)) as opens:
        run_layer(memory_ctx, Layer.GOLD, read.ref)
    assert opens[0] >= nth
    finish_and_check(memory_ctx, [file], [read])


def test_a_writer_that_keeps_failing_never_writes_failed_over_a_winner_that_moved_on(
    memory_ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loser cannot reach the lake at all; meanwhile the winner runs one layer per retry wait."""
    winner = memory_ctx
    loser = Context(winner.settings, winner.files, winner.states, Lake(winner.settings.lake_uri))
    file = mixed_file(path(5), 200, seed=6)
    batch = at(winner, file, State.BRONZE_DONE)
    real = Table._open

    def open_or_fail(self: Table) -> object:
        if self.lake is loser.lake:
            raise StoreUnavailable(self.uri, ConnectionRefusedError("the loser's network is down"))
        return real(self)

    monkeypatch.setattr(Table, "_open", open_or_fail)
    ahead = iter([Layer.SILVER, Layer.GOLD])

    def wait(seconds: float) -> None:  # while the loser waits to retry, the winner moves on
        layer = next(ahead, None)
        if layer is not None:
            layers.run(winner, layer, batch.ref)

    runner = Runner(loser, retry=RetryPolicy(0.0, 2, 1.0, 0.0), sleep=wait)
    ran = runner.run(winner.files.info(batch.source))
    final = stored(winner, batch.ref)
    assert final.state is State.GOLD_DONE
    assert State.FAILED not in [t.state for t in final.transitions]
    assert ran.batch is not None and ran.batch.state is State.GOLD_DONE
    finish_and_check(winner, [file], [final])
