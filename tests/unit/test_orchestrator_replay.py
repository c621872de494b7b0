"""The batch orchestrator, driven through azure-functions-durable's own replay entry point.

A small stand-in for the Durable host plays the orchestration: it calls the orchestrator
with the host's JSON context (``history``, ``input``, ``instanceId``, ``isReplaying``),
reads the actions it returns, and appends the history events the host would write:
``TaskScheduled``, ``TaskCompleted``/``TaskFailed`` and, between attempts of an activity
with retry options, ``TimerCreated``/``TimerFired``, each wake-up an
``OrchestratorStarted``...``OrchestratorCompleted`` episode.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import pytest

import function_app
from shared.batches import FAIL_ACTIVITY as ACTIVITY_FAIL
from shared.batches import ORCHESTRATOR, Layer
from shared.orchestration import RETRY_OPTIONS as RETRY
from shared.orchestration import run_batch

ACTIVITY_VALIDATE, ACTIVITY_BRONZE, ACTIVITY_SILVER, ACTIVITY_GOLD = (layer.activity for layer in Layer)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "durable"
REF = {
    "batch_id": "b" * 32,
    "dataset": "user_activity",
    "source": "az://capture/ns/hub/0/x.avro",
    "size": 10,
    "etag": "0x1",
}
CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY = 0, 1


class Failure(Exception):
    """What an activity 'raises' in the script."""


def step(state: str, **counts: int) -> dict[str, Any]:
    return {
        "batch_id": REF["batch_id"],
        "state": state,
        "route": "in_function",
        "counts": counts,
        "versions": {},
        "error": None,
    }


HAPPY: dict[str, list[Any]] = {
    ACTIVITY_VALIDATE: [step("VALIDATED", records=3)],
    ACTIVITY_BRONZE: [step("BRONZE_DONE", records=3, rows_in=3, rows_valid=2, rows_quarantined=1)],
    ACTIVITY_SILVER: [step("SILVER_DONE", silver_inserted=2, duplicates_dropped=0)],
    ACTIVITY_GOLD: [step("GOLD_DONE", silver_inserted=2)],
}


class Host:
    """Plays the Durable host for one orchestration instance, recording its history."""

    def __init__(
        self, script: dict[str, list[Any]], orchestrator: Callable[[Any], str] | None = None
    ) -> None:
        self.script = {name: list(results) for name, results in script.items()}
        self.handle = orchestrator or df.Orchestrator.create(run_batch)
        self.clock = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
        self.history: list[dict[str, Any]] = []
        self.next_id = 0
        self.states: list[dict[str, Any]] = []
        self.calls: list[str] = []

    # -- history events, in the host's JSON shape ----------------------------------------------
    def event(self, kind: int, event_id: int = -1, **fields: Any) -> dict[str, Any]:
        self.clock += timedelta(milliseconds=250)
        stamp = self.clock.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return {"EventType": kind, "EventId": event_id, "IsPlayed": False, "Timestamp": stamp, **fields}

    def context(self) -> str:
        return json.dumps(
            {
                "history": self.history,
                "input": json.dumps(REF),
                "instanceId": REF["batch_id"],
                "isReplaying": any(e["EventType"] == 13 for e in self.history),
                "parentInstanceId": None,
            }
        )

    def wake(self, *events: dict[str, Any]) -> dict[str, Any]:
        """One episode: OrchestratorStarted, the new events, run the orchestrator, OrchestratorCompleted."""
        self.history.append(self.event(12))
        self.history.extend(events)
        state = json.loads(self.handle(self.context()))
        self.states.append(state)
        return state

    def close_episode(self, *events: dict[str, Any]) -> None:
        self.history.extend(events)
        self.history.append(self.event(13))

    # -- playing -------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        started = self.event(
            0,
            OrchestrationInstance={"InstanceId": REF["batch_id"], "ExecutionId": "e1"},
            ParentInstance=None,
            Name=ORCHESTRATOR,
            Version="",
            Input=json.dumps(REF),
            Tags=None,
        )
        state = self.wake(started)
        handled = 0
        for _ in range(50):
            actions = [a for group in state["actions"] for a in group]
            if state["isDone"] or "error" in state:
                return state
            assert len(actions) == handled + 1, "the orchestrator schedules one activity at a time"
            state = self.play(actions[handled])
            handled += 1
        raise AssertionError("orchestration did not finish")

    def play(self, action: dict[str, Any]) -> dict[str, Any]:
        """Run one scheduled activity to completion, with the host's retry loop."""
        name = action["functionName"]
        with_retry = action["actionType"] == CALL_ACTIVITY_WITH_RETRY
        attempts = action["retryOptions"]["maxNumberOfAttempts"] if with_retry else 1
        for attempt in range(1, attempts + 1):
            task_id = self.next_id
            self.next_id += 1
            self.calls.append(name)
            self.close_episode(self.event(4, task_id, Name=name, Version="", Input=action.get("input")))
            result = self.script[name].pop(0)
            if not isinstance(result, Failure):
                return self.wake(self.event(5, TaskScheduledId=task_id, Result=json.dumps(result)))
            state = self.wake(
                self.event(6, TaskScheduledId=task_id, Reason=str(result), Details="Traceback ...")
            )
            if not with_retry:
                return state
            assert not state["isDone"], "a retried activity's failure is not final until its timer fires"
            timer_id = self.next_id
            self.next_id += 1
            fire_at = (
                self.clock + timedelta(milliseconds=RETRY.first_retry_interval_in_milliseconds)
            ).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            self.close_episode(self.event(10, timer_id, FireAt=fire_at))
            state = self.wake(self.event(11, TimerId=timer_id, FireAt=fire_at))
            if attempt == attempts:
                return state
        raise AssertionError("unreachable")


def scheduled(state: dict[str, Any]) -> list[tuple[int, str]]:
    return [(a["actionType"], a["functionName"]) for group in state["actions"] for a in group]


def test_happy_path_runs_every_layer_with_retry_options_and_reports_status() -> None:
    host = Host(HAPPY)
    state = host.run()
    assert state["isDone"] is True
    assert state["output"]["state"] == "GOLD_DONE"
    assert scheduled(state) == [
        (CALL_ACTIVITY_WITH_RETRY, name)
        for name in (ACTIVITY_VALIDATE, ACTIVITY_BRONZE, ACTIVITY_SILVER, ACTIVITY_GOLD)
    ]
    first = state["actions"][0][0]
    assert json.loads(first["input"]) == REF  # only the small reference passes
    assert first["retryOptions"]["firstRetryIntervalInMilliseconds"] == 5000
    assert first["retryOptions"]["maxNumberOfAttempts"] == 5
    assert first["retryOptions"]["backoffCoefficient"] == 2.0
    assert state["customStatus"] == {
        "layer": "gold",
        "state": "GOLD_DONE",
        "route": "in_function",
        "counts": {"silver_inserted": 2},
        "error": None,
    }
    # Between wake-ups the status names the layer in progress and the latest counts.
    assert [s["customStatus"]["layer"] for s in host.states] == [
        "validate",
        "bronze",
        "silver",
        "gold",
        "gold",
    ]
    assert host.states[2]["customStatus"]["counts"]["rows_quarantined"] == 1


def test_transient_failure_is_retried_after_a_durable_timer() -> None:
    script = {**HAPPY, ACTIVITY_SILVER: [Failure("TransientError: commit conflict"), *HAPPY[ACTIVITY_SILVER]]}
    host = Host(script)
    state = host.run()
    assert state["output"]["state"] == "GOLD_DONE"
    assert host.calls == [ACTIVITY_VALIDATE, ACTIVITY_BRONZE, ACTIVITY_SILVER, ACTIVITY_SILVER, ACTIVITY_GOLD]
    kinds = [e["EventType"] for e in host.history]
    assert kinds.count(10) == 1 and kinds.count(11) == 1  # TimerCreated, TimerFired
    assert ACTIVITY_FAIL not in host.calls


def test_exhausted_retries_record_failed_through_the_fail_activity() -> None:
    failed = step("FAILED") | {"error": "bronze failed"}
    script = {
        **HAPPY,
        ACTIVITY_BRONZE: [Failure("TransientError: storage down")] * RETRY.max_number_of_attempts,
        ACTIVITY_FAIL: [failed],
    }
    host = Host(script)
    state = host.run()
    assert state["isDone"] is True
    assert state["output"]["state"] == "FAILED"
    assert host.calls == [ACTIVITY_VALIDATE, *[ACTIVITY_BRONZE] * 5, ACTIVITY_FAIL]
    fail_action = state["actions"][-1][0]
    payload = json.loads(fail_action["input"])
    assert payload["batch"] == REF
    assert "bronze failed after 5 attempts" in payload["error"] and "storage down" in payload["error"]
    assert state["customStatus"]["state"] == "FAILED"


def test_permanent_failure_returned_by_an_activity_ends_the_batch_without_retry() -> None:
    failed = step("FAILED") | {"error": "silver: ConfigError: key column missing"}
    host = Host({**HAPPY, ACTIVITY_SILVER: [failed]})
    state = host.run()
    assert state["output"]["state"] == "FAILED"
    assert host.calls == [ACTIVITY_VALIDATE, ACTIVITY_BRONZE, ACTIVITY_SILVER]
    assert [e["EventType"] for e in host.history].count(10) == 0


@pytest.mark.parametrize("final", ["EMPTY", "QUARANTINED"])
def test_empty_and_quarantined_batches_stop_after_validate(final: str) -> None:
    host = Host({ACTIVITY_VALIDATE: [step(final, records=0)]})
    state = host.run()
    assert state["isDone"] is True
    assert state["output"]["state"] == final
    assert host.calls == [ACTIVITY_VALIDATE]
    assert state["customStatus"]["state"] == final


def test_registered_orchestrator_is_the_same_generator() -> None:
    app = importlib.reload(function_app).app  # get_functions() validates names once per app
    handle = next(f for f in app.get_functions() if f.get_function_name() == ORCHESTRATOR).get_user_function()
    ours, theirs = Host(HAPPY, handle).run(), Host(HAPPY).run()
    assert ours == theirs


@pytest.mark.parametrize("name", ["happy", "retried"])
def test_replaying_a_recorded_history_produces_the_recorded_actions(name: str) -> None:
    """The non-determinism guard: a change that reorders or renames steps breaks this."""
    recorded = json.loads((FIXTURES / f"batch_{name}_history.json").read_text())
    result = json.loads(df.Orchestrator.create(run_batch)(json.dumps(recorded["context"])))
    assert result == recorded["state"]


def record_fixtures() -> None:  # pragma: no cover - run by hand after an intended change
    """``python -m tests.unit.test_orchestrator_replay``: re-record the guard's histories."""
    retried = {**HAPPY, ACTIVITY_BRONZE: [Failure("TransientError: throttled"), *HAPPY[ACTIVITY_BRONZE]]}
    for name, script in (("happy", HAPPY), ("retried", retried)):
        host = Host(script)
        state = host.run()
        FIXTURES.mkdir(parents=True, exist_ok=True)
        (FIXTURES / f"batch_{name}_history.json").write_text(
            json.dumps({"context": json.loads(host.context()), "state": state}, indent=1) + "\n"
        )


if __name__ == "__main__":  # pragma: no cover
    record_fixtures()
