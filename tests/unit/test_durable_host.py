"""The Durable host stand-in, held to what the real host sends and to what DTFx does.

The first tests compare it with payloads a real host captured (``shared/real-world/durable``:
the Python SDK's chaining sample, 2019, the oldest schema). The rest pin the DTFx and
extension behaviour the stand-in reproduces, in every schema, through the real SDK.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Generator
from datetime import timedelta
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import pytest
from azure.durable_functions.models.DurableOrchestrationContext import DurableOrchestrationContext

from shared.batches import RetryPolicy
from shared.orchestration import BackoffRetryOptions
from tests.support.durable_host import DurableHost, Instance, Raises, Returns, Stuck
from tests.support.durable_replay import StandInLimit
from tests.support.durable_wire import (
    LONG_TIMER_INTERVAL,
    MAXIMUM_DELAY,
    EventType,
    OrchestrationStatus,
    Schema,
    parse_time,
)

Context = df.DurableOrchestrationContext
SAMPLE_ORCHESTRATOR = "DurableFunctionsOrchestratorJS"
SAMPLE_INSTANCE = "48d0f95957504c2fa579e810a390b938"
STEPS = ("one", "two", "three", "four")
DOTNET_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?Z$")


def chaining(context: Context) -> Generator[Any, Any, list[str]]:
    """The sample's orchestrator, as the SDK's own chaining test writes it in Python."""
    outputs = []
    for city in ("Tokyo", "Seattle", "London"):
        outputs.append((yield context.call_activity("Hello", city)))
    return outputs


def hello(schema: Schema = Schema.V1) -> Instance:
    host = DurableHost(
        df.Orchestrator.create(chaining),
        {"Hello": lambda call: Returns(f"Hello {call.input}!")},
        schema=schema,
        name=SAMPLE_ORCHESTRATOR,
        instance_id=SAMPLE_INSTANCE,
    )
    return host.run(None, python_client=False)  # the sample was started by a JS client


def recorded(real_world: Path, kind: str, step: str) -> dict[str, Any]:
    return json.loads((real_world / "durable" / f"chaining_{kind}_{step}.json").read_text())


def as_the_current_host_writes(handle: dict[str, Any]) -> dict[str, Any]:
    """The 2019 capture stores the JS activity's string result bare; today's host stores JSON text
    (DurableActivityContext.SetOutput serialises the output), which the SDK parses."""
    history = [
        e | {"Result": json.dumps(e["Result"])} if e["EventType"] == EventType.TASK_COMPLETED else e
        for e in handle["history"]
    ]
    return handle | {"history": history}


def with_inputs_decoded(state: dict[str, Any]) -> dict[str, Any]:
    """The SDK now sends an action's input as JSON text; the 2019 state has the bare value."""
    actions = [[a | {"input": json.loads(a["input"])} for a in group] for group in state["actions"]]
    return state | {"actions": actions}


def shape(body: dict[str, Any]) -> dict[str, Any]:
    """A payload with each timestamp, result and execution id reduced to its JSON type."""

    def reduce(e: dict[str, Any]) -> dict[str, Any]:
        out = {k: type(v).__name__ for k, v in e.items() if k in ("Timestamp", "Result")}
        out |= {k: v for k, v in e.items() if k not in out}
        if "OrchestrationInstance" in e:
            out["OrchestrationInstance"] = {
                k: type(v).__name__ for k, v in e["OrchestrationInstance"].items()
            }
        return out

    return body | {"history": [reduce(e) for e in body["history"]]}


@pytest.mark.parametrize("step", STEPS)
def test_sdk_answers_a_recorded_host_payload_with_the_recorded_state(real_world: Path, step: str) -> None:
    handle = as_the_current_host_writes(recorded(real_world, "handle", step))
    state = json.loads(df.Orchestrator.create(chaining)(json.dumps(handle)))
    assert with_inputs_decoded(state) == recorded(real_world, "state", step)


def test_stand_in_sends_the_sdk_what_the_real_host_sent(real_world: Path) -> None:
    """Same events, ids, IsPlayed flags, field names and JSON types, episode by episode."""
    instance = hello()
    assert len(instance.payloads) == len(STEPS)
    for body, step in zip(instance.payloads, STEPS, strict=True):
        assert shape(body) == shape(recorded(real_world, "handle", step))
        assert all(DOTNET_TIME.match(e["Timestamp"]) for e in body["history"])
    for reply, step in zip(instance.replies, STEPS, strict=True):
        assert reply.raw is not None
        assert with_inputs_decoded(reply.raw) == recorded(real_world, "state", step)
    assert instance.output == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]


def test_each_result_is_stamped_before_the_episode_that_delivers_it(real_world: Path) -> None:
    """An activity's result is written when it finishes, before the next episode starts."""
    for history in (hello().history, recorded(real_world, "handle", "four")["history"]):
        stamps = [(e["EventType"], parse_time(e["Timestamp"])) for e in history]
        for (kind, stamp), (prior_kind, prior) in zip(stamps[1:], stamps, strict=False):
            if kind in (EventType.EXECUTION_STARTED, EventType.TASK_COMPLETED):
                assert prior_kind == EventType.ORCHESTRATOR_STARTED and stamp < prior


@pytest.mark.parametrize("schema", Schema)
def test_sdk_reads_each_payload_in_its_schema_and_answers_in_it(schema: Schema) -> None:
    instance = hello(schema)
    context = DurableOrchestrationContext.from_json(json.dumps(instance.payloads[0]))
    assert context._replay_schema.value == schema
    assert all(reply.schema == schema for reply in instance.replies)
    if schema is Schema.V3:
        assert context._maximum_short_timer_duration == MAXIMUM_DELAY
        assert context._long_timer_interval_duration == LONG_TIMER_INTERVAL
    assert instance.output == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]


def flaky(options: df.RetryOptions) -> Callable[[Any], str]:
    def orchestrator(context: Context) -> Generator[Any, Any, str]:
        try:
            yield context.call_activity_with_retry("flaky", options, 1)
        except Exception as exc:
            return f"gave up: {exc}"
        return "succeeded"

    return df.Orchestrator.create(orchestrator)


@pytest.mark.parametrize("schema", Schema)
@pytest.mark.parametrize(
    ("options", "delays"),
    [
        # 1 s * 3**n, capped at 10 s; then DTFx's zero-delay timer after the last attempt.
        (
            BackoffRetryOptions(RetryPolicy(first_seconds=1, attempts=6, coefficient=3, max_seconds=10)),
            [1, 3, 9, 10, 10, 0],
        ),
        # The SDK's own RetryOptions sends no coefficient: DTFx's default of 1, a fixed interval.
        (df.RetryOptions(2_000, 3), [2, 2, 0]),
    ],
    ids=["backoff", "sdk-default"],
)
def test_retry_timers_wait_first_interval_times_coefficient_to_the_attempt_capped(
    schema: Schema, options: df.RetryOptions, delays: list[int]
) -> None:
    attempts = options.max_number_of_attempts
    host = DurableHost(
        flaky(options), {"flaky": [Raises("TransientError: throttled")] * attempts}, schema=schema
    )
    instance = host.run()
    assert instance.timer_delays() == [timedelta(seconds=s) for s in delays]
    assert [c.name for c in instance.calls] == ["flaky"] * attempts
    assert instance.output.startswith("gave up: Activity function 'flaky' failed: TransientError: throttled")


@pytest.mark.parametrize("schema", Schema)
def test_a_retry_that_succeeds_stops_retrying(schema: Schema) -> None:
    script = {"flaky": [Raises("TransientError: throttled"), Returns("ok")]}
    instance = DurableHost(flaky(df.RetryOptions(2_000, 3)), script, schema=schema).run()
    assert instance.output == "succeeded"
    assert instance.timer_delays() == [timedelta(seconds=2)]


def fan_out(context: Context) -> Generator[Any, Any, list[int]]:
    results = yield context.task_all([context.call_activity("square", n) for n in (1, 2, 3)])
    return list(results)


@pytest.mark.parametrize("schema", Schema)
def test_when_all_schedules_every_activity_in_one_episode_and_waits_for_all(schema: Schema) -> None:
    slow_first = {1: 3, 2: 1, 3: 2}
    script = {"square": lambda call: Returns(call.input**2, after=timedelta(seconds=slow_first[call.input]))}
    instance = DurableHost(df.Orchestrator.create(fan_out), script, schema=schema).run()
    kinds = [e["EventType"] for e in instance.history]
    assert kinds[2:6] == [EventType.TASK_SCHEDULED] * 3 + [EventType.ORCHESTRATOR_COMPLETED]
    assert [e["TaskScheduledId"] for e in instance.events(EventType.TASK_COMPLETED)] == [1, 2, 0]
    assert instance.output == [1, 4, 9]


def with_timeout(context: Context) -> Generator[Any, Any, str]:
    deadline = context.create_timer(context.current_utc_datetime + timedelta(seconds=60))
    work = context.call_activity("work", None)
    winner = yield context.task_any([work, deadline])
    if winner == work:
        deadline.cancel()
        return f"done: {work.result}"
    return "timed out"


@pytest.mark.parametrize("schema", Schema)
def test_a_cancelled_timeout_timer_lets_the_instance_finish_at_once(schema: Schema) -> None:
    instance = DurableHost(
        df.Orchestrator.create(with_timeout), {"work": [Returns("x")]}, schema=schema
    ).run()
    assert instance.output == "done: x"
    assert instance.replies[-1].raw is not None
    assert any(a.get("isCanceled") for a in instance.replies[-1].leaf_actions())
    assert [e["EventType"] for e in instance.history][-2:] == [
        EventType.EXECUTION_COMPLETED,
        EventType.ORCHESTRATOR_COMPLETED,
    ]
    # The timer still fires at its FireAt; by then the instance is gone and DTFx drops it.
    assert [e["EventType"] for e in instance.discarded] == [EventType.TIMER_FIRED]


@pytest.mark.parametrize("schema", Schema)
def test_when_the_timeout_wins_the_instance_waits_for_the_running_activity(schema: Schema) -> None:
    """DTFx completes an instance only when no task is open (TaskOrchestrationExecutor.cs 179)."""
    script = {"work": [Returns("late", after=timedelta(minutes=5))]}
    instance = DurableHost(df.Orchestrator.create(with_timeout), script, schema=schema).run()
    assert instance.output == "timed out"
    kinds = [e["EventType"] for e in instance.history]
    fired = kinds.index(EventType.TIMER_FIRED)
    assert kinds[fired + 1] == EventType.ORCHESTRATOR_COMPLETED  # the code returned; the instance did not
    assert kinds[-3:] == [
        EventType.TASK_COMPLETED,
        EventType.EXECUTION_COMPLETED,
        EventType.ORCHESTRATOR_COMPLETED,
    ]


def poller(context: Context) -> Generator[Any, Any, dict[str, Any]]:
    """A job-polling loop: submit, then a durable timer and a poll until done or out of time."""
    run_id = yield context.call_activity("submit", {"job": 7})
    deadline = context.current_utc_datetime + timedelta(seconds=100)
    polls = 0
    while context.current_utc_datetime < deadline:
        yield context.create_timer(context.current_utc_datetime + timedelta(seconds=30))
        state = yield context.call_activity("poll", run_id)
        polls += 1
        context.set_custom_status({"run_id": run_id, "state": state, "polls": polls})
        if state == "TERMINATED":
            return {"state": state, "polls": polls}
    yield context.call_activity("cancel", run_id)
    return {"state": "TIMED_OUT", "polls": polls}


@pytest.mark.parametrize("schema", Schema)
@pytest.mark.parametrize(
    ("states", "calls", "final"),
    [
        (["RUNNING", "TERMINATED"], ["submit", "poll", "poll"], "TERMINATED"),
        # Each round is a 30 s timer and a 10 s poll: the third round ends past the 100 s deadline.
        (["RUNNING"] * 3, ["submit", "poll", "poll", "poll", "cancel"], "TIMED_OUT"),
    ],
    ids=["finishes", "times-out"],
)
def test_polling_loop_waits_on_durable_timers_between_polls(
    schema: Schema, states: list[str], calls: list[str], final: str
) -> None:
    script = {
        "submit": [Returns(42)],
        "poll": [Returns(s, after=timedelta(seconds=10)) for s in states],
        "cancel": [Returns(None)],
    }
    instance = DurableHost(df.Orchestrator.create(poller), script, schema=schema).run()
    assert [c.name for c in instance.calls] == calls
    assert all(c.input == 42 for c in instance.calls[1:])
    assert instance.timer_delays() == [timedelta(seconds=30)] * calls.count("poll")
    assert instance.output == {"state": final, "polls": calls.count("poll")}
    assert instance.custom_status == {"run_id": 42, "state": states[-1], "polls": calls.count("poll")}


def counter(context: Context) -> Generator[Any, Any, int | None]:
    n = context.get_input()
    yield context.call_activity("tick", n)
    if n < 2:
        context.continue_as_new(n + 1)
        return None
    return int(n)


@pytest.mark.parametrize("schema", Schema)
def test_continue_as_new_starts_a_fresh_execution_with_the_new_input(schema: Schema) -> None:
    instance = DurableHost(df.Orchestrator.create(counter), {"tick": [Returns(None)] * 3}, schema=schema).run(
        0
    )
    assert instance.output == 2
    assert [c.input for c in instance.calls] == [0, 1, 2]
    assert [c.execution for c in instance.calls] == [0, 1, 2]
    assert len(instance.executions) == 3
    for old in instance.executions[:-1]:
        assert old[-1]["EventType"] == EventType.CONTINUE_AS_NEW
    starts = [execution[1] for execution in instance.executions]
    assert len({s["OrchestrationInstance"]["ExecutionId"] for s in starts}) == 3
    # The Python client, then DTFx, hand over the SDK's JSON text as a string.
    assert [json.loads(s["Input"]) for s in starts] == ["0", "1", "2"]
    # DTFx runs the new execution in the same work item: it starts with a whole episode of its own.
    assert [e["EventType"] for e in instance.history[:5]] == [
        EventType.ORCHESTRATOR_STARTED,
        EventType.EXECUTION_STARTED,
        EventType.ORCHESTRATOR_COMPLETED,
        EventType.TASK_SCHEDULED,
        EventType.ORCHESTRATOR_COMPLETED,
    ]


def test_a_failing_orchestrator_fails_the_instance_with_its_message() -> None:
    def failing(context: Context) -> Generator[Any, Any]:
        yield context.call_activity("work", None)
        raise ValueError("bad batch reference")

    instance = DurableHost(df.Orchestrator.create(failing), {"work": [Returns(None)]}, name="batch").run()
    assert instance.status is OrchestrationStatus.FAILED
    assert instance.failure == "Orchestrator function 'batch' failed: bad batch reference"


def test_an_unknown_action_type_fails_the_instance_as_the_extension_does() -> None:
    def newer_sdk(body: str) -> str:
        return json.dumps({"isDone": False, "schemaVersion": 2, "actions": [[{"actionType": 13}]]})

    instance = DurableHost(newer_sdk, {}, name="batch").run()
    assert instance.status is OrchestrationStatus.FAILED
    assert instance.failure == (
        "Orchestrator function 'batch' failed: "
        "Received an unexpected action type from the out-of-proc function: '$13'."
    )


def test_an_action_the_stand_in_does_not_model_stops_the_run() -> None:
    def waits(context: Context) -> Generator[Any, Any]:
        yield context.wait_for_external_event("approved")

    with pytest.raises(StandInLimit, match="WAIT_FOR_EXTERNAL_EVENT"):
        DurableHost(df.Orchestrator.create(waits), {}).run()


@pytest.mark.parametrize("schema", Schema)
def test_an_unregistered_activity_leaves_the_instance_waiting_forever(schema: Schema) -> None:
    """The extension's check runs inside an async call: the task faults, the replay passes over it."""

    def calls_a_typo(context: Context) -> Generator[Any, Any]:
        yield context.call_activity("write_bronz", None)

    host = DurableHost(df.Orchestrator.create(calls_a_typo), {"write_bronze": []}, schema=schema)
    with pytest.raises(Stuck, match="The function 'write_bronz' doesn't exist"):
        host.run()


@pytest.mark.parametrize("schema", Schema)
def test_code_changed_under_a_running_instance_fails_it_as_non_deterministic(schema: Schema) -> None:
    deployed = {"first": "validate"}

    def changing(context: Context) -> Generator[Any, Any, str]:
        yield context.call_activity(deployed["first"], None)
        return "done"

    def validate(call: Any) -> Returns:
        deployed["first"] = "validate_v2"  # a deploy lands while the activity runs
        return Returns(None)

    script = {"validate": validate, "validate_v2": [Returns(None)]}
    instance = DurableHost(df.Orchestrator.create(changing), script, schema=schema).run()
    assert instance.replies[-1].is_done  # the SDK itself does not notice
    assert instance.status is OrchestrationStatus.FAILED
    assert instance.failure is not None
    assert (
        "named 'validate', but the current orchestration replay instead scheduled an activity task named "
        "'validate_v2'" in instance.failure
    )
