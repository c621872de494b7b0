"""The Function app's triggers against Azurite, with a stand-in for the Durable extension.

The Durable client code is the real ``DurableOrchestrationClient``, talking to the
extension's stand-in ``tests.support.durable.FakeDurable``. Activities are invoked through
their blueprint functions; tests/worker/ drives the same functions through the real worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import azure.functions as func
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from shared import blueprints, layers
from shared.app import App, build
from shared.batches import LAYERS, BatchRef, Layer
from shared.blueprints import activities, event_grid, http
from shared.contracts import USER_ACTIVITY
from shared.dev.events import blob_created_event
from shared.dev.generator import GeneratedFile, generate_day
from shared.errors import ConfigError, UnknownEventType
from shared.pipeline.schemas import SOURCE_VERSION, business_columns
from shared.services.intake import register
from shared.services.maintenance import run_maintenance
from shared.services.runner import Runner
from shared.settings import Settings
from shared.uris import join
from tests.conftest import FAST_RETRY, make_settings
from tests.support.durable import FakeDurable

pytestmark = pytest.mark.azurite

BUSINESS_SILVER = business_columns(USER_ACTIVITY)
GOLD = [f"gold.{t.name}" for t in USER_ACTIVITY.gold]


@pytest.fixture
def app_settings(azure_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The app settings the functions read (Settings.from_env) pointed at this test's Azurite containers."""
    s = azure_settings
    for name, value in {
        "AzureWebJobsStorage": s.host_storage.connection_string,
        "LAKE_URI": s.lake_uri,
        "CAPTURE_URI": s.capture_uri,
        "QUARANTINE_URI": s.quarantine_uri,
        "BATCH_STATE_TABLE": s.state_table,
        "OPERATIONS_TABLE": "ops" + s.state_table[1:],
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LAKE_STORAGE", raising=False)
    blueprints.app.cache_clear()
    yield Settings.from_env()
    blueprints.app.cache_clear()


_DAY: list[GeneratedFile] = []


def day() -> list[GeneratedFile]:
    """Eight Capture files with defects (one empty, one truncated), generated once per session."""
    if not _DAY:
        _DAY.extend(generate_day(files=8, events_per_file=120, defect_rate=0.1, seed=4242))
    return _DAY


def land(settings: Settings, files: list[GeneratedFile]) -> list[str]:
    app = build(settings)
    uris = []
    for f in files:
        uri = join(settings.capture_uri, f.path)
        app.storage.write(uri, f.data)
        uris.append(uri)
    return uris


def event_for(uri: str, **data: Any) -> func.EventGridEvent:
    """The EventGridEvent the worker would hand the trigger for a BlobCreated on ``uri``."""
    storage = blueprints.app().storage
    info = storage.info(uri)
    event = blob_created_event(storage, uri, info.size, info.etag)
    event["data"].update(data)
    return func.EventGridEvent(
        id=event["id"],
        data=event["data"],
        topic=event["topic"],
        subject=event["subject"],
        event_type=event["eventType"],
        event_time=None,
        data_version="",
    )


def deliver(loop: asyncio.AbstractEventLoop, durable: FakeDurable, *events: func.EventGridEvent) -> list[Any]:
    trigger = event_grid.on_capture_event.build().get_user_function()

    async def all_at_once() -> list[Any]:
        calls = [trigger(event=e, client=durable.binding()) for e in events]
        return await asyncio.gather(*calls, return_exceptions=True)

    return loop.run_until_complete(all_at_once())


def call_http(
    loop: asyncio.AbstractEventLoop,
    durable: FakeDurable,
    function: Any,
    method: str,
    url: str,
    *,
    params: dict[str, str] | None = None,
    route: dict[str, str] | None = None,
    body: Any = None,
) -> tuple[int, Any]:
    request = func.HttpRequest(
        method=method,
        url=url,
        params=params or {},
        route_params=route or {},
        body=json.dumps(body).encode() if body is not None else b"",
    )
    response = loop.run_until_complete(
        function.build().get_user_function()(req=request, client=durable.binding())
    )
    return response.status_code, json.loads(response.get_body())


#: The ``context`` the worker passes a function; the host sent no trace context here.
INVOCATION = SimpleNamespace(trace_context=SimpleNamespace(trace_parent="", trace_state="", attributes={}))

ACTIVITY_FUNCTIONS = {
    Layer.VALIDATE: activities.validate_batch,
    Layer.BRONZE: activities.write_bronze,
    Layer.SILVER: activities.merge_silver,
    Layer.GOLD: activities.update_gold,
}


def run_orchestration(durable: FakeDurable, instance_id: str) -> dict[str, Any]:
    """Play the started instance: each activity through its blueprint function, in order."""
    ref = durable.started(instance_id)[-1]
    result: dict[str, Any] = {}
    durable.finish(instance_id, status="Running")
    for layer in LAYERS:
        result = ACTIVITY_FUNCTIONS[layer].build().get_user_function()(batch=ref, context=INVOCATION)
        if result["state"] in ("GOLD_DONE", "EMPTY", "QUARANTINED", "FAILED"):
            break
    durable.finish(instance_id, {"layer": layer.label, "state": result["state"]})
    return result


# -- event intake -----------------------------------------------------------------------------------
def test_five_simultaneous_redeliveries_start_one_orchestration(
    app_settings: Settings, durable: FakeDurable, loop: asyncio.AbstractEventLoop
) -> None:
    uri = land(app_settings, day()[:1])[0]
    event = event_for(uri)
    results = deliver(loop, durable, *[event] * 5)
    assert results == [None] * 5
    assert len(durable.starts) == 1
    batch_id, ref = durable.starts[0]
    assert ref["source"] == uri and ref["batch_id"] == batch_id
    assert BatchRef.from_dict(ref).etag == blueprints.app().storage.info(uri).etag

    # Later redeliveries, while it runs and after it finished, start nothing either.
    deliver(loop, durable, event, event)
    run_orchestration(durable, batch_id)
    deliver(loop, durable, event, event, event)
    assert len(durable.starts) == 1


def test_empty_blob_records_an_empty_batch_and_starts_nothing(
    app_settings: Settings, durable: FakeDurable, loop: asyncio.AbstractEventLoop
) -> None:
    uri = join(app_settings.capture_uri, "ns/hub/0/2026/11/21/00/00/00.avro")
    blueprints.app().storage.write(uri, b"")
    deliver(loop, durable, event_for(uri), event_for(uri))
    assert durable.starts == []
    states = list(blueprints.app().states.list())
    assert [(b.source, b.state) for b in states] == [(uri, "EMPTY")]


def test_foreign_container_is_acknowledged_and_unknown_type_fails_loudly(
    app_settings: Settings,
    durable: FakeDurable,
    loop: asyncio.AbstractEventLoop,
    caplog: pytest.LogCaptureFixture,
) -> None:
    uri = land(app_settings, day()[:1])[0]
    foreign = event_for(uri)
    foreign_data = dict(foreign.get_json())
    foreign_data["url"] = foreign_data["url"].replace(app_settings.capture_uri[len("az://") :], "elsewhere")
    foreign = func.EventGridEvent(
        id="f",
        data=foreign_data,
        topic="t",
        subject="s",
        event_type="Microsoft.Storage.BlobCreated",
        event_time=None,
        data_version="",
    )
    unknown = func.EventGridEvent(
        id="u",
        data=foreign_data,
        topic="t",
        subject="s",
        event_type="Microsoft.Storage.BlobTierChanged",
        event_time=None,
        data_version="",
    )
    with caplog.at_level(logging.INFO):
        ignored, failed = deliver(loop, durable, foreign, unknown)
    assert ignored is None
    assert isinstance(failed, UnknownEventType)
    assert any(r.levelno == logging.ERROR and "UNKNOWN EVENT TYPE" in r.getMessage() for r in caplog.records)
    assert durable.starts == []
    assert list(blueprints.app().states.list()) == []


# -- activities and operations endpoints -------------------------------------------------------
def test_batch_runs_through_activities_and_endpoints_show_state_and_runtime(
    app_settings: Settings, durable: FakeDurable, loop: asyncio.AbstractEventLoop
) -> None:
    uri = land(app_settings, day()[:1])[0]
    deliver(loop, durable, event_for(uri))
    batch_id = durable.starts[0][0]
    first = run_orchestration(durable, batch_id)
    assert first["state"] == "GOLD_DONE"

    status, body = call_http(
        loop, durable, http.get_batch, "GET", f"/api/batches/{batch_id}", route={"batch_id": batch_id}
    )
    assert status == 200
    assert body["state"] == "GOLD_DONE" and body["runtime"]["status"] == "Completed"
    assert body["counts"]["rows_in"] == body["counts"]["rows_valid"] + body["counts"]["rows_quarantined"]

    status, listed = call_http(
        loop,
        durable,
        http.list_batches,
        "GET",
        "/api/batches",
        params={"state": "GOLD_DONE", "since": datetime.now(UTC).date().isoformat()},
    )
    assert status == 200 and [b["batch_id"] for b in listed] == [batch_id]
    assert (
        call_http(loop, durable, http.list_batches, "GET", "/api/batches", params={"state": "FAILED"})[1]
        == []
    )
    assert (
        call_http(loop, durable, http.list_batches, "GET", "/api/batches", params={"since": "yesterday"})[0]
        == 400
    )
    unknown = "0" * 32
    assert call_http(loop, durable, http.get_batch, "GET", "/", route={"batch_id": unknown})[0] == 404
    # What is not a batch id never reaches a query: 32 hex digits or a 400.
    for bad in ("nope", "' or 1 eq 1 or '", "A" * 32):
        assert call_http(loop, durable, http.get_batch, "GET", "/", route={"batch_id": bad})[0] == 400

    # Replay from silver: state goes back to BRONZE_DONE, a new run with the same instance id.
    status, replayed = call_http(
        loop,
        durable,
        http.replay_batch,
        "POST",
        f"/api/batches/{batch_id}/replay",
        route={"batch_id": batch_id},
        params={"from": "silver"},
    )
    assert status == 202 and replayed["reset_to"] == "BRONZE_DONE" and replayed["state"] == "BRONZE_DONE"
    assert len(durable.started(batch_id)) == 2
    # A second replay while that run is pending is refused.
    assert call_http(loop, durable, http.replay_batch, "POST", "/", route={"batch_id": batch_id})[0] == 409
    again = run_orchestration(durable, batch_id)
    assert (again["state"], again["counts"], again["versions"]) == (
        first["state"],
        first["counts"],
        first["versions"],
    )
    assert (
        call_http(
            loop,
            durable,
            http.replay_batch,
            "POST",
            "/",
            route={"batch_id": batch_id},
            body={"from": "platinum"},
        )[0]
        == 400
    )


def test_activity_records_permanent_failure_instead_of_raising(
    app_settings: Settings,
    durable: FakeDurable,
    loop: asyncio.AbstractEventLoop,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    truncated = next(f for f in day() if f.kind == "truncated")
    good = next(f for f in day() if f.kind == "capture")
    app = blueprints.app()
    bad_uri, good_uri = land(app_settings, [truncated, good])
    bad, ok = (register(app.settings, app.states, app.storage.info(u)) for u in (bad_uri, good_uri))
    ref = bad.ref.to_dict()
    validated = activities.validate_batch.build().get_user_function()(batch=ref, context=INVOCATION)
    assert validated["state"] == "QUARANTINED"

    def violated(ctx: Any, batch: Any) -> Any:
        raise ConfigError("SILVER_SCHEMA lost its key column")

    monkeypatch.setitem(layers.WORK, Layer.SILVER, violated)
    ok_ref = ok.ref.to_dict()
    for layer in (Layer.VALIDATE, Layer.BRONZE):
        layers.run(app.context, layer, ok.ref)
    result = activities.merge_silver.build().get_user_function()(batch=ok_ref, context=INVOCATION)
    assert result["state"] == "FAILED" and "ConfigError" in result["error"]
    failed = activities.fail_batch.build().get_user_function()(
        failure={"batch": ok_ref, "error": "x"}, context=INVOCATION
    )
    assert failed["state"] == "FAILED"


def test_backfill_starts_each_file_once_and_skips_done(
    app_settings: Settings, durable: FakeDurable, loop: asyncio.AbstractEventLoop
) -> None:
    files = [f for f in day() if f.kind == "capture"][:3]
    uris = land(app_settings, files)
    deliver(loop, durable, event_for(uris[0]))
    run_orchestration(durable, durable.starts[0][0])  # the first file is already GOLD_DONE

    status, body = call_http(loop, durable, http.backfill, "POST", "/api/backfill", body={"prefix": ""})
    assert status == 202
    assert (body["files"], body.get("started"), body.get("skipped")) == (3, 2, 1)
    status, again = call_http(loop, durable, http.backfill, "POST", "/api/backfill", body={"prefix": ""})
    assert (again["files"], again.get("started"), again.get("skipped")) == (3, None, 3)
    assert len(durable.starts) == 3
    assert call_http(loop, durable, http.backfill, "POST", "/api/backfill", body={"limit": "many"})[0] == 400


def test_maintenance_compacts_vacuums_and_records(app_settings: Settings) -> None:
    app = blueprints.app()
    runner = Runner(app.context, retry=FAST_RETRY)
    for uri in land(app_settings, [f for f in day() if f.kind == "capture"][:3]):
        runner.run(app.storage.info(uri))
    silver_before = business_silver(app)
    summary = run_maintenance(app.context, app.ledger)
    by_table = {t["table"]: t for t in summary["tables"]}
    assert summary["failed"] == 0
    assert by_table["bronze/user_activity"]["files_before"] >= 3
    assert by_table["bronze/user_activity"]["files_after"] == 1
    assert_frame_equal(business_silver(app), silver_before)
    assert app.ledger.maintenance_runs(1)[0]["tables"] == summary["tables"]


# -- concurrency ----------------------------------------------------------------------------------
def handles(app: App) -> dict[str, Any]:
    return app.context.tables(USER_ACTIVITY.dataset).by_short_name()


def business_silver(app: App) -> pl.DataFrame:
    return handles(app)["silver"].snapshot().scan().select(BUSINESS_SILVER).collect().sort("log_id")


def gold_rows(app: App, table: str) -> pl.DataFrame:
    frame = handles(app)[table].snapshot().scan().collect().drop(SOURCE_VERSION)
    return frame.sort(frame.columns)


def run_batch_like_the_app(app: App, uri: str) -> str:
    batch = register(app.settings, app.states, app.storage.info(uri))
    state = batch.state
    for layer in LAYERS:
        state = layers.run(app.context, layer, batch.ref).state
        if state.stops:
            break
    return str(state)


@pytest.mark.slow
def test_eight_concurrent_batches_land_the_same_rows_as_a_sequential_run(
    azurite_connection: str, capsys: pytest.CaptureFixture[str]
) -> None:
    results: dict[str, tuple[float, list[str], App]] = {}
    for mode in ("sequential", "concurrent"):
        suffix = f"{mode[:3]}{int(time.time() * 1000) % 10**8}"
        settings = make_settings(
            azurite_connection,
            lake_uri=f"az://lake{suffix}",
            capture_uri=f"az://capture{suffix}",
            quarantine_uri=f"az://quar{suffix}",
        )
        ops = build(settings)
        uris = land(settings, day())
        for handle in handles(ops).values():  # creating the tables is not what is measured
            handle.snapshot()
        started = time.perf_counter()
        if mode == "sequential":
            states = [run_batch_like_the_app(ops, uri) for uri in uris]
        else:
            with ThreadPoolExecutor(max_workers=8) as pool:
                states = list(pool.map(run_batch_like_the_app, [ops] * len(uris), uris))
        results[mode] = (time.perf_counter() - started, states, ops)

    (seq_time, seq_states, seq), (con_time, con_states, con) = results["sequential"], results["concurrent"]
    with capsys.disabled():
        print(f"\n8 batches on Azurite: sequential {seq_time:.2f}s, concurrent (8 threads) {con_time:.2f}s")
    assert sorted(seq_states) == sorted(con_states)
    assert "FAILED" not in con_states
    assert_frame_equal(business_silver(con), business_silver(seq))
    expected_ids = set().union(*(f.valid_log_ids for f in day()))
    assert set(business_silver(con)["log_id"]) == expected_ids
    for table in GOLD:
        assert_frame_equal(gold_rows(con, table), gold_rows(seq, table))
