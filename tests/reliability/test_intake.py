"""Events and poison files: each file's batch starts once, ends once, and stops being retried.

Deliveries go through the Event Grid trigger with the real ``DurableOrchestrationClient``
against the extension's HTTP stand-in (``tests.support.durable``); batches run through
the real orchestrator, played by the Durable host stand-in (``tests.support.durable_host``)
with the real activity functions, so the retry policy, the attempts and ``fail_batch``
are the ones Azure would run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest

from shared import blueprints, layers
from shared.adapters import ledger
from shared.app import App
from shared.batches import FAIL_ACTIVITY, ORCHESTRATOR, RETRY, Layer, State
from shared.blueprints import activities, event_grid
from shared.dev.events import blob_created_event
from shared.dev.generator import generate_day
from shared.errors import TransientError
from shared.events import parse
from shared.orchestration import run_batch
from shared.uris import join
from tests.reliability.audit import report
from tests.reliability.conftest import settings_on
from tests.reliability.emulator import Emulator
from tests.reliability.inputs import mixed_file
from tests.reliability.steps import land
from tests.support.durable import FakeDurable
from tests.support.durable_host import ActivityCall, DurableHost, Instance, Raises, Returns
from tests.support.durable_wire import OrchestrationStatus

pytestmark = pytest.mark.azurite

ACTIVITIES = {
    **{
        layer.activity: fn
        for layer, fn in zip(
            Layer,
            (
                activities.validate_batch,
                activities.write_bronze,
                activities.merge_silver,
                activities.update_gold,
            ),
            strict=True,
        )
    },
    FAIL_ACTIVITY: activities.fail_batch,
}


@pytest.fixture
def app(up: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    """The Function app's own ``App`` (what the triggers use), on this test's containers."""
    s = settings_on(up.connection_string, tmp_path)
    for name, value in {
        "AzureWebJobsStorage": s.host_storage.connection_string,
        "LAKE_URI": s.lake_uri,
        "CAPTURE_URI": s.capture_uri,
        "QUARANTINE_URI": s.quarantine_uri,
        "BATCH_STATE_TABLE": s.state_table,
        "OPERATIONS_TABLE": s.operations_table,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LAKE_STORAGE", raising=False)
    blueprints.app.cache_clear()
    yield blueprints.app()
    blueprints.app.cache_clear()


def event_for(app: App, uri: str, event_id: str = "e") -> func.EventGridEvent:
    info = app.storage.info(uri)
    event = blob_created_event(app.storage, uri, info.size, info.etag)
    return func.EventGridEvent(
        id=event_id,
        data=event["data"],
        topic=event["topic"],
        subject=event["subject"],
        event_type=event["eventType"],
        event_time=None,
        data_version="",
    )


def deliver(loop: asyncio.AbstractEventLoop, durable: FakeDurable, *events: func.EventGridEvent) -> list[Any]:
    trigger = event_grid.on_capture_event.build().get_user_function()

    async def at_once() -> list[Any]:
        return await asyncio.gather(
            *(trigger(event=e, client=durable.binding()) for e in events), return_exceptions=True
        )

    return loop.run_until_complete(at_once())


#: The ``context`` the worker passes an activity; the host sent no trace context here.
INVOCATION = SimpleNamespace(trace_context=SimpleNamespace(trace_parent="", trace_state="", attributes={}))


def play(ref: dict[str, Any]) -> Instance:
    """The batch's orchestration, as the host runs it, with the real activities."""

    def activity(call: ActivityCall) -> Returns | Raises:
        function = ACTIVITIES[call.name].build().get_user_function()
        try:
            argument = "failure" if call.name == FAIL_ACTIVITY else "batch"
            return Returns(function(**{argument: call.input}, context=INVOCATION))
        except Exception as exc:  # the worker reports it to the host as the activity's failure
            return Raises(f"{type(exc).__name__}: {exc}")

    host = DurableHost(
        df.Orchestrator.create(run_batch),
        dict.fromkeys(ACTIVITIES, activity),
        name=ORCHESTRATOR,
        instance_id=ref["batch_id"],
    )
    return host.run(ref)


def test_five_copies_of_an_event_at_once_start_one_batch(
    app: App, durable: FakeDurable, loop: asyncio.AbstractEventLoop
) -> None:
    files = [mixed_file(f"ns/hub/{i}/2026/11/21/12/00/00.ndjson", 50, seed=70 + i) for i in range(3)]
    for file in files:
        uri = land(app.context, file).source
        copies = [event_for(app, uri, event_id=f"copy-{n}") for n in range(5)]
        assert deliver(loop, durable, *copies) == [None] * 5
    started = [batch_id for batch_id, _ in durable.starts]
    assert len(started) == len(set(started)) == len(files)
    report("5 copies of each event at once", concurrent=5, batches=len(files))


def test_an_event_for_a_blob_already_deleted_is_acknowledged_as_gone_and_not_retried(
    app: App, durable: FakeDurable, loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    uri = land(app.context, mixed_file("ns/hub/0/2026/11/21/13/00/00.ndjson", 10, seed=80)).source
    event = event_for(app, uri)
    app.storage.delete(uri)
    outcome = loop.run_until_complete(app.intake.event(parse(_wire(event)), _Unused()))
    assert (outcome.action, outcome.source) == ("ignored", uri)
    assert outcome.reason.endswith("no longer exists")
    with caplog.at_level(logging.WARNING):
        assert deliver(loop, durable, event) == [None]  # acknowledged: Event Grid does not retry it
    assert durable.starts == []
    assert any("no longer exists" in r.getMessage() for r in caplog.records)
    report("event for a deleted blob (404)", bad_inputs=1)


def test_an_unreadable_file_is_quarantined_once_and_its_retries_stop(
    app: App, durable: FakeDurable, loop: asyncio.AbstractEventLoop
) -> None:
    truncated = next(
        f for f in generate_day(files=4, events_per_file=50, defect_rate=0.1, seed=9) if f.kind == "truncated"
    )
    uri = join(app.settings.capture_uri, truncated.path)
    app.storage.write(uri, truncated.data)
    event = event_for(app, uri)
    deliver(loop, durable, event, event)
    ((batch_id, ref),) = durable.starts
    instance = play(ref)
    assert instance.status is OrchestrationStatus.COMPLETED
    assert [c.name for c in instance.calls] == [Layer.VALIDATE.activity]  # once: a permanent outcome
    batch = app.states.find(batch_id)
    assert batch is not None and batch.state is State.QUARANTINED and batch.error
    assert batch.error.startswith("avro: truncated")
    moved = join(app.settings.quarantine_uri, truncated.path)
    assert app.storage.read_bytes(moved) == truncated.data and not app.storage.exists(uri)
    # Redelivered: the file is gone from the landing container, so nothing starts again.
    assert deliver(loop, durable, event) == [None]
    assert len(durable.starts) == 1
    report("truncated Capture file (poison)", bad_inputs=1, faults=0, batches=1)


def test_a_file_that_fails_the_same_way_every_time_ends_failed_with_the_reason_and_retries_stop(
    app: App, durable: FakeDurable, loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = mixed_file("ns/hub/1/2026/11/21/13/00/00.ndjson", 30, seed=81)
    uri = land(app.context, file).source
    real = layers.WORK[Layer.SILVER]
    poison = app.states.find(_only(app)).batch_id  # type: ignore[union-attr]

    def chokes(ctx: Any, batch: Any) -> Any:
        if batch.batch_id == poison:
            raise TransientError("the same failure on this file, every time")
        return real(ctx, batch)

    monkeypatch.setitem(layers.WORK, Layer.SILVER, chokes)
    deliver(loop, durable, event_for(app, uri))
    ((_, ref),) = durable.starts
    instance = play(ref)
    assert instance.status is OrchestrationStatus.COMPLETED
    calls = [c.name for c in instance.calls]
    assert calls.count(Layer.SILVER.activity) == RETRY.attempts and calls[-1] == FAIL_ACTIVITY
    batch = app.states.find(poison)
    assert batch is not None and batch.state is State.FAILED and batch.error
    assert "silver failed after 5 attempts" in batch.error and "every time" in batch.error
    durable.finish(ref["batch_id"], instance.custom_status)
    deliver(loop, durable, event_for(app, uri, "later"))  # a redelivery does not restart it
    # Nor one days later, when the instance's history is purged and the start claim is stale:
    # the batch's own state says it is done with.
    durable.instances.pop(ref["batch_id"])
    monkeypatch.setattr(ledger, "CLAIM_STALE_AFTER", dt.timedelta(0))
    deliver(loop, durable, event_for(app, uri, "much later"))
    assert len(durable.starts) == 1
    report("file failing silver every time (poison)", bad_inputs=1, faults=RETRY.attempts, batches=1)


def _only(app: App) -> str:
    (batch,) = list(app.states.list(lake=app.settings.lake_uri))
    return batch.batch_id


def _wire(event: func.EventGridEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "eventType": event.event_type,
        "subject": event.subject,
        "topic": event.topic,
        "data": event.get_json(),
    }


class _Unused:
    """A Durable client the path under test must never reach."""

    async def start_new(self, *args: Any, **kwargs: Any) -> str:
        raise AssertionError("started")

    async def get_status(self, instance_id: str) -> Any:
        raise AssertionError("asked")
