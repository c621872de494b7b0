"""A stand-in for the Durable Functions host that plays one orchestration instance end to end.

Nothing real can run the Durable extension here (it is .NET, inside the Functions host),
so this plays its part in the real wire format: it hands the orchestrator the JSON payload
the extension sends (``schema`` V1, V2 or V3), replays the actions the orchestrator
returns the way the extension and DTFx do (``durable_replay``), and writes the history
DTFx would store: one OrchestratorStarted ... OrchestratorCompleted episode per delivered
message, TaskScheduled/TimerCreated decisions with DTFx's sequence ids, activity results
and timers arriving later on a virtual clock. Activities are scripted: each name maps to
a list of outcomes (used in order) or to a function of the call.

    host = DurableHost(df.Orchestrator.create(run_batch), {"validate_batch": [Returns({...})]})
    instance = host.run({"batch_id": ...})
    assert instance.status is OrchestrationStatus.COMPLETED

Messages are delivered one per episode, in time order. A message for an instance that
has completed is dropped (``Instance.discarded``), as DTFx drops it. The stand-in raises
``StandInLimit`` on an action it does not model (sub-orchestrations, entities, events,
HTTP), ``ScriptError`` on a call the script does not cover and ``Stuck`` when the
instance can make no progress.
"""

from __future__ import annotations

import heapq
import json
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from tests.support.durable_replay import (
    ActionReplayer,
    Complete,
    CreateTimer,
    Decision,
    Future,
    NonDeterministic,
    OrchestrationContext,
    ScheduleTask,
    spawn,
)
from tests.support.durable_wire import (
    EventType,
    OrchestrationStatus,
    Reply,
    Schema,
    dotnet_json,
    dotnet_time,
    event,
    execution_started,
    parse_time,
    payload,
)

START: Final = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
ACTIVITY_TIME: Final = timedelta(seconds=1)
# From a message's arrival to its episode's OrchestratorStarted, and between the events one episode writes.
DISPATCH_LATENCY: Final = timedelta(milliseconds=50)
STEP: Final = timedelta(milliseconds=1)


@dataclass(frozen=True)
class Returns:
    """The activity returns ``value`` (any JSON value) ``after`` it was scheduled."""

    value: Any
    after: timedelta = ACTIVITY_TIME


@dataclass(frozen=True)
class Raises:
    """The activity raises; ``message`` is the exception as the worker reports it."""

    message: str
    after: timedelta = ACTIVITY_TIME


Outcome = Returns | Raises


@dataclass(frozen=True)
class ActivityCall:
    """One activity execution: its input is the JSON value the orchestrator passed."""

    name: str
    input: Any
    task_id: int
    at: datetime
    execution: int


Script = Sequence[Outcome] | Callable[[ActivityCall], Outcome]


class ScriptError(AssertionError):
    """An activity was called that the script does not cover."""


class Stuck(AssertionError):
    """The instance is running with nothing left to deliver: it would wait forever."""


class Worker:
    """Runs scripted activities: a scheduled task in, its TaskCompleted or TaskFailed event out."""

    def __init__(self, activities: Mapping[str, Script]) -> None:
        self.scripts = {k: v if callable(v) else list(v) for k, v in activities.items()}

    def run(self, task: ScheduleTask, at: datetime, execution: int) -> tuple[ActivityCall, dict[str, Any]]:
        script = self.scripts.get(task.name)
        if script is None:
            raise ScriptError(f"activity {task.name!r} was called but is not scripted")
        raw = json.loads(task.input or "[null]")[0]  # DTFx's parameters array; inside it, the SDK's JSON text
        call = ActivityCall(
            task.name, json.loads(raw) if isinstance(raw, str) else raw, task.id, at, execution
        )
        if callable(script):
            outcome = script(call)
        elif script:
            outcome = script.pop(0)
        else:
            raise ScriptError(f"activity {task.name!r} was called more often than scripted: {call}")
        done = at + outcome.after
        if isinstance(outcome, Returns):
            return call, event(
                EventType.TASK_COMPLETED, done, TaskScheduledId=task.id, Result=dotnet_json(outcome.value)
            )
        # TaskActivityShim: the reason names the activity; the details are the serialised cause.
        reason = f"Activity function '{task.name}' failed: {outcome.message}"
        details = dotnet_json({"ClassName": "System.Exception", "Message": outcome.message})
        return call, event(
            EventType.TASK_FAILED, done, TaskScheduledId=task.id, Reason=reason, Details=details
        )


@dataclass
class Instance:
    """What one run left behind, as the host would store and report it."""

    instance_id: str
    status: OrchestrationStatus
    output: Any
    failure: str | None
    custom_status: Any
    executions: list[list[dict[str, Any]]]  # each execution's history; more than one after continue-as-new
    payloads: list[dict[str, Any]]  # every payload handed to the orchestrator, in order
    replies: list[Reply]
    calls: list[ActivityCall]
    statuses: list[Any]  # the custom status after each episode
    faults: list[str]  # errors the extension's replay passed over
    discarded: list[dict[str, Any]] = field(default_factory=list)

    @property
    def history(self) -> list[dict[str, Any]]:
        """The last execution's history."""
        return self.executions[-1]

    def events(self, kind: EventType) -> list[dict[str, Any]]:
        return [e for e in self.history if e["EventType"] == kind]

    def timer_delays(self) -> list[timedelta]:
        """Each TimerCreated's FireAt less the start of the episode that created it."""
        delays, started = [], parse_time(self.history[0]["Timestamp"])
        for e in self.history:
            if e["EventType"] == EventType.ORCHESTRATOR_STARTED:
                started = parse_time(e["Timestamp"])
            elif e["EventType"] == EventType.TIMER_CREATED:
                delays.append(parse_time(e["FireAt"]) - started)
        return delays


@dataclass(order=True)
class _Message:
    at: datetime
    seq: int
    execution: int = field(compare=False)
    event: dict[str, Any] = field(compare=False)


class DurableHost:
    """Plays one orchestration instance against scripted activities; see the module docstring.

    Args:
        orchestrator: What the worker calls, ``df.Orchestrator.create(fn)``: payload JSON in,
            state JSON out.
        activities: The script, by activity name.
        schema: The payload to send (the reply says which schema the extension reads back).
        name: The orchestrator function's name.
        instance_id: The instance id.
        registered: The activity functions the app registers; the script's names by default.
        store_inputs_in_history: The extension's ``storeInputsInOrchestrationHistory``
            (off by default: TaskScheduled events then carry no input).
    """

    def __init__(
        self,
        orchestrator: Callable[[str], str],
        activities: Mapping[str, Script],
        *,
        schema: Schema = Schema.V3,
        name: str = "orchestrator",
        instance_id: str = "instance",
        registered: Collection[str] | None = None,
        store_inputs_in_history: bool = False,
        max_episodes: int = 500,
    ) -> None:
        self.orchestrator = orchestrator
        self.worker = Worker(activities)
        self.schema = schema
        self.name = name
        self.instance_id = instance_id
        self.registered = frozenset(activities if registered is None else registered)
        self.store_inputs_in_history = store_inputs_in_history
        self.max_episodes = max_episodes

    def run(self, client_input: Any = None, *, at: datetime = START, python_client: bool = True) -> Instance:
        """Start the instance with ``client_input`` at ``at`` and play it to its end.

        The Python client posts the input already JSON-encoded (``start_new`` sends
        ``df_dumps(input)`` as the JSON body), so the extension's HTTP API deserialises a
        string (HttpApiHandler.cs 868-872) and the orchestrator receives JSON text. With
        ``python_client=False`` the input arrives as a JSON value, as from a .NET or JS client.
        """
        self._instance = Instance(
            instance_id=self.instance_id,
            status=OrchestrationStatus.RUNNING,
            output=None,
            failure=None,
            custom_status=None,
            executions=[],
            payloads=[],
            replies=[],
            calls=[],
            statuses=[],
            faults=[],
        )
        self._queue: list[_Message] = []
        self._seq = 0
        self._clock = at
        self._episodes = 0
        if python_client:
            started = None if client_input is None else json.dumps(client_input)
            self._start_execution(
                input_json=None if started is None else dotnet_json(started), input_value=started, at=at
            )
        else:
            self._start_execution(input_json=dotnet_json(client_input), input_value=client_input, at=at)
        self._send(self._started, at)  # the client's start message
        while self._instance.status is OrchestrationStatus.RUNNING:
            message = self._next_message()
            self._episode([message.event], max(self._clock, message.at) + DISPATCH_LATENCY)
        self._instance.discarded.extend(m.event for m in sorted(self._queue))
        return self._instance

    # -- executions and messages -------------------------------------------------------------------
    def _start_execution(self, *, input_json: str | None, input_value: Any, at: datetime) -> None:
        generation = len(self._instance.executions)
        execution_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{self.instance_id}/{generation}").hex
        self._history: list[dict[str, Any]] = []
        self._instance.executions.append(self._history)
        self._input = input_value  # what the payload carries: the raw input parsed into a JSON value
        self._started = execution_started(
            at, instance_id=self.instance_id, execution_id=execution_id, name=self.name, input_json=input_json
        )

    def _send(self, message_event: dict[str, Any], at: datetime) -> None:
        generation = len(self._instance.executions) - 1
        heapq.heappush(self._queue, _Message(at, self._seq, generation, message_event))
        self._seq += 1

    def _next_message(self) -> _Message:
        generation = len(self._instance.executions) - 1
        while self._queue:
            message = heapq.heappop(self._queue)
            if message.execution == generation:
                return message
            self._instance.discarded.append(message.event)  # an older execution's message
        last = self._instance.replies[-1] if self._instance.replies else None
        raise Stuck(
            f"instance {self.instance_id} is running with nothing to deliver; extension faults: "
            f"{self._instance.faults}; last reply: {last}"
        )

    # -- one episode (TaskOrchestrationDispatcher + TaskOrchestrationExecutor) ---------------------
    def _episode(self, incoming: list[dict[str, Any]], at: datetime) -> None:
        self._episodes += 1
        if self._episodes > self.max_episodes:
            raise Stuck(f"instance {self.instance_id} ran {self.max_episodes} episodes without finishing")
        live = [*self._history, event(EventType.ORCHESTRATOR_STARTED, at), *incoming]
        replaying = not any(e["EventType"] == EventType.EXECUTION_STARTED for e in incoming)
        body = json.dumps(
            payload(
                self.schema, live, input_value=self._input, instance_id=self.instance_id, replaying=replaying
            )
        )
        self._instance.payloads.append(json.loads(body))
        try:
            reply = Reply.decode(self.orchestrator(body))
        except Exception as error:  # a failing orchestrator raises with its state attached
            reply = Reply.decode(error)
        self._instance.replies.append(reply)
        if reply.custom_status is not None:
            self._instance.custom_status = reply.custom_status
        self._instance.statuses.append(self._instance.custom_status)

        context = OrchestrationContext()
        replayer = ActionReplayer(context, orchestrator=self.name, activities=self.registered)
        result: Future | None = None
        try:
            for e in live:
                if e["EventType"] == EventType.ORCHESTRATOR_STARTED:
                    context.now = parse_time(e["Timestamp"])
                elif e["EventType"] == EventType.EXECUTION_STARTED:
                    result = spawn(replayer.run(reply))  # the worker call and the action replay
                else:
                    context.handle(e)
            # DTFx completes an instance only once no task is open, not merely when the code returns.
            if not context.open and result is not None and result.done:
                if result.error is not None:
                    context.fail(str(result.error))
                else:
                    context.complete(result.result())
        except NonDeterministic as error:
            context.fail(str(error))
        self._instance.faults.extend(replayer.faults)
        for e in incoming:
            e["IsPlayed"] = True  # processed in this episode, so stored as played
        self._history[:] = live
        self._write(sorted(context.decisions.values(), key=lambda d: d.id), at)

    def _write(self, decisions: list[Decision], at: datetime) -> None:
        """Record the decisions (SortedDictionary order: by sequence id) and send their messages."""
        moment, sends, continued = at, [], None
        for decision in decisions:
            moment += STEP
            if isinstance(decision, ScheduleTask):
                stored = decision.input if self.store_inputs_in_history else None
                self._history.append(
                    event(
                        EventType.TASK_SCHEDULED,
                        moment,
                        event_id=decision.id,
                        Name=decision.name,
                        Version="",
                        Input=stored,
                    )
                )
                sends.append(decision)
            elif isinstance(decision, CreateTimer):
                fire_at = dotnet_time(decision.fire_at)
                self._history.append(
                    event(EventType.TIMER_CREATED, moment, event_id=decision.id, FireAt=fire_at)
                )
                # The TimerFired message is made now and held back until FireAt.
                self._send(
                    event(EventType.TIMER_FIRED, moment, TimerId=decision.id, FireAt=fire_at),
                    decision.fire_at,
                )
            else:
                continued = self._complete(decision, moment)
        if continued is None and self._history[-1]["EventType"] != EventType.ORCHESTRATOR_COMPLETED:
            moment += STEP
            self._history.append(event(EventType.ORCHESTRATOR_COMPLETED, moment))
        self._clock = moment
        for task in sends:
            self._run_activity(task, moment)
        if continued is not None:
            self._continue_as_new(continued, moment)

    def _complete(self, decision: Complete, moment: datetime) -> Complete | None:
        if decision.status is OrchestrationStatus.CONTINUED_AS_NEW:
            kind = EventType.CONTINUE_AS_NEW
        else:
            kind = EventType.EXECUTION_COMPLETED
            self._instance.status = decision.status
            if decision.status is OrchestrationStatus.FAILED:
                self._instance.failure = decision.result
            elif decision.result is not None:
                self._instance.output = json.loads(decision.result)
        self._history.append(
            event(
                kind,
                moment,
                event_id=decision.id,
                OrchestrationStatus=int(decision.status),
                Result=decision.result,
                FailureDetails=None,
            )
        )
        return decision if kind is EventType.CONTINUE_AS_NEW else None

    def _continue_as_new(self, decision: Complete, moment: datetime) -> None:
        """A new execution, run in the same work item: its history opens with a whole episode."""
        input_value = None if decision.result is None else json.loads(decision.result)
        self._start_execution(input_json=decision.result, input_value=input_value, at=moment)
        closing = event(EventType.ORCHESTRATOR_COMPLETED, moment)
        self._episode([self._started, closing], moment)

    def _run_activity(self, task: ScheduleTask, at: datetime) -> None:
        call, result = self.worker.run(task, at, len(self._instance.executions) - 1)
        self._instance.calls.append(call)
        self._send(result, parse_time(result["Timestamp"]))
