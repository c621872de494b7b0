"""Event Grid intake decisions, for every real payload in ../shared/real-world/eventgrid.

Decided: both schemas are accepted (Event Grid, CloudEvents 1.0, and the CloudEvents 0.1
shape the WebJobs extension still reads). ``data`` is read in the service's camelCase and
falls back to snake_case, so the azure-eventgrid SDK's snake_case mock is accepted too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

from shared.adapters.storage import Storage
from shared.dev.events import blob_created_event, post_events
from shared.errors import EventDeliveryError, UnknownEventType
from shared.events import (
    CaptureTarget,
    Decision,
    decide,
    envelopes,
    from_trigger,
    parse,
)
from shared.settings import AZURITE_CONNECTION, Settings

# Parses URLs only; no request is made.
STORAGE = Storage(Settings.from_env({"AzureWebJobsStorage": AZURITE_CONNECTION}).lake_storage)
OURS = CaptureTarget("devstoreaccount1", "capture", "")

SDK_BLOB = CaptureTarget("oc2d2817345i60006", "oc2d2817345i200097container", "")
SDK_SOURCE = "az://oc2d2817345i200097container/oc2d2817345i20002296blob"
DOCS_BLOB = CaptureTarget("my-storage-account", "testcontainer", "")
DOCS_CAPTURE = CaptureTarget("tf0831datamigrate", "windturbinecapture", "tfdatamigratens")
CAPTURE_SOURCE = "az://windturbinecapture/tfdatamigratens/hubdatamigration/1/2017/08/31/19/11/45.avro"
ADLS = CaptureTarget("my-storage-account", "my-file-system", "")

# file -> (schema, target that owns the file, action, source, size, etag, reason fragment)
EXPECTED: dict[str, tuple[str, CaptureTarget, str, str, int | None, str | None, str]] = {
    "azsdkpy_mocks_cloud_storage_dict_SNAKECASE_DATA.json": (
        "cloudevents",
        SDK_BLOB,
        "start",
        SDK_SOURCE,
        524288,
        "0x8D4BCC2E4835CD0",
        "committed",
    ),
    "azsdkpy_mocks_eg_storage_dict.json": (
        "eventgrid",
        SDK_BLOB,
        "start",
        SDK_SOURCE,
        524288,
        "0x8D4BCC2E4835CD0",
        "committed",
    ),
    "issue78843_real_PutBlob_contentLength0_eventgrid.json": (
        "eventgrid",
        OURS,
        "ignore",
        "",
        None,
        None,
        "does not parse",
    ),
    "msdocs_adls_BlobCreated_CreateFile_cloudevents_schema.json": (
        "cloudevents",
        ADLS,
        "ignore",
        "",
        None,
        None,
        "CreateFile does not commit",
    ),
    "msdocs_adls_BlobCreated_CreateFile_eventgrid_schema.json": (
        "eventgrid",
        ADLS,
        "ignore",
        "",
        None,
        None,
        "CreateFile does not commit",
    ),
    "msdocs_blob_BlobCreated_cloudevents_schema.json": (
        "cloudevents",
        DOCS_BLOB,
        "start",
        "az://testcontainer/new-file.txt",
        524288,
        "0x8D4BCC2E4835CD0",
        "committed",
    ),
    "msdocs_blob_BlobCreated_eventgrid_schema.json": (
        "eventgrid",
        DOCS_BLOB,
        "start",
        "az://testcontainer/new-file.txt",
        524288,
        "0x8D4BCC2E4835CD0",
        "committed",
    ),
    "msdocs_eventhub_CaptureFileCreated_cloudevents_schema.json": (
        "cloudevents",
        DOCS_CAPTURE,
        "start",
        CAPTURE_SOURCE,
        249168,
        None,
        "committed",
    ),
    "msdocs_eventhub_CaptureFileCreated_eventgrid_schema.json": (
        "eventgrid",
        DOCS_CAPTURE,
        "start",
        CAPTURE_SOURCE,
        249168,
        None,
        "committed",
    ),
    "webjobs_FakeData_CloudEventBackCompat_v0.1_BlobCreated.json": (
        "cloudevents",
        SDK_BLOB,
        "start",
        SDK_SOURCE,
        524288,
        "0x8D4BCC2E4835CD0",
        "committed",
    ),
    "webjobs_FakeData_CloudEvent_BlobCreated.json": (
        "cloudevents",
        SDK_BLOB,
        "start",
        SDK_SOURCE,
        524288,
        "0x8D4BCC2E4835CD0",
        "committed",
    ),
    "webjobs_FakeData_EventGridEvents_captureFileCreated_empty.json": (
        "eventgrid",
        CaptureTarget("shunsouthcentralus", "debugging", ""),
        "empty",
        "az://debugging/shunBlob.txt",
        0,
        None,
        "no events",
    ),
}


def load(real_world: Path, name: str) -> dict[str, Any]:
    events = envelopes(json.loads((real_world / "eventgrid" / name).read_text()))
    assert len(events) == 1
    return json.loads((real_world / "eventgrid" / name).read_text())


def single(body: Any) -> dict[str, Any]:
    return body[0] if isinstance(body, list) else body


def worker_decode(event: dict[str, Any]) -> Any:
    """What the Python worker hands the trigger for this event (its own converter)."""
    return EventGridEventInConverter.decode(meta.Datum(json.dumps(event), "json"), trigger_metadata={})


def test_every_real_payload_has_an_expectation(real_world: Path) -> None:
    assert sorted(p.name for p in (real_world / "eventgrid").glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_payload_is_decided_for_its_own_account(real_world: Path, name: str) -> None:
    schema, target, action, source, size, etag, reason = EXPECTED[name]
    event = single(load(real_world, name))
    envelope = parse(event)
    assert envelope.schema == schema
    decision = decide(envelope, target)
    assert (decision.action, decision.source, decision.size, decision.etag) == (action, source, size, etag)
    assert reason in decision.reason
    assert decision.event_id == envelope.id != ""


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_payload_for_another_account_is_acknowledged_and_ignored(real_world: Path, name: str) -> None:
    decision = decide(parse(single(load(real_world, name))), OURS)
    assert decision.action == "ignore"
    assert decision.source == ""


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_worker_decoded_event_gets_the_same_decision(real_world: Path, name: str) -> None:
    _, target, *_ = EXPECTED[name]
    event = single(load(real_world, name))
    direct = decide(parse(event), target)
    via_worker = decide(from_trigger(worker_decode(event)), target)
    assert (via_worker.action, via_worker.source, via_worker.size, via_worker.etag) == (
        direct.action,
        direct.source,
        direct.size,
        direct.etag,
    )


def ours(path: str = "ns/hub/0/2026/11/21/08/00/00.avro", **data: Any) -> dict[str, Any]:
    event = blob_created_event(STORAGE, f"az://capture/{path}", 4096, "0x8DC0FFEE")
    event["data"].update(data)
    return event


@pytest.mark.parametrize("api", ["PutBlob", "PutBlockList", "CopyBlob", "FlushWithClose", "SftpCommit"])
def test_committing_apis_start_a_batch(api: str) -> None:
    decision = decide(parse(ours(api=api)), OURS)
    assert decision == Decision(
        "start",
        "committed capture file",
        decision.event_id,
        "az://capture/ns/hub/0/2026/11/21/08/00/00.avro",
        4096,
        "0x8DC0FFEE",
    )


@pytest.mark.parametrize("api", ["CreateFile", "PutBlock", "", "AppendFile"])
def test_non_committing_apis_are_ignored(api: str) -> None:
    assert decide(parse(ours(api=api)), OURS).action == "ignore"


def test_zero_content_length_is_an_empty_batch() -> None:
    decision = decide(parse(ours(contentLength=0)), OURS)
    assert (decision.action, decision.size) == ("empty", 0)


def test_foreign_container_and_prefix_are_ignored() -> None:
    other_container = ours()
    other_container["data"]["url"] = other_container["data"]["url"].replace("/capture/", "/landing/")
    assert decide(parse(other_container), OURS).action == "ignore"
    prefixed = CaptureTarget("devstoreaccount1", "capture", "ns/hub")
    assert decide(parse(ours()), prefixed).action == "start"
    assert decide(parse(ours("other/hub/0/x.avro")), prefixed).action == "ignore"
    # "ns/hubby" is not under "ns/hub/".
    assert decide(parse(ours("ns/hubby/0/x.avro")), prefixed).action == "ignore"


@pytest.mark.parametrize("url", ["...", "", None, "ftp://x/y", "https://acct.blob.core.windows.net/"])
def test_unparseable_urls_are_ignored(url: Any) -> None:
    assert decide(parse(ours(url=url)), OURS).action == "ignore"


def test_local_capture_folder_matches_no_event(tmp_path: Path) -> None:
    settings = Settings.from_env({"AzureWebJobsStorage": AZURITE_CONNECTION, "CAPTURE_URI": str(tmp_path)})
    target = CaptureTarget.from_settings(settings)
    assert target is None
    assert decide(parse(ours()), target).action == "ignore"


def test_capture_target_comes_from_settings() -> None:
    settings = Settings.from_env(
        {"AzureWebJobsStorage": AZURITE_CONNECTION, "CAPTURE_URI": "az://capture/ns/hub"}
    )
    assert CaptureTarget.from_settings(settings) == CaptureTarget("devstoreaccount1", "capture", "ns/hub")


@pytest.mark.parametrize("kind", ["Microsoft.Storage.BlobDeleted", "Contoso.Items.ItemReceived", ""])
def test_unknown_event_type_fails_loudly(kind: str) -> None:
    event = ours()
    event["eventType"] = kind
    with pytest.raises(UnknownEventType, match="subscription"):
        decide(parse(event), OURS)


def test_subscription_validation_is_not_unknown() -> None:
    event = ours()
    event["eventType"] = "Microsoft.EventGrid.SubscriptionValidationEvent"
    assert decide(parse(event), OURS).action == "ignore"


def test_a_non_event_is_rejected() -> None:
    with pytest.raises(UnknownEventType):
        parse({"hello": "world"})


def test_post_events_reports_when_nothing_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.error

    settings = Settings.from_env({"AzureWebJobsStorage": AZURITE_CONNECTION, "CAPTURE_URI": "az://capture"})
    monkeypatch.setattr(
        "shared.dev.events._capture_blobs",
        lambda storage, root: iter(
            [type("Info", (), {"uri": "az://capture/a.avro", "size": 10, "etag": "0x1"})()]
        ),
    )

    def refused(request: Any) -> int:
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    with pytest.raises(EventDeliveryError, match=r"nothing is listening .*func start"):
        post_events(settings, send=refused, backoff=0.001)
