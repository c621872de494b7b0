"""The correctness gaps the core redesign closed, each as the behaviour it must keep."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from pathlib import Path

import polars as pl
import pytest

from shared import cli, layers
from shared.app import App, build
from shared.batches import Layer, State
from shared.contracts import USER_ACTIVITY
from shared.dev.generator import clean_events, to_ndjson
from shared.services.intake import register
from shared.services.runner import Runner
from shared.settings import Settings
from shared.uris import join
from tests.conftest import FAST_RETRY, make_settings

pytestmark = pytest.mark.azurite

DAY_ONE = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)
DAY_TWO = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


def land(app: App, name: str, events: list[dict[str, object]]) -> str:
    uri = join(app.settings.capture_uri, name)
    app.storage.write(uri, to_ndjson(events))
    return uri


def run(app: App, *uris: str) -> list[object]:
    runner = Runner(app.context, retry=FAST_RETRY)
    return [runner.run(app.storage.info(uri)).batch for uri in uris]


def silver(app: App) -> pl.DataFrame:
    return app.context.tables(USER_ACTIVITY.dataset).silver.snapshot().scan().collect()


def test_a_log_id_repeated_on_another_date_is_dropped_and_counted_as_a_duplicate(
    local_settings: Settings,
) -> None:
    app = build(local_settings)
    first = clean_events(20, seed=1, start=DAY_ONE)
    again = clean_events(20, seed=2, start=DAY_TWO)
    again[7]["log_id"] = first[3]["log_id"]  # the same event id, a day later
    a, b = run(app, land(app, "a.ndjson", first), land(app, "b.ndjson", again))
    assert a.counts.silver_inserted == 20  # type: ignore[attr-defined]
    assert (b.counts.silver_inserted, b.counts.duplicates_dropped) == (19, 1)  # type: ignore[attr-defined]
    rows = silver(app)
    assert rows.height == 39 and rows.get_column("log_id").n_unique() == 39
    kept = rows.filter(pl.col("log_id") == first[3]["log_id"])
    assert kept.get_column("event_date").to_list() == [DAY_ONE.date()]  # first ingested wins


def test_state_describes_one_lake_and_a_fresh_lake_gets_the_work_again(
    azurite_connection: str, tmp_path: Path
) -> None:
    table = "b" + uuid.uuid4().hex[:12]

    def settings(lake: str) -> Settings:
        return make_settings(
            azurite_connection,
            lake_uri=str(tmp_path / lake),
            capture_uri=str(tmp_path / "capture"),
            quarantine_uri=str(tmp_path / "q"),
            BATCH_STATE_TABLE=table,
        )

    one, two = build(settings("one")), build(settings("two"))
    uri = land(one, "a.ndjson", clean_events(30, seed=3, start=DAY_ONE))
    (first,) = run(one, uri)
    (second,) = run(two, uri)  # same file, same state table, another lake
    assert first.batch_id != second.batch_id  # type: ignore[attr-defined]
    assert silver(two).height == 30 == silver(one).height
    assert [b.lake for b in two.states.list(lake=two.settings.lake_uri)] == [two.settings.lake_uri]


def test_a_step_never_skips_work_its_lake_does_not_hold(local_settings: Settings) -> None:
    app = build(local_settings)
    uri = land(app, "a.ndjson", clean_events(25, seed=4, start=DAY_ONE))
    (done,) = run(app, uri)
    assert done.state is State.GOLD_DONE  # type: ignore[attr-defined]
    shutil.rmtree(local_settings.lake_uri)  # the lake is deleted to start over; state stays
    (again,) = run(build(local_settings), uri)
    assert again.state is State.GOLD_DONE  # type: ignore[attr-defined]
    assert silver(build(local_settings)).height == 25
    assert again.batch_id == done.batch_id  # type: ignore[attr-defined]


def test_one_file_that_crashes_is_recorded_failed_and_the_run_goes_on(
    local_settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    app = build(local_settings)
    uris = [land(app, f"{i}.ndjson", clean_events(10, seed=10 + i, start=DAY_ONE)) for i in range(3)]
    doomed = register(app.settings, app.states, app.storage.info(uris[1])).batch_id
    real = layers.WORK[Layer.SILVER]

    def crashes(ctx: object, batch: object) -> object:
        if getattr(batch, "batch_id", None) == doomed:
            raise RuntimeError("a bug in one file's path")
        return real(ctx, batch)  # type: ignore[arg-type]

    monkeypatch.setitem(layers.WORK, Layer.SILVER, crashes)
    monkeypatch.setattr("shared.services.runner.RETRY", FAST_RETRY)
    for name, value in {
        "AzureWebJobsStorage": local_settings.host_storage.connection_string,
        "LAKE_URI": local_settings.lake_uri,
        "CAPTURE_URI": local_settings.capture_uri,
        "QUARANTINE_URI": local_settings.quarantine_uri,
        "BATCH_STATE_TABLE": local_settings.state_table,
    }.items():
        monkeypatch.setenv(name, value)
    code = cli.main(["ingest", local_settings.capture_uri])
    assert code == 1
    out = capsys.readouterr()
    assert "3 files: 2 finished, 1 failed" in out.err and "a bug in one file's path" in out.err
    states = {b.batch_id: b for b in app.states.list(lake=app.settings.lake_uri)}
    assert states[doomed].state is State.FAILED
    assert states[doomed].error and "silver failed after 3 attempts: RuntimeError" in states[doomed].error
    assert sorted(b.state for b in states.values()) == [State.FAILED, State.GOLD_DONE, State.GOLD_DONE]


@pytest.mark.parametrize("touched", [False, True], ids=["file unchanged", "file touched since"])
def test_a_batch_whose_record_is_lost_after_silver_still_reaches_gold_whole(
    local_settings: Settings, touched: bool
) -> None:
    """The record lost at SILVER_DONE (an emulator that dropped an acknowledged write): the
    batch registered again finds its commits by themselves, not by a time in the record."""
    app = build(local_settings)
    uri = land(app, "a.ndjson", clean_events(40, seed=5, start=DAY_ONE))
    batch = register(app.settings, app.states, app.storage.info(uri))
    for layer in (Layer.VALIDATE, Layer.BRONZE, Layer.SILVER):
        layers.run(app.context, layer, batch.ref)
    inserted = app.states.get(batch.dataset, batch.batch_id).counts.silver_inserted  # type: ignore[union-attr]
    app.states.delete(batch)
    if touched:
        later = os.stat(uri).st_mtime + 3600
        os.utime(uri, (later, later))
    (again,) = run(app, uri)
    assert again.state is State.GOLD_DONE  # type: ignore[attr-defined]
    assert again.counts.silver_inserted == inserted == 40  # type: ignore[attr-defined]
    assert again.counts.event_dates  # type: ignore[attr-defined]
    users = app.context.tables(USER_ACTIVITY.dataset).gold["user_watch_time"][1].snapshot().scan().collect()
    assert int(users.get_column("events").sum()) == 40
