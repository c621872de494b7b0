"""A batch through the real worker: activities, the orchestrator, the HTTP endpoints, the timer.

The Durable extension cannot run here, so this test plays its part around the worker: it
sends the orchestrator the context string the extension builds for out-of-proc workers
(``upperSchemaVersion`` 1, ``upperSchemaVersionNew`` 2, the timer durations), schedules what
the reply asks for, invokes each activity through the worker with its input as the extension
hands it (a JSON string), and writes the history events the extension would write. The
activities run against Azurite.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.app import App
from shared.batches import ORCHESTRATOR, Layer
from shared.dev.generator import generate_day
from shared.services import intake
from shared.settings import Settings
from shared.uris import join
from tests.support.durable import FakeDurable
from tests.worker.harness import (
    HttpResult,
    Invocation,
    Worker,
    activity_data,
    http_data,
    orchestration_data,
    string_data,
    timer_data,
)

pytestmark = pytest.mark.azurite

ACTIVITY_VALIDATE, ACTIVITY_BRONZE, ACTIVITY_SILVER, ACTIVITY_GOLD = (layer.activity for layer in Layer)

WHEN_ALL, CALL_ACTIVITY_WITH_RETRY = 12, 1
ORCHESTRATOR_STARTED, EXECUTION_STARTED, TASK_SCHEDULED, TASK_COMPLETED, ORCHESTRATOR_COMPLETED = (
    12,
    0,
    4,
    5,
    13,
)


def register(ops: App, settings: Settings, kind: str, name: str) -> dict[str, Any]:
    """Land a generated file of ``kind`` and register it with the pipeline's public API."""
    generated = next(
        f for f in generate_day(files=8, events_per_file=60, defect_rate=0.1, seed=77) if f.kind == kind
    )
    uri = join(settings.capture_uri, f"batch/{name}/{generated.path}")
    ops.storage.write(uri, generated.data)
    batch = intake.register(ops.settings, ops.states, ops.storage.info(uri))
    return batch.ref.to_dict()


class Extension:
    """The Durable extension's side of one orchestration instance, for an out-of-proc worker."""

    def __init__(self, worker: Worker, ref: dict[str, Any]) -> None:
        self.worker = worker
        self.ref = ref
        self.clock = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
        self.history: list[dict[str, Any]] = []
        self.replies: list[dict[str, Any]] = []
        self.activities: list[tuple[str, Invocation]] = []

    def event(self, kind: int, event_id: int = -1, **fields: Any) -> dict[str, Any]:
        self.clock += timedelta(milliseconds=100)
        stamp = self.clock.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return {"EventType": kind, "EventId": event_id, "IsPlayed": False, "Timestamp": stamp, **fields}

    def wake(self, *new_events: dict[str, Any]) -> dict[str, Any]:
        replaying = any(e["EventType"] == ORCHESTRATOR_COMPLETED for e in self.history)
        self.history += [self.event(ORCHESTRATOR_STARTED), *new_events]
        context = orchestration_data(
            self.history, json.dumps(self.ref), self.ref["batch_id"], is_replaying=replaying
        )
        outcome = self.worker.invoke(ORCHESTRATOR, {"context": context})
        assert outcome.status == "Success", outcome
        reply = outcome.return_value
        self.replies.append(reply)
        return dict(reply)

    def run(self) -> dict[str, Any]:
        """Start the instance and play it to the end: each scheduled activity through the worker."""
        reply = self.wake(
            self.event(
                EXECUTION_STARTED,
                OrchestrationInstance={"InstanceId": self.ref["batch_id"], "ExecutionId": "e1"},
                ParentInstance=None,
                Name=ORCHESTRATOR,
                Version="",
                Input=json.dumps(self.ref),
                Tags=None,
            )
        )
        for task_id in range(10):
            if reply["isDone"]:
                return reply
            # Schema V2/V3: one outer list, every action so far; the extension rejects any other length.
            assert len(reply["actions"]) == 1, reply
            action = reply["actions"][0][-1]
            if action["actionType"] == WHEN_ALL:  # the SDK wraps an activity with retry in WhenAll
                (action,) = action["compoundActions"]
            assert action["actionType"] == CALL_ACTIVITY_WITH_RETRY, action
            name = action["functionName"]
            self.history += [
                self.event(TASK_SCHEDULED, task_id, Name=name, Version="", Input=action["input"])
            ]
            self.history.append(self.event(ORCHESTRATOR_COMPLETED))
            # What the extension hands a Python activity: the input's JSON, as a string.
            result = self.worker.invoke(name, {"batch": activity_data(json.loads(action["input"]))})
            self.activities.append((name, result))
            assert result.status == "Success", result
            reply = self.wake(
                self.event(TASK_COMPLETED, TaskScheduledId=task_id, Result=json.dumps(result.return_value))
            )
        raise AssertionError("the orchestration did not finish")


@pytest.fixture(scope="module")
def finished(app_worker: Worker, ops: App, worker_settings: Settings, durable: FakeDurable) -> Extension:
    """One batch played from start to GOLD_DONE through the worker."""
    ref = register(ops, worker_settings, "capture", "happy")
    extension = Extension(app_worker, ref)
    extension.run()
    durable.instances[ref["batch_id"]] = {
        "name": ORCHESTRATOR,
        "instanceId": ref["batch_id"],
        "runtimeStatus": "Completed",
        "input": ref,
        "customStatus": extension.replies[-1]["customStatus"],
        "createdTime": "2026-11-21T08:00:00Z",
        "lastUpdatedTime": "2026-11-21T08:00:05Z",
        "output": extension.replies[-1]["output"],
    }
    return extension


def call(
    worker: Worker, durable: FakeDurable, function: str, method: str, path: str, **request: Any
) -> HttpResult:
    body = request.pop("json", None)
    req = http_data(
        method,
        path,
        body=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"} if body is not None else {},
        **request,
    )
    outcome = worker.invoke(function, {"req": req, "client": string_data(durable.binding())})
    assert outcome.status == "Success", outcome
    assert isinstance(outcome.return_value, HttpResult)
    return outcome.return_value


# -- activities -------------------------------------------------------------------------------------
def test_validate_activity_records_the_batch_it_is_given(
    app_worker: Worker, ops: App, worker_settings: Settings
) -> None:
    ref = register(ops, worker_settings, "capture", "validate")
    outcome = app_worker.invoke(ACTIVITY_VALIDATE, {"batch": activity_data(ref)})
    assert outcome.status == "Success", outcome
    assert outcome.return_value["state"] == "VALIDATED"
    assert outcome.return_value["counts"]["records"] == 60
    recorded = ops.states.get(ref["dataset"], ref["batch_id"])
    assert recorded is not None and recorded.state == "VALIDATED"
    # The same input again (an activity retried by the runtime) changes nothing.
    again = app_worker.invoke(ACTIVITY_VALIDATE, {"batch": activity_data(ref)})
    assert again.return_value == outcome.return_value


def test_validate_activity_quarantines_a_truncated_file_instead_of_failing(
    app_worker: Worker, ops: App, worker_settings: Settings
) -> None:
    ref = register(ops, worker_settings, "truncated", "truncated")
    outcome = app_worker.invoke(ACTIVITY_VALIDATE, {"batch": activity_data(ref)})
    assert (outcome.status, outcome.return_value["state"]) == ("Success", "QUARANTINED")


# -- the orchestrator ---------------------------------------------------------------------------------
def test_orchestrator_answers_the_host_context_in_schema_v3(finished: Extension) -> None:
    first = finished.replies[0]
    assert (first["schemaVersion"], first["isDone"]) == (2, False)
    (outer,) = first["actions"]
    (when_all,) = outer
    assert when_all["actionType"] == WHEN_ALL
    (call_validate,) = when_all["compoundActions"]
    assert call_validate["functionName"] == ACTIVITY_VALIDATE
    assert json.loads(call_validate["input"]) == finished.ref  # only the small reference passes
    assert call_validate["retryOptions"] == {
        "firstRetryIntervalInMilliseconds": 5000,
        "maxNumberOfAttempts": 5,
        "backoffCoefficient": 2.0,
        "maxRetryIntervalInMilliseconds": 60000,
    }
    assert first["customStatus"]["layer"] == "validate"


def test_orchestrator_runs_every_layer_to_gold_through_the_worker(finished: Extension) -> None:
    assert [name for name, _ in finished.activities] == [
        ACTIVITY_VALIDATE,
        ACTIVITY_BRONZE,
        ACTIVITY_SILVER,
        ACTIVITY_GOLD,
    ]
    last = finished.replies[-1]
    assert last["isDone"] is True and last["schemaVersion"] == 2
    assert last["output"]["state"] == "GOLD_DONE"
    counts = finished.activities[1][1].return_value["counts"]
    assert counts["rows_in"] == counts["rows_valid"] + counts["rows_quarantined"]
    assert [r["customStatus"]["layer"] for r in finished.replies] == [
        "validate",
        "bronze",
        "silver",
        "gold",
        "gold",
    ]


# -- HTTP -------------------------------------------------------------------------------------------
def test_http_get_batch_and_list_batches(
    app_worker: Worker, durable: FakeDurable, finished: Extension
) -> None:
    batch_id = finished.ref["batch_id"]
    one = call(
        app_worker, durable, "get_batch", "GET", f"/api/batches/{batch_id}", route={"batch_id": batch_id}
    )
    assert one.status == 200 and one.headers["content-type"] == "application/json"
    assert (one.json()["state"], one.json()["runtime"]["status"]) == ("GOLD_DONE", "Completed")
    today = datetime.now(UTC).date().isoformat()
    listed = call(
        app_worker,
        durable,
        "list_batches",
        "GET",
        "/api/batches",
        query={"state": "GOLD_DONE", "since": today},
    )
    assert listed.status == 200 and batch_id in [b["batch_id"] for b in listed.json()]


def test_http_unknown_batch_is_404_and_bad_input_is_400(app_worker: Worker, durable: FakeDurable) -> None:
    unknown = "0" * 32
    url = f"/api/batches/{unknown}"
    missing = call(app_worker, durable, "get_batch", "GET", url, route={"batch_id": unknown})
    assert missing.status == 404 and unknown in missing.json()["error"]
    bad = call(app_worker, durable, "get_batch", "GET", "/api/batches/nope", route={"batch_id": "nope"})
    assert bad.status == 400 and "not a batch id" in bad.json()["error"]
    since = call(app_worker, durable, "list_batches", "GET", "/api/batches", query={"since": "yesterday"})
    assert since.status == 400
    limit = call(app_worker, durable, "backfill", "POST", "/api/backfill", json={"limit": "many"})
    assert limit.status == 400 and "limit" in limit.json()["error"]


def test_http_replay_refuses_a_bad_layer_and_replays_from_silver(
    app_worker: Worker, durable: FakeDurable, finished: Extension
) -> None:
    batch_id = finished.ref["batch_id"]
    path = f"/api/batches/{batch_id}/replay"
    bad = call(
        app_worker,
        durable,
        "replay_batch",
        "POST",
        path,
        route={"batch_id": batch_id},
        json={"from": "platinum"},
    )
    assert bad.status == 400
    replayed = call(
        app_worker,
        durable,
        "replay_batch",
        "POST",
        path,
        route={"batch_id": batch_id},
        query={"from": "silver"},
    )
    assert replayed.status == 202 and replayed.json()["reset_to"] == "BRONZE_DONE"
    assert durable.started(batch_id)[-1] == finished.ref


def test_http_backfill_skips_a_file_whose_batch_is_already_running(
    app_worker: Worker, durable: FakeDurable, finished: Extension, worker_settings: Settings
) -> None:
    prefix = "batch/happy"
    started = call(app_worker, durable, "backfill", "POST", "/api/backfill", json={"prefix": prefix})
    assert started.status == 202
    assert started.json()["files"] == 1 and started.json().get("started") is None


# -- the timer --------------------------------------------------------------------------------------
def test_timer_runs_maintenance_and_logs_a_late_run(app_worker: Worker, finished: Extension) -> None:
    outcome = app_worker.invoke("maintain_tables", {"timer": timer_data(past_due=True)})
    assert outcome.status == "Success", outcome.exception
    assert "maintenance is running late" in outcome.messages("WARNING")
    assert any(
        m.startswith("maintenance done: ") and m.endswith(" 0 failed") for m in outcome.messages("INFO")
    )
