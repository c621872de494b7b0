"""One episode as the host plays it: DTFx's replay, and the extension's replay of the worker's actions.

An out-of-process orchestrator never talks to DTFx itself. On every episode the extension
runs an in-process orchestration (``TaskOrchestrationShim``) that calls the worker once,
then replays the worker's actions against DTFx's ``TaskOrchestrationContext``
(``OutOfProcOrchestrationShim``): a new action becomes a new decision (TaskScheduled,
TimerCreated); one already in the history must match it, or DTFx fails the instance as
non-deterministic. This module ports that, reading (facts only, nothing copied):

- Azure/durabletask @ 52170329, ``src/DurableTask.Core/``: ``TaskOrchestrationContext.cs``
  (``idCounter`` 129/298/716; handlers 327-388, 476-588; ``FailOrchestration`` 659-712;
  ``CompleteOrchestration`` 714-746; ``ContinueAsNewCore`` 271-282), ``RetryInterceptor.cs``
  52-101, ``TaskOrchestrationExecutor.cs`` 138-222.
- azure-functions-durable-extension @ a7c6d694, ``src/WebJobs.Extensions.DurableTask/``:
  ``Listener/OutOfProcOrchestrationShim.cs`` 75-279, ``Listener/TaskOrchestrationShim.cs``
  139-213, ``ContextImplementations/DurableOrchestrationContext.cs`` 339-410 (timers) and
  535-700 (``CallDurableTaskFunctionAsync``).

C# tasks become ``Future`` objects whose continuations run inline, as DTFx's synchronous
task scheduler runs them, so sequence ids are handed out in the order DTFx hands them out.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Coroutine, Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tests.support.durable_wire import (
    MAXIMUM_DELAY,
    ActionType,
    EventType,
    InvalidRetryOptions,
    OrchestrationStatus,
    Reply,
    RetryPolicy,
    Schema,
    dotnet_json,
    parse_time,
)


class StandInLimit(AssertionError):
    """The stand-in met something the real host handles but the stand-in does not model."""


class Canceled(Exception):
    """A cancelled durable timer (C#'s TaskCanceledException)."""


class TaskFailed(Exception):
    """DTFx's TaskFailedException: an activity failed (its TaskFailed event)."""

    def __init__(self, task_id: int, reason: str | None, details: str | None) -> None:
        super().__init__(reason)
        self.task_id = task_id
        self.reason = reason
        self.details = details


class ExtensionFault(Exception):
    """An exception the extension's own replay code throws; the message is the extension's."""


class OrchestratorFailed(Exception):
    """The extension's OrchestrationFailureException: fails the instance with its message."""


class NonDeterministic(ExtensionFault):
    """DTFx's NonDeterministicOrchestrationException: the replay disagrees with the history."""


# -- C# tasks, inline -------------------------------------------------------------------------------
class Future:
    """A C# Task: done once, with a value or an exception; continuations run at once, in order."""

    def __init__(self) -> None:
        self.done = False
        self.error: Exception | None = None
        self._value: Any = None
        self._callbacks: list[Callable[[Future], None]] = []

    def set_result(self, value: Any) -> None:
        self._finish(value, None)

    def set_exception(self, error: Exception) -> None:
        self._finish(None, error)

    def cancel(self) -> bool:
        """TrySetCanceled: False when the task already finished."""
        if self.done:
            return False
        self._finish(None, Canceled())
        return True

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self._value

    def then(self, callback: Callable[[Future], None]) -> None:
        if self.done:
            callback(self)
        else:
            self._callbacks.append(callback)

    def _finish(self, value: Any, error: Exception | None) -> None:
        if self.done:
            raise StandInLimit("a task finished twice")
        self.done, self._value, self.error = True, value, error
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)

    def __await__(self) -> Generator[Future, None, Any]:
        if not self.done:
            yield self
        return self.result()


def completed(value: Any = None) -> Future:
    """Task.FromResult / Task.CompletedTask."""
    future = Future()
    future.set_result(value)
    return future


def spawn(coroutine: Coroutine[Future, None, Any]) -> Future:
    """Start an ``async`` method as C# does: it runs at once, up to its first unfinished await."""
    out = Future()

    def step(_: Future | None = None) -> None:
        try:
            awaited = coroutine.send(None)
        except StopIteration as stop:
            out.set_result(stop.value)
        except StandInLimit:
            raise
        except Exception as error:  # an async method's exception faults its task
            out.set_exception(error)
        else:
            awaited.then(step)

    step()
    return out


def when_all(futures: list[Future]) -> Future:
    """Task.WhenAll: done when every task is; faulted by the first fault, else cancelled by any cancel."""
    out = Future()
    pending = len(futures)

    def one_done(_: Future) -> None:
        nonlocal pending
        pending -= 1
        if pending:
            return
        errors = [f.error for f in futures if f.error is not None]
        faults = [e for e in errors if not isinstance(e, Canceled)]
        if faults:
            out.set_exception(faults[0])
        elif errors:
            out.set_exception(Canceled())
        else:
            out.set_result([f.result() for f in futures])

    if not futures:
        out.set_result([])
    for future in futures:
        future.then(one_done)
    return out


def when_any(futures: list[Future]) -> Future:
    """Task.WhenAny: done with the first task to finish (the earliest in the list if several have)."""
    if not futures:
        raise ExtensionFault("The tasks argument contains no tasks.")
    out = Future()
    for future in futures:
        future.then(lambda f: None if out.done else out.set_result(f))
    return out


# -- DTFx's orchestration context ---------------------------------------------------------------------
@dataclass(frozen=True)
class ScheduleTask:
    id: int
    name: str
    input: str | None  # what DTFx would store if StoreInputsInOrchestrationHistory were on


@dataclass(frozen=True)
class CreateTimer:
    id: int
    fire_at: datetime


@dataclass(frozen=True)
class Complete:
    id: int
    status: OrchestrationStatus
    result: str | None


Decision = ScheduleTask | CreateTimer | Complete

TOO_LONG = f"The Azure Storage provider supports a maximum of {MAXIMUM_DELAY.days} days for time-based delays"
_CHANGED = "Was a change made to the orchestrator code after this instance had already started running?"


class OrchestrationContext:
    """DTFx's TaskOrchestrationContext for one replay: sequence ids, decisions, open tasks."""

    def __init__(self) -> None:
        self.now = datetime.min.replace(tzinfo=UTC)  # CurrentUtcDateTime, set by each OrchestratorStarted
        self.decisions: dict[int, Decision] = {}  # orchestratorActionsMap
        self.open: dict[int, Future] = {}  # openTasks
        self._next_id = 0
        self._continue_as_new: Complete | None = None
        self._finished = False

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def schedule_task(self, name: str, input_value: Any) -> Future:
        """ScheduleTaskInternal; DTFx serialises the parameters array, hence ``[input]``."""
        task_id = self._id()
        self.decisions[task_id] = ScheduleTask(task_id, name, dotnet_json([input_value]))
        self.open[task_id] = future = Future()
        return future

    def create_timer(self, fire_at: datetime) -> tuple[int, Future]:
        timer_id = self._id()
        self.decisions[timer_id] = CreateTimer(timer_id, fire_at)
        self.open[timer_id] = future = Future()
        return timer_id, future

    def cancel_timer(self, timer_id: int, timer: Future) -> None:
        """The cancellation token's callback: the timer stops being an open task (its decision stays)."""
        if timer.cancel():
            self.open.pop(timer_id, None)

    async def schedule_with_retry(self, name: str, policy: RetryPolicy, input_value: Any) -> Any:
        """RetryInterceptor.Invoke: attempt, then a durable timer before each retry.

        After the last failed attempt DTFx still waits on a timer that fires at once
        (RetryInterceptor.cs 73-81, kept so that old histories replay); the Python SDK
        waits for it too (``RetryAbleTask.try_set_value``). FailureDetails.IsNonRetriable
        is never set here: the extension propagates errors as serialised exceptions.
        """
        first_attempt = self.now
        last: TaskFailed | None = None
        for attempt in range(policy.max_number_of_attempts):
            try:
                return await self.schedule_task(name, input_value)
            except TaskFailed as failure:
                last = failure
            if attempt + 1 == policy.max_number_of_attempts:
                await self.create_timer(self.now)[1]
                break
            delay = policy.next_delay(attempt, first_attempt, self.now)
            if not delay:
                break
            await self.create_timer(self.now + delay)[1]
        if last is not None:
            raise last
        return None

    def continue_as_new(self, input_json: str | None) -> None:
        self._continue_as_new = Complete(-1, OrchestrationStatus.CONTINUED_AS_NEW, input_json)

    def complete(
        self, result: str | None, status: OrchestrationStatus = OrchestrationStatus.COMPLETED
    ) -> None:
        """CompleteOrchestration: the completion takes the next sequence id, after every other decision."""
        task_id = self._id()
        if status is OrchestrationStatus.COMPLETED and self._continue_as_new is not None:
            self.decisions[task_id] = Complete(
                task_id, self._continue_as_new.status, self._continue_as_new.result
            )
        elif not self._finished:
            self._finished = True
            self.decisions[task_id] = Complete(task_id, status, result)

    def fail(self, reason: str) -> None:
        """FailOrchestration: the reason (the exception's message) becomes the result."""
        self.complete(reason, OrchestrationStatus.FAILED)

    # -- the history, event by event (TaskOrchestrationExecutor.ProcessEvent) ---------------------
    def handle(self, event: dict[str, Any]) -> None:
        kind = EventType(event["EventType"])
        if kind is EventType.TASK_SCHEDULED:
            self._match_task(event["EventId"], event.get("Name"))
        elif kind is EventType.TIMER_CREATED:
            self._match_timer(event["EventId"])
        elif kind is EventType.TASK_COMPLETED:
            self._resolve(event["TaskScheduledId"], lambda f: f.set_result(event.get("Result")))
        elif kind is EventType.TASK_FAILED:
            failure = TaskFailed(event["TaskScheduledId"], event.get("Reason"), event.get("Details"))
            self._resolve(event["TaskScheduledId"], lambda f: f.set_exception(failure))
        elif kind is EventType.TIMER_FIRED:
            self._resolve(event["TimerId"], lambda f: f.set_result(str(event["TimerId"])))

    def _match_task(self, task_id: int, name: str | None) -> None:
        decision = self.decisions.get(task_id)
        previous = "A previous execution of this orchestration scheduled an activity task with sequence"
        if decision is None:
            raise NonDeterministic(
                f"{previous} ID {task_id} and name '{name}' (version ''), but the current replay execution "
                f"hasn't (yet?) scheduled this task. {_CHANGED}"
            )
        if not isinstance(decision, ScheduleTask):
            raise NonDeterministic(
                f"{previous} number {task_id} named '{name}', but the current orchestration replay instead "
                f"produced a {type(decision).__name__} action with this sequence number. {_CHANGED}"
            )
        if (name or "").casefold() != decision.name.casefold():
            raise NonDeterministic(
                f"{previous} number {task_id} named '{name}', but the current orchestration replay instead "
                f"scheduled an activity task named '{decision.name}' with this sequence number.  {_CHANGED}"
            )
        del self.decisions[task_id]

    def _match_timer(self, timer_id: int) -> None:
        decision = self.decisions.get(timer_id)
        previous = "A previous execution of this orchestration scheduled a timer task with sequence number"
        previous = f"{previous} {timer_id}"
        if decision is None:
            raise NonDeterministic(
                f"{previous} but the current replay execution hasn't (yet?) scheduled this task. {_CHANGED}"
            )
        if not isinstance(decision, CreateTimer):
            raise NonDeterministic(
                f"{previous} named but the current orchestration replay instead produced a "
                f"{type(decision).__name__} action with this sequence number. {_CHANGED}"
            )
        del self.decisions[timer_id]

    def _resolve(self, task_id: int, settle: Callable[[Future], None]) -> None:
        future = self.open.pop(task_id, None)
        if future is not None:  # else DTFx logs a duplicate event (a cancelled timer firing) and moves on
            settle(future)


# -- the extension's replay of the worker's actions ----------------------------------------------------
class ActionReplayer:
    """OutOfProcOrchestrationShim with the DurableOrchestrationContext calls it makes.

    ``faults`` collects the exceptions the extension's async calls fault with and its
    replay loop then passes over (V1 moves on at WhenAny, V2/V3 swallow them): an unknown
    activity, a retry interval over the provider's limit. The instance then waits forever.
    """

    def __init__(
        self, context: OrchestrationContext, *, orchestrator: str, activities: Collection[str]
    ) -> None:
        self.context = context
        self.orchestrator = orchestrator
        self.activities = activities
        self.faults: list[str] = []

    async def run(self, reply: Reply) -> str | None:
        """TaskOrchestrationShim + ScheduleDurableTaskEvents: replay, then fail, finish or wait.

        Whatever goes wrong becomes an OrchestrationFailureException named after the
        orchestrator (TaskOrchestrationShim.cs 174-207), which DTFx records as the reason.
        """
        failed = f"Orchestrator function '{self.orchestrator}' failed: "
        if reply.raw is None:  # the worker failed without its state attached
            raise OrchestratorFailed(failed + (reply.error or ""))
        try:
            for action in reply.leaf_actions():  # RetryOptionsConverter runs as the reply is deserialised
                if action.get("retryOptions") is not None:
                    try:
                        RetryPolicy.from_json(action["retryOptions"])
                    except InvalidRetryOptions as error:
                        raise ExtensionFault(str(error)) from error
            await self._replay(reply.actions, reply.schema)
        except ExtensionFault as fault:
            raise OrchestratorFailed(failed + str(fault)) from fault
        if reply.error is not None:
            raise OrchestratorFailed(failed + reply.error)
        if reply.is_done:
            return None if reply.output is None else dotnet_json(reply.output)
        never: str | None = await Future()
        return never  # Task.Delay(Timeout.Infinite): more work to do

    async def _replay(self, actions: list[list[dict[str, Any]]], schema: int) -> None:
        if schema in (Schema.V2, Schema.V3):
            # One action per yield, in one list (nested once for legacy reasons), awaited in turn.
            if len(actions) != 1:
                raise ExtensionFault(
                    f"With OOProc schema {Schema(schema).name}, expected actions array to be of length 1 in "
                    f"outer layer but got size: {len(actions)}"
                )
            for action in actions[0]:
                task = self._invoke(action, schema)
                try:
                    await task
                except Exception:  # failures are the SDK's to handle; the replay carries on
                    pass
        elif schema == Schema.V1:
            # One action set per execution; the replay moves on when any of its tasks finishes.
            for action_set in actions:
                tasks = [task for action in action_set if (task := self._invoke(action, schema)) is not _DONE]
                if tasks:
                    await when_any(tasks)
        else:
            raise ExtensionFault(  # sic, "of of"
                f'The OOProc schema of of version "{schema}" is unsupported by this durable-extension '
                "version."
            )

    def _invoke(self, action: dict[str, Any], schema: int) -> Future:
        """InvokeAPIFromAction: one action to one task (``_DONE`` for fire-and-forget)."""
        kind = action.get("actionType")
        if kind == ActionType.CALL_ACTIVITY:
            return spawn(self._call_activity(action.get("functionName"), action.get("input"), None))
        if kind == ActionType.CALL_ACTIVITY_WITH_RETRY:
            if action.get("retryOptions") is None:  # checked before the async call starts
                raise ExtensionFault("Value cannot be null. (Parameter 'retryOptions')")
            policy = RetryPolicy.from_json(action["retryOptions"])
            return spawn(self._call_activity(action.get("functionName"), action.get("input"), policy))
        if kind == ActionType.CREATE_TIMER:
            return self._create_timer(action, schema)
        if kind == ActionType.CONTINUE_AS_NEW:
            input_value = action.get("input")
            self.context.continue_as_new(None if input_value is None else dotnet_json(input_value))
            return _DONE
        if kind in (ActionType.WHEN_ALL, ActionType.WHEN_ANY):
            children = action.get("compoundActions")
            if children is None:
                raise ExtensionFault("Value cannot be null. (Parameter 'source')")
            tasks = [self._invoke(child, schema) for child in children]
            return when_all(tasks) if kind == ActionType.WHEN_ALL else when_any(tasks)
        if kind in set(ActionType):
            raise StandInLimit(f"the stand-in does not model {ActionType(kind).name} actions: {action}")
        raise ExtensionFault(f"Received an unexpected action type from the out-of-proc function: '${kind}'.")

    async def _call_activity(self, name: str | None, input_value: Any, policy: RetryPolicy | None) -> Any:
        """CallDurableTaskFunctionAsync: an ``async`` method, so its checks fault the task, not the replay."""
        fault = None
        if policy is not None and max(policy.max_retry_interval, policy.first_retry_interval) > MAXIMUM_DELAY:
            fault = TOO_LONG
        elif name is None or name not in self.activities:
            known = "', '".join(sorted(self.activities))
            fault = (
                f"The function '{name}' doesn't exist, is disabled, or is not an activity function. "
                f"Additional info: The following are the known activity functions: '{known}'."
            )
        if fault is not None or name is None:
            self.faults.append(fault or "")
            raise ExtensionFault(fault)
        if policy is None:
            return await self.context.schedule_task(name, input_value)
        return await self.context.schedule_with_retry(name, policy, input_value)

    def _create_timer(self, action: dict[str, Any], schema: int) -> Future:
        if "fireAt" not in action:
            raise StandInLimit(f"a CreateTimer action without fireAt: {action}")
        fire_at = parse_time(action["fireAt"])
        if fire_at - self.context.now > MAXIMUM_DELAY:
            if schema < Schema.V3:  # ThrowIfInvalidTimerLengthForStorageProvider, synchronous
                raise ExtensionFault(TOO_LONG)
            raise StandInLimit("the extension's own long-timer loop (a V3 timer past 6 days) is not modelled")
        timer_id, timer = self.context.create_timer(fire_at)
        if action.get("isCanceled"):
            self.context.cancel_timer(timer_id, timer)
        return timer


_DONE = completed()
