"""What the Functions host indexes from function_app: names, triggers, routes, auth levels."""

from __future__ import annotations

import importlib
import json
import typing
from functools import cache
from typing import Any

import pytest

import function_app
from shared.batches import FAIL_ACTIVITY, LAYERS, ORCHESTRATOR
from shared.events import EVENT_FUNCTION


def functions() -> list[Any]:
    """What the worker indexes. ``get_functions`` validates names once per app, so re-import."""
    return importlib.reload(function_app).app.get_functions()


@cache
def bindings() -> dict[str, list[dict[str, Any]]]:
    """Each function's bindings exactly as the worker sends them to the host (JSON)."""
    return {f.get_function_name(): [json.loads(raw) for raw in f.get_raw_bindings()] for f in functions()}


def trigger(name: str) -> dict[str, Any]:
    return next(b for b in bindings()[name] if b["type"].endswith("Trigger"))


def test_every_function_is_indexed_once() -> None:
    names = [f.get_function_name() for f in functions()]
    activities = [layer.activity for layer in LAYERS] + [FAIL_ACTIVITY]
    expected = {
        EVENT_FUNCTION,
        ORCHESTRATOR,
        *activities,
        "list_batches",
        "get_batch",
        "replay_batch",
        "backfill",
        "maintain_tables",
    }
    assert sorted(names) == sorted(expected)


def test_event_grid_trigger_has_a_durable_client() -> None:
    found = bindings()[EVENT_FUNCTION]
    assert {(b["type"], b["name"], b["direction"]) for b in found} == {
        ("eventGridTrigger", "event", "IN"),
        ("durableClient", "client", "IN"),
    }


def test_orchestrator_and_activities_bind_by_name() -> None:
    assert trigger(ORCHESTRATOR) == {
        "type": "orchestrationTrigger",
        "name": "context",
        "direction": "IN",
        "orchestration": ORCHESTRATOR,
    }
    for layer in LAYERS:
        assert trigger(layer.activity) == {
            "type": "activityTrigger",
            "name": "batch",
            "direction": "IN",
            "activity": layer.activity,
        }
    assert trigger(FAIL_ACTIVITY)["activity"] == FAIL_ACTIVITY


@pytest.mark.parametrize(
    ("name", "route", "methods"),
    [
        ("list_batches", "batches", ["GET"]),
        ("get_batch", "batches/{batch_id}", ["GET"]),
        ("replay_batch", "batches/{batch_id}/replay", ["POST"]),
        ("backfill", "backfill", ["POST"]),
    ],
)
def test_operations_endpoints_need_a_function_key(name: str, route: str, methods: list[str]) -> None:
    found = bindings()[name]
    http = trigger(name)
    assert http["type"] == "httpTrigger"
    assert http["route"] == route
    assert http["methods"] == methods
    assert http["authLevel"] == "FUNCTION"
    assert {"type": "http", "name": "$return", "direction": "OUT"} in found
    assert any(b["type"] == "durableClient" for b in found)


def test_no_function_is_anonymous() -> None:
    for name, found in bindings().items():
        for binding in found:
            assert binding.get("authLevel", "FUNCTION") != "ANONYMOUS", name


def test_maintenance_schedule_comes_from_an_app_setting() -> None:
    timer = trigger("maintain_tables")
    assert timer["type"] == "timerTrigger"
    assert timer["schedule"] == "%MAINTENANCE_SCHEDULE%"
    assert timer["runOnStartup"] is False


def test_worker_can_resolve_every_annotation() -> None:
    """The worker reads type hints to pick converters; postponed annotations must resolve."""
    for f in functions():
        user = f.get_user_function()
        typing.get_type_hints(getattr(user, "client_function", user))


def test_importing_the_app_reads_no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AzureWebJobsStorage", "LAKE_STORAGE"):
        monkeypatch.delenv(name, raising=False)
    assert functions()
