"""The app loads in the real worker, and the metadata it sends the host binds what the app needs.

Two environments: the values of local.settings.example.json (what ``func start`` gives the
worker), and none of the storage settings at all (the host indexes the app before any setting
may be valid). The binding assertions read the ``FunctionMetadataResponse`` the worker sends,
the very JSON the host registers the triggers from.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from bench.coldstart import app_settings
from shared.batches import CANCEL_ACTIVITY, LAYERS, ORCHESTRATOR, POLL_ACTIVITY, SUBMIT_ACTIVITY
from shared.batches import FAIL_ACTIVITY as ACTIVITY_FAIL
from shared.events import EVENT_FUNCTION
from tests.worker.harness import ROOT, Worker, pb

HTTP_ROUTES = {
    "list_batches": ("batches", ["GET"]),
    "get_batch": ("batches/{batch_id}", ["GET"]),
    "replay_batch": ("batches/{batch_id}/replay", ["POST"]),
    "backfill": ("backfill", ["POST"]),
}
ACTIVITIES = (
    {layer.activity: "batch" for layer in LAYERS}
    | {ACTIVITY_FAIL: "failure"}
    | dict.fromkeys((SUBMIT_ACTIVITY, POLL_ACTIVITY, CANCEL_ACTIVITY), "request")
)
ALL_FUNCTIONS = {EVENT_FUNCTION, ORCHESTRATOR, *ACTIVITIES, *HTTP_ROUTES, "maintain_tables"}


@pytest.fixture(scope="module")
def func_start() -> Iterator[Worker]:
    """The worker as ``func start`` runs it: local.settings.example.json's values in its env."""
    settings = app_settings()
    assert settings["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    assert settings["FUNCTIONS_WORKER_RUNTIME"] == "python"
    with Worker(env=settings) as worker:
        result = worker.init_response.result
        assert status(result) == "Success", f"the worker refused the app: {result.exception.message}"
        yield worker


def bindings(worker: Worker) -> dict[str, list[dict[str, Any]]]:
    return {m.name: [json.loads(raw) for raw in m.raw_bindings] for m in worker.metadata}


def trigger(worker: Worker, name: str) -> dict[str, Any]:
    (found,) = [b for b in bindings(worker)[name] if b["type"].endswith("Trigger")]
    return found


def status(result: Any) -> str:
    return str(pb.StatusResult.Status.Name(result.status))


def test_worker_initializes_and_loads_every_function(func_start: Worker) -> None:
    init = func_start.init_response
    assert status(init.result) == "Success", init.result.exception.message
    assert (init.worker_metadata.runtime_name, init.worker_metadata.runtime_version) == ("python", "3.13")
    assert init.worker_metadata.worker_version == "1.3.0"
    # The host builds HTTP requests from these (tests.worker.harness.http_data relies on them).
    assert {"RpcHttpBodyOnly", "RawHttpBodyBytes", "RpcHttpTriggerMetadataRemoved"} <= set(init.capabilities)
    assert {m.name for m in func_start.metadata} == ALL_FUNCTIONS
    assert {name: status(r.result) for name, r in func_start.load_responses.items()} == dict.fromkeys(
        ALL_FUNCTIONS, "Success"
    )
    for function in func_start.metadata:
        assert (function.script_file, function.directory, function.language) == (
            "function_app.py",
            str(ROOT),
            "python",
        )
        assert function.entry_point == function.name
        assert function.properties["worker_indexed"] == "True"


def test_app_loads_before_any_storage_setting_exists() -> None:
    with Worker(env={"AzureWebJobsStorage": None, "LAKE_STORAGE": None, "CAPTURE_URI": None}) as worker:
        assert status(worker.init_response.result) == "Success", worker.init_response.result.exception.message
        assert {m.name for m in worker.metadata} == ALL_FUNCTIONS


def test_event_grid_trigger_has_a_durable_client(func_start: Worker) -> None:
    assert sorted((b["type"], b["name"], b["direction"]) for b in bindings(func_start)[EVENT_FUNCTION]) == [
        ("durableClient", "client", "IN"),
        ("eventGridTrigger", "event", "IN"),
    ]


def test_orchestrator_and_activities_bind_by_their_names(func_start: Worker) -> None:
    assert bindings(func_start)[ORCHESTRATOR] == [
        {"direction": "IN", "type": "orchestrationTrigger", "name": "context", "orchestration": ORCHESTRATOR}
    ]
    for activity, argument in ACTIVITIES.items():
        assert bindings(func_start)[activity] == [
            {"direction": "IN", "type": "activityTrigger", "name": argument, "activity": activity}
        ]


@pytest.mark.parametrize("name", sorted(HTTP_ROUTES))
def test_operations_endpoints_route_and_need_a_function_key(func_start: Worker, name: str) -> None:
    route, methods = HTTP_ROUTES[name]
    http = trigger(func_start, name)
    assert (http["name"], http["direction"], http["route"], http["methods"]) == ("req", "IN", route, methods)
    assert http["authLevel"] == "FUNCTION"
    found = bindings(func_start)[name]
    assert {"direction": "OUT", "type": "http", "name": "$return"} in found
    assert {"direction": "IN", "type": "durableClient", "name": "client"} in found
    (function,) = [m for m in func_start.metadata if m.name == name]
    assert function.bindings["$return"].direction == pb.BindingInfo.out


def test_no_function_is_anonymous(func_start: Worker) -> None:
    for name, found in bindings(func_start).items():
        for binding in found:
            assert str(binding.get("authLevel", "FUNCTION")).upper() != "ANONYMOUS", name


def test_maintenance_timer_schedule_is_an_app_setting(func_start: Worker) -> None:
    assert trigger(func_start, "maintain_tables") == {
        "direction": "IN",
        "type": "timerTrigger",
        "name": "timer",
        "schedule": "%MAINTENANCE_SCHEDULE%",
        "runOnStartup": False,
        "useMonitor": True,
    }
