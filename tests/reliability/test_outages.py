"""Storage outages against a real Azurite that the tests stop and start again.

On the previous core an ``ingest`` gave up 2 to 16 s into an outage (``OSError: Kernel
error -> Generic MicrosoftAzure error``: object_store's own 10 retries, about 4 s, under
delta-rs). An outage shorter than STORAGE_RETRY_SECONDS must now be ridden out inside
the step, delta-rs' calls included, so these runs allow the steps no retry of their own
(``ONE_ATTEMPT``); a longer outage fails with ``StoreUnavailable`` naming the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared import layers
from shared.adapters import lake as lake_module
from shared.adapters.lake import Lake, TableSpec
from shared.adapters.state import BatchStateStore
from shared.app import App
from shared.batches import PROGRESS, Layer, RetryPolicy, State
from shared.dev import azurite
from shared.errors import StoreUnavailable
from shared.services.runner import Runner
from shared.settings import Settings
from tests.reliability.audit import check, first_wins, report
from tests.reliability.conftest import app_on
from tests.reliability.emulator import Emulator
from tests.reliability.inputs import File, mixed_file
from tests.reliability.steps import cli, cli_env, land, stored

pytestmark = pytest.mark.azurite

#: No step-level retry: whatever the outage, the step itself must ride it out.
ONE_ATTEMPT = RetryPolicy(first_seconds=0.0, attempts=1, coefficient=1.0, max_seconds=0.0)
OUTAGE = 6.0


def audited(app: App, files: list[File], test: str, faults: int) -> None:
    batches = [b for b in app.states.list(lake=app.settings.lake_uri)]
    assert [b.state for b in batches] == [State.GOLD_DONE] * len(files)
    findings = check(app.context, first_wins(f.valid for f in files), batches)
    assert findings.problems() == []
    report(
        test,
        faults=faults,
        batches=len(files),
        bad_inputs=sum(f.invalid for f in files),
        rows_lost=len(findings.lost),
        rows_altered=len(findings.altered),
    )


def once_after(
    monkeypatch: pytest.MonkeyPatch, target: Any, name: str, then: Callable[[], object], when: Any = None
) -> list[int]:
    """Call ``then()`` once, right after the first call of ``target.name`` (matching ``when``)."""
    real = getattr(target, name)
    fired: list[int] = []

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if not fired and (when is None or when(*args, **kwargs)):
            fired.append(1)
            then()
        return result

    monkeypatch.setattr(target, name, wrapped)
    return fired


def once_before(
    monkeypatch: pytest.MonkeyPatch, target: Any, name: str, then: Callable[[], object]
) -> list[int]:
    """Call ``then()`` once, right before the first call of ``target.name``."""
    real = getattr(target, name)
    fired: list[int] = []

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not fired:
            fired.append(1)
            then()
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapped)
    return fired


def test_azurite_stopped_between_bronze_and_silver_and_during_a_commit_is_ridden_out(
    up: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = app_on(up, tmp_path, STORAGE_RETRY_SECONDS="60")
    file = mixed_file("ns/hub/0/2026/11/21/12/00/00.ndjson", 500, seed=31)
    batch = land(app.context, file)
    between = once_after(
        monkeypatch,
        layers,
        "run",
        lambda: up.outage(OUTAGE),
        when=lambda ctx, layer, ref: layer is Layer.BRONZE,
    )
    # The first commit (bronze: data files, then the log entry) is written while Azurite is down.
    during = once_before(monkeypatch, lake_module, "write_deltalake", lambda: up.outage(OUTAGE))
    started = time.monotonic()
    ran = Runner(app.context, retry=ONE_ATTEMPT).run(app.storage.info(batch.source))
    assert ran.error is None and ran.batch is not None and ran.batch.state is State.GOLD_DONE
    assert between and during and time.monotonic() - started >= 2 * OUTAGE
    audited(app, [file], "Azurite stopped between bronze and silver, and during a commit", faults=2)


def test_the_table_service_down_while_state_is_written_loses_no_transition(
    up: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = app_on(up, tmp_path, STORAGE_RETRY_SECONDS="60")
    file = mixed_file("ns/hub/1/2026/11/21/12/00/00.ndjson", 200, seed=32)
    batch = land(app.context, file)
    real = BatchStateStore.save
    downs = []

    def save(self: BatchStateStore, previous: Any, updated: Any) -> Any:
        if updated.state in (State.BRONZE_DONE, State.GOLD_DONE):
            downs.append(updated.state)
            up.outage(OUTAGE / 2, "table")
        return real(self, previous, updated)

    monkeypatch.setattr(BatchStateStore, "save", save)
    ran = Runner(app.context, retry=ONE_ATTEMPT).run(app.storage.info(batch.source))
    assert ran.error is None and downs == [State.BRONZE_DONE, State.GOLD_DONE]
    final = stored(app.context, batch.ref)
    assert [t.state for t in final.transitions] == list(PROGRESS)
    audited(app, [file], "Table service down while state is written", faults=2)


def test_an_outage_longer_than_the_budget_fails_the_step_naming_the_store_and_the_retry_completes(
    up: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app = app_on(up, tmp_path, STORAGE_RETRY_SECONDS="2")
    file = mixed_file("ns/hub/2/2026/11/21/12/00/00.ndjson", 200, seed=33)
    batch = land(app.context, file)
    # Down for 8 s from the moment gold first merges: the merge gives up after 2 s (plus the
    # SDK's own tries), and the orchestrator's backoff brings the step back after the restart.
    once_before(monkeypatch, lake_module.Snapshot, "merge", lambda: up.outage(8.0))
    patient = RetryPolicy(first_seconds=3.0, attempts=6, coefficient=1.5, max_seconds=8.0)
    with caplog.at_level(logging.WARNING):
        ran = Runner(app.context, retry=patient).run(app.storage.info(batch.source))
    assert ran.batch is not None and ran.batch.state is State.GOLD_DONE, ran.error
    gave_up = [r.getMessage() for r in caplog.records if "gold attempt" in r.getMessage()]
    assert gave_up and all("is unreachable" in m for m in gave_up), gave_up
    assert any(app.settings.lake_uri in m or "127.0.0.1" in m for m in gave_up), gave_up
    audited(app, [file], "outage longer than the retry budget, then retried", faults=1)


def test_a_store_still_down_after_every_retry_ends_the_run_with_the_store_named(
    up: Emulator, tmp_path: Path
) -> None:
    app = app_on(up, tmp_path, STORAGE_RETRY_SECONDS="1")
    file = mixed_file("ns/hub/3/2026/11/21/12/00/00.ndjson", 100, seed=34)
    batch = land(app.context, file)
    info = app.storage.info(batch.source)
    up.stop()
    quick = RetryPolicy(first_seconds=0.1, attempts=2, coefficient=1.0, max_seconds=0.1)
    ran = Runner(app.context, retry=quick).run(info)
    assert ran.error is not None and "is unreachable" in ran.error
    assert app.settings.state_table in ran.error or f":{up.ports.table}" in ran.error, ran.error
    up.start()  # the store is back: the same file again finishes, once
    again = Runner(app.context, retry=quick).run(info)
    assert again.batch is not None and again.batch.state is State.GOLD_DONE
    audited(app, [file], "store down past every retry, then re-run", faults=1)


def test_a_lake_that_never_answers_raises_store_unavailable_within_the_budget(tmp_path: Path) -> None:
    (port,) = azurite.free_ports(1)  # nothing listens there
    dead = azurite.Ports(port, port, port)
    settings = Settings.from_env({"AzureWebJobsStorage": dead.connection_string(), "LAKE_URI": "az://lake"})
    from shared.adapters.clients import delta_storage_options

    lake = Lake(
        "az://lake/x",
        storage_options=lambda: delta_storage_options(settings.lake_storage),
        retry_seconds=2,
        prepare=lambda: None,
    )
    table = lake.table(TableSpec("t", lake_module.pa.schema([("a", lake_module.pa.int64())])))
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as raised:
        table.snapshot()
    assert 2 <= time.monotonic() - started < 30
    assert str(raised.value).startswith("az://lake/x/t is unreachable") and "onnection refused" in str(
        raised.value
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("stop_after", [1.0, 2.5, 4.0, 6.0])
def test_azurite_stopped_at_any_moment_of_an_ingest_process_is_ridden_out(
    up: Emulator, tmp_path: Path, stop_after: float
) -> None:
    """The hostile tester's run: ``python -m shared ingest`` while Azurite goes away for 10 s."""
    app = app_on(up, tmp_path)
    files = [mixed_file(f"ns/hub/{i}/2026/11/21/12/00/00.ndjson", 1500, seed=40 + i) for i in range(4)]
    for f in files:
        land(app.context, f)
    run = cli("ingest", app.settings.capture_uri, env=cli_env(app.settings, STORAGE_RETRY_SECONDS="60"))
    time.sleep(stop_after)
    up.outage(10.0)
    code = run.wait(timeout=400)
    _, err = run.communicate()
    assert code == 0, err
    audited(app, files, "Azurite stopped during an ingest process", faults=1)
