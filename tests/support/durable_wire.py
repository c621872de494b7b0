"""The Durable host's wire format for out-of-process orchestrators, written down as data.

What the extension sends an out-of-process orchestrator (the context payload and its
history, in DTFx's JSON shape) and what it reads back (the orchestrator state). Read from
(facts only, nothing copied):

- azure-functions-durable-extension @ a7c6d694, ``src/WebJobs.Extensions.DurableTask/``:
  ``Bindings/OrchestrationTriggerAttributeBindingProvider.cs`` 219-242 (the payload);
  ``Listener/OutOfProcOrchestrationShim.cs`` 37-59 (schema and action enums), 281-340
  (reply classes); ``RetryOptionsConverter.cs`` 22-66 and ``RetryOptions.cs`` 18-31;
  ``AzureStorageDurabilityProvider.cs`` 68-70 (timer limits); ``Options/HttpOptions.cs`` 19;
  ``OutOfProcExceptionHelpers.cs`` 14 (the ``$OutOfProcData$`` label).
- Azure/durabletask @ 52170329, ``src/DurableTask.Core/``: ``History/EventType.cs``,
  ``History/*Event.cs`` (the ``[DataMember]`` fields), ``OrchestrationStatus.cs``,
  ``RetryOptions.cs`` 29-44, ``RetryInterceptor.cs`` 103-130.

The field set of each event is the one a real host sent (``shared/real-world/durable``,
captured 2019); later DTFx versions add trace-context fields (null unless distributed
tracing is on) that the Python SDK ignores.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final

# AzureStorageDurabilityProvider.cs 68-70, HttpOptions.cs 19.
MAXIMUM_DELAY: Final = timedelta(days=6)
LONG_TIMER_INTERVAL: Final = timedelta(days=3)
HTTP_ASYNC_SLEEP_MS: Final = 30_000
# The extension's RetryOptions sets this instead of DTFx's TimeSpan.MaxValue (RetryOptions.cs 18, 31).
DEFAULT_MAX_RETRY_INTERVAL: Final = timedelta(days=6)
OUT_OF_PROC_DATA: Final = "\n\n$OutOfProcData$:"


class Schema(enum.IntEnum):
    """OOProc replay schema (``OutOfProcOrchestrationShim.SchemaVersion``).

    V1 is what an extension before #1836 (2021) sent: no schema field at all. V2 is
    ``upperSchemaVersion: 1`` alone (#1836 to #2134, 2021-2022). V3 is today's payload:
    ``upperSchemaVersion: 1`` kept for SDKs 1.1.0-1.1.3, ``upperSchemaVersionNew: 2`` and
    the long-timer settings (#2134, #2146).
    """

    V1 = 0
    V2 = 1
    V3 = 2

    def __str__(self) -> str:  # test ids read V1, V2, V3
        return self.name


class EventType(enum.IntEnum):
    """DTFx ``History/EventType.cs``: a C# enum numbered from 0 in declaration order."""

    EXECUTION_STARTED = 0
    EXECUTION_COMPLETED = 1
    EXECUTION_FAILED = 2
    EXECUTION_TERMINATED = 3
    TASK_SCHEDULED = 4
    TASK_COMPLETED = 5
    TASK_FAILED = 6
    SUB_ORCHESTRATION_INSTANCE_CREATED = 7
    SUB_ORCHESTRATION_INSTANCE_COMPLETED = 8
    SUB_ORCHESTRATION_INSTANCE_FAILED = 9
    TIMER_CREATED = 10
    TIMER_FIRED = 11
    ORCHESTRATOR_STARTED = 12
    ORCHESTRATOR_COMPLETED = 13
    EVENT_SENT = 14
    EVENT_RAISED = 15
    CONTINUE_AS_NEW = 16


class OrchestrationStatus(enum.IntEnum):
    """DTFx ``OrchestrationStatus.cs``; Newtonsoft writes it as its number."""

    RUNNING = 0
    COMPLETED = 1
    CONTINUED_AS_NEW = 2
    FAILED = 3
    CANCELED = 4
    TERMINATED = 5
    PENDING = 6
    SUSPENDED = 7


class ActionType(enum.IntEnum):
    """``OutOfProcOrchestrationShim.AsyncActionType``: every action the extension knows."""

    CALL_ACTIVITY = 0
    CALL_ACTIVITY_WITH_RETRY = 1
    CALL_SUB_ORCHESTRATOR = 2
    CALL_SUB_ORCHESTRATOR_WITH_RETRY = 3
    CONTINUE_AS_NEW = 4
    CREATE_TIMER = 5
    WAIT_FOR_EXTERNAL_EVENT = 6
    CALL_ENTITY = 7
    CALL_HTTP = 8
    SIGNAL_ENTITY = 9
    SCHEDULED_SIGNAL_ENTITY = 10
    WHEN_ANY = 11
    WHEN_ALL = 12


# -- values as .NET writes them -----------------------------------------------------------------
def dotnet_json(value: Any) -> str:
    """Newtonsoft's compact serialisation (``Formatting.None``; non-ASCII left as is)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def dotnet_time(moment: datetime) -> str:
    """A UTC DateTime as Newtonsoft writes it: ``yyyy-MM-ddTHH:mm:ss.FFFFFFFZ`` (zeros trimmed)."""
    fraction = f"{moment.microsecond:06d}0".rstrip("0")
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


def parse_time(text: str) -> datetime:
    """A DateTime from the history or an action (the SDK writes ``%Y-%m-%dT%H:%M:%S.%fZ``)."""
    return datetime.fromisoformat(text)


def dotnet_timespan(span: timedelta) -> str:
    """A TimeSpan as Newtonsoft writes it (the "c" format): ``[d.]hh:mm:ss[.fffffff]``."""
    whole = int(span.total_seconds())
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    text = (f"{days}." if days else "") + f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    return text + (f".{span.microseconds * 10:07d}" if span.microseconds else "")


# -- history events --------------------------------------------------------------------------------
def event(kind: EventType, at: datetime, *, event_id: int = -1, **fields: Any) -> dict[str, Any]:
    """One history event: its own ``[DataMember]`` fields, then HistoryEvent's (as recorded)."""
    return {
        "EventType": int(kind),
        **fields,
        "EventId": event_id,
        "IsPlayed": False,
        "Timestamp": dotnet_time(at),
    }


def execution_started(
    at: datetime, *, instance_id: str, execution_id: str, name: str, input_json: str | None
) -> dict[str, Any]:
    """ExecutionStartedEvent; ``input_json`` is the input exactly as the client serialised it."""
    instance = {"InstanceId": instance_id, "ExecutionId": execution_id}
    return event(
        EventType.EXECUTION_STARTED,
        at,
        OrchestrationInstance=instance,
        ParentInstance=None,
        Name=name,
        Version="",
        Input=input_json,
        Tags=None,
    )


def payload(
    schema: Schema, history: list[dict[str, Any]], *, input_value: Any, instance_id: str, replaying: bool
) -> dict[str, Any]:
    """The orchestration-trigger payload the extension hands the worker, for ``schema``.

    ``input`` is a JSON value, not text: the extension parses the raw input into a JToken
    (``GetInputAsJson``) before writing it (binding provider 221, 232).
    """
    body: dict[str, Any] = {
        "history": history,
        "input": input_value,
        "instanceId": instance_id,
        "isReplaying": replaying,
        "parentInstanceId": None,
    }
    if schema >= Schema.V2:
        body["upperSchemaVersion"] = int(Schema.V2)
    if schema >= Schema.V3:
        body["upperSchemaVersionNew"] = int(Schema.V3)
        body["longRunningTimerIntervalDuration"] = dotnet_timespan(LONG_TIMER_INTERVAL)
        body["maximumShortTimerDuration"] = dotnet_timespan(MAXIMUM_DELAY)
        body["defaultHttpAsyncRequestSleepTimeMillseconds"] = (
            HTTP_ASYNC_SLEEP_MS  # sic, as the host spells it
        )
    return body


# -- the worker's reply ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Reply:
    """``OutOfProcOrchestratorState``: what the extension reads back from one invocation.

    ``raw`` is None when the worker failed without the out-of-proc state attached.
    """

    is_done: bool
    actions: list[list[dict[str, Any]]]
    schema: int
    output: Any = None
    error: str | None = None
    custom_status: Any = None
    raw: dict[str, Any] | None = field(default=None, compare=True)

    @classmethod
    def decode(cls, returned: str | Exception) -> Reply:
        """Read the worker's answer: a JSON string, or an exception carrying ``$OutOfProcData$``.

        A failed Python orchestrator raises with its state appended after the label; the
        extension cuts it out (``OutOfProcExceptionHelpers.TryExtractOutOfProcStateJson``).
        """
        if isinstance(returned, Exception):
            message = str(returned)
            if OUT_OF_PROC_DATA not in message:
                return cls(is_done=False, actions=[], schema=int(Schema.V1), error=message)
            returned = message.split(OUT_OF_PROC_DATA, 1)[1]
        raw = json.loads(returned)
        return cls(
            is_done=bool(raw.get("isDone", False)),
            actions=raw.get("actions") or [],
            # schemaVersion is absent in V1 replies; the host then assumes Original (shim 298-301).
            schema=int(raw.get("schemaVersion", Schema.V1)),
            output=raw.get("output"),
            error=raw.get("error") or None,
            custom_status=raw.get("customStatus"),
            raw=raw,
        )

    def leaf_actions(self) -> Iterator[dict[str, Any]]:
        """Every action, compound ones (WhenAll/WhenAny) opened up, in order."""

        def leaves(action: dict[str, Any]) -> Iterator[dict[str, Any]]:
            if action.get("actionType") in (ActionType.WHEN_ALL, ActionType.WHEN_ANY):
                for child in action.get("compoundActions") or []:
                    yield from leaves(child)
            else:
                yield action

        for group in self.actions:
            for action in group:
                yield from leaves(action)


# -- retry options -------------------------------------------------------------------------------
class InvalidRetryOptions(ValueError):
    """What RetryOptionsConverter or DTFx's RetryOptions constructor would throw."""


@dataclass(frozen=True)
class RetryPolicy:
    """The retry options the extension builds from an action's ``retryOptions`` object."""

    first_retry_interval: timedelta
    max_number_of_attempts: int
    backoff_coefficient: float = 1.0  # DTFx RetryOptions.cs 41
    max_retry_interval: timedelta = DEFAULT_MAX_RETRY_INTERVAL
    retry_timeout: timedelta | None = None  # None: TimeSpan.MaxValue, no timeout

    @classmethod
    def from_json(cls, obj: Any) -> RetryPolicy:
        """RetryOptionsConverter.ReadJson: two required fields, three optional ones, any schema.

        The converter reads ``backoffCoefficient`` as a double and the two intervals and the
        timeout as ints of milliseconds; every other key is ignored.
        """
        if not isinstance(obj, dict):
            raise InvalidRetryOptions("retryOptions must be a JSON object")
        for required in ("firstRetryIntervalInMilliseconds", "maxNumberOfAttempts"):
            if required not in obj:
                raise InvalidRetryOptions(f"Invalid JSON. Must contain field {required}")
        first = timedelta(milliseconds=round(float(obj["firstRetryIntervalInMilliseconds"])))
        if first <= timedelta(0):
            raise InvalidRetryOptions(
                "Invalid interval.  Specify a TimeSpan value greater then TimeSpan.Zero."
            )
        policy = cls(first, round(float(obj["maxNumberOfAttempts"])))
        if "backoffCoefficient" in obj:
            policy = replace(policy, backoff_coefficient=float(obj["backoffCoefficient"]))
        if "maxRetryIntervalInMilliseconds" in obj:
            ms = round(float(obj["maxRetryIntervalInMilliseconds"]))
            policy = replace(policy, max_retry_interval=timedelta(milliseconds=ms))
        if "retryTimeoutInMilliseconds" in obj:
            ms = round(float(obj["retryTimeoutInMilliseconds"]))
            policy = replace(policy, retry_timeout=timedelta(milliseconds=ms))
        return policy

    def next_delay(self, attempt: int, first_attempt: datetime, now: datetime) -> timedelta:
        """RetryInterceptor.ComputeNextDelay: first * coefficient**attempt, capped; zero past the timeout.

        ``attempt`` counts from 0 (the delay after the first failure). Every failure is
        retried: the options the converter builds keep DTFx's ``Handle = e => true``.
        """
        if self.retry_timeout is not None and now >= first_attempt + self.retry_timeout:
            return timedelta(0)
        ms = self.first_retry_interval / timedelta(milliseconds=1) * self.backoff_coefficient**attempt
        cap = self.max_retry_interval / timedelta(milliseconds=1)
        return timedelta(milliseconds=ms) if ms < cap else self.max_retry_interval
