"""The orchestrator's Databricks route, replayed by the Durable host stand-in in each schema.

A batch validate routes to Databricks is one Spark run: submitted once, polled between
durable timers whose interval doubles, then each layer's activity records the run's
commits. A failed run, and one that outlives its deadline (cancelled), end the batch FAILED.
"""

from __future__ import annotations

import importlib
from typing import Any

import azure.durable_functions as df
import pytest

import function_app
from shared.batches import (
    CANCEL_ACTIVITY,
    FAIL_ACTIVITY,
    ORCHESTRATOR,
    POLL_ACTIVITY,
    SUBMIT_ACTIVITY,
    Layer,
)
from shared.orchestration import run_batch
from tests.support.durable_host import DurableHost, Instance, Outcome, Returns
from tests.support.durable_wire import OrchestrationStatus, Schema

VALIDATE, BRONZE, SILVER, GOLD = (layer.activity for layer in Layer)
REF = {
    "batch_id": "d" * 32,
    "dataset": "user_activity",
    "source": "az://capture/big.avro",
    "size": 10**9,
    "etag": "e",
}
POLL_SECONDS, TIMEOUT_SECONDS = 30, 3600


def step(state: str, **counts: int) -> dict[str, Any]:
    return {
        "batch_id": REF["batch_id"],
        "state": state,
        "route": "databricks",
        "counts": counts,
        "versions": {},
        "error": None,
    }


def run(life_cycle: str, result: str | None = None, message: str = "") -> dict[str, Any]:
    return {
        "run_id": 77,
        "life_cycle": life_cycle,
        "result": result,
        "message": message,
        "url": "https://adb/run/77",
    }


def submitted(status: dict[str, Any]) -> Returns:
    return Returns({"run": status, "poll_seconds": POLL_SECONDS, "timeout_seconds": TIMEOUT_SECONDS})


RECORDED: dict[str, list[Outcome]] = {
    VALIDATE: [Returns(step("VALIDATED", records=10))],
    BRONZE: [Returns(step("BRONZE_DONE", rows_in=10, rows_valid=9, rows_quarantined=1))],
    SILVER: [Returns(step("SILVER_DONE", silver_inserted=9, duplicates_dropped=0))],
    GOLD: [Returns(step("GOLD_DONE", silver_inserted=9))],
}


@pytest.fixture(scope="module")
def registered() -> frozenset[str]:
    functions = importlib.reload(function_app).app.get_functions()
    return frozenset(
        f.get_function_name() for f in functions if any(b.type == "activityTrigger" for b in f.get_bindings())
    )


def delays(instance: Instance) -> list[float]:
    return [d.total_seconds() for d in instance.timer_delays()]


def play(script: dict[str, list[Outcome]], schema: Schema, registered: frozenset[str]) -> Instance:
    host = DurableHost(
        df.Orchestrator.create(run_batch),
        script,
        schema=schema,
        name=ORCHESTRATOR,
        instance_id=REF["batch_id"],
        registered=registered,
    )
    return host.run(REF)


@pytest.mark.parametrize("schema", Schema)
def test_a_large_file_is_one_run_polled_between_growing_timers_then_recorded_layer_by_layer(
    schema: Schema, registered: frozenset[str]
) -> None:
    script = RECORDED | {
        SUBMIT_ACTIVITY: [submitted(run("PENDING"))],
        POLL_ACTIVITY: [
            Returns(run("PENDING")),
            Returns(run("RUNNING")),
            Returns(run("RUNNING")),
            Returns(run("TERMINATED", "SUCCESS")),
        ],
    }
    instance = play(script, schema, registered)
    assert instance.status is OrchestrationStatus.COMPLETED
    assert instance.output["state"] == "GOLD_DONE"
    names = [c.name for c in instance.calls]
    assert names == [VALIDATE, SUBMIT_ACTIVITY, *[POLL_ACTIVITY] * 4, BRONZE, SILVER, GOLD]
    assert instance.calls[1].input == {"batch": REF}
    assert all(c.input == {"batch": REF, "run_id": 77} for c in instance.calls if c.name == POLL_ACTIVITY)
    assert delays(instance) == [30, 60, 120, 240]  # durable timers, never a wait in an activity


@pytest.mark.parametrize("schema", Schema)
@pytest.mark.parametrize(
    ("life_cycle", "result"),
    [
        ("TERMINATED", "FAILED"),
        ("TERMINATED", "TIMEDOUT"),
        ("TERMINATED", "CANCELED"),
        ("INTERNAL_ERROR", None),
        ("SKIPPED", None),
    ],
)
def test_a_run_that_does_not_succeed_ends_the_batch_failed_with_its_id_page_and_message(
    schema: Schema, life_cycle: str, result: str | None, registered: frozenset[str]
) -> None:
    failed = step("FAILED") | {"error": "x"}
    script = RECORDED | {
        SUBMIT_ACTIVITY: [submitted(run("RUNNING"))],
        POLL_ACTIVITY: [Returns(run(life_cycle, result, "Task batch failed: QuarantinedFile"))],
        FAIL_ACTIVITY: [Returns(failed)],
    }
    instance = play(script, schema, registered)
    assert instance.output["state"] == "FAILED"
    assert [c.name for c in instance.calls] == [VALIDATE, SUBMIT_ACTIVITY, POLL_ACTIVITY, FAIL_ACTIVITY]
    error = instance.calls[-1].input["error"]
    outcome = life_cycle + (f"/{result}" if result else "")
    assert (
        error
        == f"bronze on Databricks: run 77 {outcome}: Task batch failed: QuarantinedFile (https://adb/run/77)"
    )


@pytest.mark.parametrize("schema", Schema)
def test_a_run_past_its_deadline_is_cancelled_and_the_batch_fails(
    schema: Schema, registered: frozenset[str]
) -> None:
    failed = step("FAILED") | {"error": "x"}
    script = RECORDED | {
        SUBMIT_ACTIVITY: [submitted(run("RUNNING"))],
        POLL_ACTIVITY: lambda call: Returns(run("RUNNING")),
        CANCEL_ACTIVITY: [Returns({"run_id": 77, "cancelled": True})],
        FAIL_ACTIVITY: [Returns(failed)],
    }
    instance = play(script, schema, registered)
    assert instance.output["state"] == "FAILED"
    names = [c.name for c in instance.calls]
    assert names[-2:] == [CANCEL_ACTIVITY, FAIL_ACTIVITY] and BRONZE not in names
    assert sum(delays(instance)) >= TIMEOUT_SECONDS  # it waited out the whole deadline first
    assert max(delays(instance)) == 600  # the interval stops growing at ten minutes
    assert "cancelled after 60 minutes" in instance.calls[-1].input["error"]


@pytest.mark.parametrize("schema", Schema)
def test_no_workspace_ends_the_batch_failed_and_nothing_runs_in_the_function(
    schema: Schema, registered: frozenset[str]
) -> None:
    failed = step("FAILED") | {"error": "bronze on Databricks: DatabricksNotConfigured: set DATABRICKS_HOST"}
    instance = play(RECORDED | {SUBMIT_ACTIVITY: [Returns(failed)]}, schema, registered)
    assert instance.output == failed
    assert [c.name for c in instance.calls] == [VALIDATE, SUBMIT_ACTIVITY]
