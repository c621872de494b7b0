"""The batch orchestrator, played end to end by a stand-in for the Durable host.

``tests/support/durable_host.py`` hands ``run_batch`` (through azure-functions-durable's
own entry point) the payload the Durable extension sends, in each replay schema the
extension has spoken: V1 (no schema field), V2 and V3 (today's). The SDK answers each
differently: a bare action per yield in V1, the same action wrapped in a WhenAll compound
action in V2 and V3. The stand-in replays those actions as the extension and DTFx do,
including DTFx's retry timers computed from the orchestrator's retry options, and writes
the history they would write. Activities are scripted; the activity names must be ones
the app registers, as the extension checks.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import pytest

import function_app
from shared.batches import FAIL_ACTIVITY as ACTIVITY_FAIL
from shared.batches import ORCHESTRATOR, Layer
from shared.orchestration import run_batch
from tests.support.durable_host import DurableHost, Instance, Outcome, Raises, Returns
from tests.support.durable_wire import ActionType, EventType, OrchestrationStatus, Schema

ACTIVITY_VALIDATE, ACTIVITY_BRONZE, ACTIVITY_SILVER, ACTIVITY_GOLD = (layer.activity for layer in Layer)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "durable"
REF = {
    "batch_id": "b" * 32,
    "dataset": "user_activity",
    "source": "az://capture/ns/hub/0/x.avro",
    "size": 10,
    "etag": "0x1",
}
LAYERS = [ACTIVITY_VALIDATE, ACTIVITY_BRONZE, ACTIVITY_SILVER, ACTIVITY_GOLD]
# What the orchestrator's retry options must tell the extension: 5 s doubling to at most 60 s, 5 attempts.
RETRY_OPTIONS = {
    "firstRetryIntervalInMilliseconds": 5_000,
    "maxNumberOfAttempts": 5,
    "backoffCoefficient": 2.0,
    "maxRetryIntervalInMilliseconds": 60_000,
}
BACKOFF = [timedelta(seconds=s) for s in (5, 10, 20, 40)]
DTFX_LAST_TIMER = timedelta(0)  # after the last attempt DTFx still waits on a timer that fires at once


def step(state: str, **counts: int) -> dict[str, Any]:
    return {
        "batch_id": REF["batch_id"],
        "state": state,
        "route": "in_function",
        "counts": counts,
        "versions": {},
        "error": None,
    }


HAPPY: dict[str, list[Outcome]] = {
    ACTIVITY_VALIDATE: [Returns(step("VALIDATED", records=3))],
    ACTIVITY_BRONZE: [Returns(step("BRONZE_DONE", records=3, rows_in=3, rows_valid=2, rows_quarantined=1))],
    ACTIVITY_SILVER: [Returns(step("SILVER_DONE", silver_inserted=2, duplicates_dropped=0))],
    ACTIVITY_GOLD: [Returns(step("GOLD_DONE", silver_inserted=2))],
}
RETRIED = HAPPY | {ACTIVITY_BRONZE: [Raises("TransientError: throttled"), *HAPPY[ACTIVITY_BRONZE]]}


@pytest.fixture(scope="module")
def app_functions() -> list[Any]:
    return list(importlib.reload(function_app).app.get_functions())  # get_functions() validates once per app


@pytest.fixture(scope="module")
def registered(app_functions: list[Any]) -> frozenset[str]:
    """The activity functions the app registers: a call to any other name never runs."""
    triggers = {f.get_function_name(): {b.type for b in f.get_bindings()} for f in app_functions}
    return frozenset(name for name, types in triggers.items() if "activityTrigger" in types)


def play(
    script: dict[str, list[Outcome]],
    schema: Schema,
    registered: frozenset[str] | None = None,
    orchestrator: Callable[[str], str] | None = None,
) -> Instance:
    host = DurableHost(
        orchestrator or df.Orchestrator.create(run_batch),
        script,
        schema=schema,
        name=ORCHESTRATOR,
        instance_id=REF["batch_id"],
        registered=registered,
    )
    return host.run(REF)


def called(instance: Instance) -> list[str]:
    return [c.name for c in instance.calls]


@pytest.mark.parametrize("schema", Schema)
def test_happy_path_runs_every_layer_with_backoff_retry_options(
    schema: Schema, registered: frozenset[str]
) -> None:
    instance = play(HAPPY, schema, registered)
    assert instance.status is OrchestrationStatus.COMPLETED
    assert instance.output["state"] == "GOLD_DONE"
    assert called(instance) == LAYERS
    assert all(c.input == REF for c in instance.calls)  # only the small reference passes
    reply = instance.replies[-1]
    leaves = list(reply.leaf_actions())
    assert [a["functionName"] for a in leaves] == LAYERS
    assert all(a["actionType"] == ActionType.CALL_ACTIVITY_WITH_RETRY for a in leaves)
    assert all(a["retryOptions"] == RETRY_OPTIONS for a in leaves)
    if schema is Schema.V1:
        assert reply.actions == [[a] for a in leaves]
    else:
        wrapped = [{"actionType": ActionType.WHEN_ALL, "compoundActions": [a]} for a in leaves]
        assert reply.actions == [wrapped]
    assert instance.custom_status == {
        "layer": "gold",
        "state": "GOLD_DONE",
        "route": "in_function",
        "counts": {"silver_inserted": 2},
        "error": None,
    }
    # Between wake-ups the status names the layer in progress and the latest counts.
    assert [s["layer"] for s in instance.statuses] == ["validate", "bronze", "silver", "gold", "gold"]
    assert instance.statuses[2]["counts"]["rows_quarantined"] == 1


@pytest.mark.parametrize("schema", Schema)
def test_transient_failures_are_retried_after_growing_durable_timers(
    schema: Schema, registered: frozenset[str]
) -> None:
    failures = [Raises("TransientError: commit conflict")] * 3
    instance = play(HAPPY | {ACTIVITY_BRONZE: [*failures, *HAPPY[ACTIVITY_BRONZE]]}, schema, registered)
    assert instance.output["state"] == "GOLD_DONE"
    assert called(instance) == [ACTIVITY_VALIDATE, *[ACTIVITY_BRONZE] * 4, ACTIVITY_SILVER, ACTIVITY_GOLD]
    assert instance.timer_delays() == BACKOFF[:3]  # 5 s, then doubled each time
    fired = [e["TimerId"] for e in instance.events(EventType.TIMER_FIRED)]
    assert fired == [e["EventId"] for e in instance.events(EventType.TIMER_CREATED)]


@pytest.mark.parametrize("schema", Schema)
def test_exhausted_retries_record_failed_through_the_fail_activity(
    schema: Schema, registered: frozenset[str]
) -> None:
    failed = step("FAILED") | {"error": "bronze failed"}
    script = HAPPY | {
        ACTIVITY_BRONZE: [Raises("TransientError: storage down")] * 5,
        ACTIVITY_FAIL: [Returns(failed)],
    }
    instance = play(script, schema, registered)
    assert instance.status is OrchestrationStatus.COMPLETED  # the batch failed; the orchestration did not
    assert instance.output["state"] == "FAILED"
    assert called(instance) == [ACTIVITY_VALIDATE, *[ACTIVITY_BRONZE] * 5, ACTIVITY_FAIL]
    assert instance.timer_delays() == [*BACKOFF, DTFX_LAST_TIMER]
    report = instance.calls[-1].input
    assert report["batch"] == REF
    cause = "Activity function 'write_bronze' failed: TransientError: storage down"
    assert report["error"].startswith(f"bronze failed after 5 attempts: {cause}")
    assert instance.custom_status["state"] == "FAILED"


@pytest.mark.parametrize("schema", Schema)
def test_permanent_failure_returned_by_an_activity_ends_the_batch_without_retry(
    schema: Schema, registered: frozenset[str]
) -> None:
    failed = step("FAILED") | {"error": "silver: ConfigError: key column missing"}
    instance = play(HAPPY | {ACTIVITY_SILVER: [Returns(failed)]}, schema, registered)
    assert instance.output["state"] == "FAILED"
    assert called(instance) == [ACTIVITY_VALIDATE, ACTIVITY_BRONZE, ACTIVITY_SILVER]
    assert instance.events(EventType.TIMER_CREATED) == []


@pytest.mark.parametrize("schema", Schema)
@pytest.mark.parametrize("final", ["EMPTY", "QUARANTINED"])
def test_empty_and_quarantined_batches_stop_after_validate(
    schema: Schema, final: str, registered: frozenset[str]
) -> None:
    instance = play({ACTIVITY_VALIDATE: [Returns(step(final, records=0))]}, schema, registered)
    assert instance.status is OrchestrationStatus.COMPLETED
    assert instance.output["state"] == final
    assert called(instance) == [ACTIVITY_VALIDATE]
    assert instance.custom_status["state"] == final


def test_registered_orchestrator_is_the_same_generator(app_functions: list[Any]) -> None:
    handle = next(f for f in app_functions if f.get_function_name() == ORCHESTRATOR).get_user_function()
    assert play(RETRIED, Schema.V3, orchestrator=handle) == play(RETRIED, Schema.V3)


def fixture_path(name: str, schema: Schema) -> Path:
    return FIXTURES / f"batch_{name}_{schema.name.lower()}.json"


@pytest.mark.parametrize("schema", [Schema.V1, Schema.V3])
@pytest.mark.parametrize("name", ["happy", "retried"])
def test_replaying_a_recorded_history_produces_the_recorded_actions(name: str, schema: Schema) -> None:
    """The non-determinism guard: a change that reorders, renames or re-parametrises steps breaks this."""
    recorded = json.loads(fixture_path(name, schema).read_text())
    state = json.loads(df.Orchestrator.create(run_batch)(json.dumps(recorded["context"])))
    assert state == recorded["state"]


def record_fixtures() -> None:  # pragma: no cover - run by hand after an intended change
    """``python -m tests.unit.test_orchestrator_replay``: re-record the guard's histories."""
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for schema in (Schema.V1, Schema.V3):
        for name, script in (("happy", HAPPY), ("retried", RETRIED)):
            instance = play(script, schema)
            recorded = {"context": instance.payloads[-1], "state": instance.replies[-1].raw}
            fixture_path(name, schema).write_text(json.dumps(recorded, indent=1) + "\n")


if __name__ == "__main__":  # pragma: no cover
    record_fixtures()
