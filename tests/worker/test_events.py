"""The Event Grid trigger, invoked through the real worker with the host's TypedData (json).

Every real payload in ../shared/real-world/eventgrid (both schemas, and the CloudEvents 0.1
shape) goes through the worker's own converter into ``on_capture_event``; none of them names
this app's Azurite account, so each is acknowledged (the invocation succeeds) and logged as
ignored, with the reason. An event for a file landed in Azurite starts its orchestration on
the Durable stand-in, once, however it is redelivered.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from shared.app import App
from shared.dev.events import blob_created_event
from shared.dev.generator import generate_day
from shared.events import EVENT_FUNCTION
from shared.settings import Settings
from shared.uris import join
from tests.support.durable import FakeDurable
from tests.worker.harness import Invocation, Worker, json_data, string_data

pytestmark = pytest.mark.azurite

# file -> why the app ignores it (none names the app's Azurite account and capture container)
REAL_PAYLOADS = {
    "azsdkpy_mocks_cloud_storage_dict_SNAKECASE_DATA.json": "is outside devstoreaccount1/",
    "azsdkpy_mocks_eg_storage_dict.json": "is outside devstoreaccount1/",
    "issue78843_real_PutBlob_contentLength0_eventgrid.json": "url '...' does not parse",
    "msdocs_adls_BlobCreated_CreateFile_cloudevents_schema.json": "api CreateFile does not commit the blob",
    "msdocs_adls_BlobCreated_CreateFile_eventgrid_schema.json": "api CreateFile does not commit the blob",
    "msdocs_blob_BlobCreated_cloudevents_schema.json": "my-storage-account/testcontainer/new-file.txt",
    "msdocs_blob_BlobCreated_eventgrid_schema.json": "my-storage-account/testcontainer/new-file.txt",
    "msdocs_eventhub_CaptureFileCreated_cloudevents_schema.json": "tf0831datamigrate/windturbinecapture/",
    "msdocs_eventhub_CaptureFileCreated_eventgrid_schema.json": "tf0831datamigrate/windturbinecapture/",
    "webjobs_FakeData_CloudEventBackCompat_v0.1_BlobCreated.json": "is outside devstoreaccount1/",
    "webjobs_FakeData_CloudEvent_BlobCreated.json": "is outside devstoreaccount1/",
    "webjobs_FakeData_EventGridEvents_captureFileCreated_empty.json": "shunsouthcentralus/debugging/",
}


def deliver(worker: Worker, durable: FakeDurable, event: dict[str, Any]) -> Invocation:
    """One event as the Event Grid extension hands it to the host: a JObject, sent as json."""
    return worker.invoke(
        EVENT_FUNCTION, {"event": json_data(event), "client": string_data(durable.binding())}
    )


def intake_line(invocation: Invocation) -> str:
    lines = [log.message for log in invocation.logs if log.category == "shared.blueprints.event_grid"]
    assert len(lines) == 1, invocation
    return lines[0]


def landed_event(ops: App, settings: Settings, seed: int) -> tuple[str, dict[str, Any]]:
    capture = next(iter(generate_day(files=1, events_per_file=40, seed=seed)))
    uri = join(settings.capture_uri, f"events/{seed}/{capture.path}")
    ops.storage.write(uri, capture.data)
    info = ops.storage.info(uri)
    return uri, blob_created_event(ops.storage, uri, info.size, info.etag)


def as_cloud_event(event: dict[str, Any]) -> dict[str, Any]:
    """The same BlobCreated in the CloudEvents 1.0 schema, as a CloudEvents subscription sends it."""
    return {
        "specversion": "1.0",
        "id": event["id"],
        "type": event["eventType"],
        "source": event["topic"],
        "subject": event["subject"],
        "time": event["eventTime"],
        "data": event["data"],
    }


def test_every_real_payload_has_an_expected_outcome(real_world: Path) -> None:
    assert sorted(p.name for p in (real_world / "eventgrid").glob("*.json")) == sorted(REAL_PAYLOADS)


@pytest.mark.parametrize("name", sorted(REAL_PAYLOADS))
def test_real_payload_is_decoded_by_the_worker_and_acknowledged(
    name: str, real_world: Path, app_worker: Worker, durable: FakeDurable, ops: App
) -> None:
    body = json.loads((real_world / "eventgrid" / name).read_text())
    starts_before, batches_before = len(durable.starts), len(list(ops.states.list()))
    for event in body if isinstance(body, list) else [body]:
        outcome = deliver(app_worker, durable, event)
        assert (outcome.status, outcome.exception, outcome.return_value) == ("Success", None, None)
        kind = event.get("type") or event.get("eventType")
        # The worker reads ``id``: CloudEvents 0.1's ``eventID`` does not reach the function.
        event_id = event.get("id", "")
        line = intake_line(outcome)
        assert re.fullmatch(rf"event {re.escape(event_id)} \({re.escape(kind)}\): ignored  .+", line), line
        assert REAL_PAYLOADS[name] in line
    assert len(durable.starts) == starts_before
    assert len(list(ops.states.list())) == batches_before  # nothing registered


def test_event_for_a_landed_file_starts_its_batch_once_in_either_schema(
    app_worker: Worker, durable: FakeDurable, ops: App, worker_settings: Settings
) -> None:
    uri, event = landed_event(ops, worker_settings, seed=11)
    first = deliver(app_worker, durable, event)
    assert first.status == "Success", first
    assert "orchestration started" in intake_line(first)
    (batch_id,) = [iid for iid, ref in durable.starts if ref["source"] == uri]
    ref = durable.started(batch_id)[0]
    assert ref == {
        "batch_id": batch_id,
        "dataset": "user_activity",
        "source": uri,
        "size": event["data"]["contentLength"],
        "etag": event["data"]["eTag"],
    }

    # Redelivered, in the CloudEvents schema too, while the instance is pending: nothing new starts.
    for again in (event, as_cloud_event(event)):
        outcome = deliver(app_worker, durable, again)
        assert outcome.status == "Success", outcome
        assert f"skipped {batch_id} its orchestration is Pending" in intake_line(outcome)
    assert len(durable.started(batch_id)) == 1


def test_simultaneous_redeliveries_through_the_worker_start_one_orchestration(
    app_worker: Worker, durable: FakeDurable, ops: App, worker_settings: Settings
) -> None:
    uri, event = landed_event(ops, worker_settings, seed=12)
    sent = [
        app_worker.start_invocation(
            EVENT_FUNCTION, {"event": json_data(event), "client": string_data(durable.binding())}
        )
        for _ in range(5)
    ]
    outcomes = [app_worker.result(invocation_id) for invocation_id in sent]
    assert [o.status for o in outcomes] == ["Success"] * 5
    assert len([1 for _, ref in durable.starts if ref["source"] == uri]) == 1
    assert sum("orchestration started" in intake_line(o) for o in outcomes) == 1


def test_unknown_event_type_fails_the_invocation_loudly(
    app_worker: Worker, durable: FakeDurable, ops: App, worker_settings: Settings
) -> None:
    _, event = landed_event(ops, worker_settings, seed=13)
    event["eventType"] = "Microsoft.Storage.BlobTierChanged"
    outcome = deliver(app_worker, durable, event)
    assert outcome.status == "Failure"
    assert outcome.exception is not None and outcome.exception.startswith("UnknownEventType: ")
    assert any(log.level == "ERROR" and "UNKNOWN EVENT TYPE" in log.message for log in outcome.logs)
