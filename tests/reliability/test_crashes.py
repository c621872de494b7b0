"""A process killed with SIGKILL, then the same file run again: nothing lost, nothing twice.

The worst moment is right after a Delta commit landed and before the batch's state
recorded it: the retry must find the commit (its application transaction) and not
append again. ``tests.reliability.killer`` dies exactly there, after the n-th commit
of an ``ingest`` (bronze, quarantine, silver, then each gold table).
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.batches import State
from tests.reliability.audit import check, first_wins, report
from tests.reliability.conftest import app_on
from tests.reliability.emulator import Emulator
from tests.reliability.inputs import mixed_file
from tests.reliability.steps import ROOT, cli, cli_env, land, stored

pytestmark = pytest.mark.azurite
#: bronze, quarantine, silver, then the four gold tables.
COMMITS = {
    1: "bronze",
    2: "quarantine",
    3: "silver",
    4: "1st gold",
    5: "2nd gold",
    6: "3rd gold",
    7: "4th gold",
}


def killed_after(commit: int, source: str, env: dict[str, str]) -> int:
    run = subprocess.run(
        [sys.executable, "-m", "tests.reliability.killer", str(commit), "ingest", source],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return run.returncode


def crash_then_rerun(up: Emulator, tmp_path: Path, commit: int, *, remote: bool) -> None:
    app = app_on(up, tmp_path, remote=remote)
    file = mixed_file("ns/hub/0/2026/11/21/12/00/00.ndjson", 400, seed=50 + commit)
    batch = land(app.context, file)
    env = cli_env(app.settings)
    assert killed_after(commit, batch.source, env) == -signal.SIGKILL
    died = stored(app.context, batch.ref)
    assert not died.state.final  # it never got to record the end
    again = cli("ingest", batch.source, env=env)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    final = stored(app.context, batch.ref)
    assert final.state is State.GOLD_DONE
    findings = check(app.context, first_wins([file.valid]), [final])
    assert findings.problems() == []
    report(
        f"SIGKILL after the {COMMITS[commit]} commit, re-run",
        faults=1,
        batches=1,
        bad_inputs=file.invalid,
        rows_lost=len(findings.lost),
        rows_altered=len(findings.altered),
    )


@pytest.mark.parametrize("commit", [1, 3, 4], ids=lambda c: COMMITS[c])
def test_killed_after_a_commit_before_its_state_the_rerun_finds_it_and_appends_nothing(
    up: Emulator, tmp_path: Path, commit: int
) -> None:
    crash_then_rerun(up, tmp_path, commit, remote=False)


@pytest.mark.slow
@pytest.mark.parametrize("commit", range(1, 8))
def test_killed_after_every_commit_on_azurite(up: Emulator, tmp_path: Path, commit: int) -> None:
    crash_then_rerun(up, tmp_path, commit, remote=True)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("seed", range(6))
def test_killed_at_a_random_moment_the_rerun_loses_and_duplicates_nothing(
    up: Emulator, tmp_path: Path, seed: int
) -> None:
    app = app_on(up, tmp_path, remote=True)
    files = [
        mixed_file(f"ns/hub/{i}/2026/11/21/12/00/00.ndjson", 800, seed=60 + 10 * seed + i) for i in range(4)
    ]
    for f in files:
        land(app.context, f)
    env = cli_env(app.settings)
    run = cli("ingest", app.settings.capture_uri, env=env)
    time.sleep(random.Random(seed).uniform(2.0, 12.0))
    run.send_signal(signal.SIGKILL)
    run.communicate(timeout=60)
    again = cli("ingest", app.settings.capture_uri, env=env)
    _, err = again.communicate(timeout=400)
    assert again.returncode == 0, err
    batches = list(app.states.list(lake=app.settings.lake_uri))
    assert [b.state for b in batches] == [State.GOLD_DONE] * len(files)
    findings = check(app.context, first_wins(f.valid for f in files), batches)
    assert findings.problems() == []
    report(
        "SIGKILL at a random moment of an ingest, re-run",
        faults=1,
        batches=len(files),
        bad_inputs=sum(f.invalid for f in files),
        rows_lost=len(findings.lost),
        rows_altered=len(findings.altered),
    )
