"""The Event Grid subscription's filter and the trigger's own checks agree on every real event.

infra/eventing.bicep filters what Event Grid delivers; ``shared.events.decide`` decides what a
delivered event means. They must agree: an event the filter lets through starts a batch, and an
event the trigger would start a batch for gets through the filter. The filter is read from the
Bicep and evaluated here as Event Grid evaluates it (see Event Grid's "event filtering" docs:
event types, subject prefix with ``isSubjectCaseSensitive``, advanced filters ANDed, string
comparisons case-insensitive, a missing key or a value of another type never matching).

Written against main's ``decide(envelope, target)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from shared import events
from shared.errors import NotABlobUri
from shared.uris import account_of, locate
from tests.conftest import REAL_WORLD
from tests.infra.bicep import Scope, resource

EVENTING = "eventing.bicep"


# -- Event Grid's side ---------------------------------------------------------------------------
def _lookup(event: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    node: Any = event
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _advanced(rule: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    present, value = _lookup(event, rule["key"])
    if not present:
        return False
    match rule["operatorType"]:
        case "StringIn":
            return isinstance(value, str) and value.casefold() in {v.casefold() for v in rule["values"]}
        case "NumberGreaterThan":
            return _is_number(value) and value > rule["value"]
        case other:
            raise AssertionError(f"the test does not evaluate {other} yet: add it before using it in Bicep")


_FILTER_KEYS = {"includedEventTypes", "subjectBeginsWith", "isSubjectCaseSensitive", "advancedFilters"}


def _kind(event: Mapping[str, Any]) -> str:
    return str(event.get("eventType") or event.get("type") or "")


def delivers(subscription_filter: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """Whether Event Grid delivers ``event`` through ``subscription_filter``."""
    unread = set(subscription_filter) - _FILTER_KEYS
    assert not unread, f"the test does not evaluate {sorted(unread)} yet: add it before using it in Bicep"
    if _kind(event).casefold() not in {t.casefold() for t in subscription_filter["includedEventTypes"]}:
        return False
    subject, prefix = str(event.get("subject") or ""), subscription_filter.get("subjectBeginsWith", "")
    if not subscription_filter.get("isSubjectCaseSensitive", False):
        subject, prefix = subject.casefold(), prefix.casefold()
    if not subject.startswith(prefix):
        return False
    return all(_advanced(rule, event) for rule in subscription_filter.get("advancedFilters", []))


def subscription(bicep: Mapping[str, Any], **params: Any) -> Mapping[str, Any]:
    """eventing.bicep's subscription filter, evaluated with the given deployment parameters."""
    scope = Scope(bicep[EVENTING], params)
    return scope.value(resource(bicep[EVENTING], "subscription")["properties"]["filter"])


# -- the samples ---------------------------------------------------------------------------------
def real_events(storage: bool) -> list[Any]:
    """The real-world samples: those the lake's system topic could publish, or the others."""
    folder = REAL_WORLD / "eventgrid"
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        body = json.loads(path.read_text())
        for index, event in enumerate(body if isinstance(body, list) else [body]):
            if _kind(event).startswith("Microsoft.Storage.") == storage:
                found.append(pytest.param(event, id=f"{path.stem}[{index}]"))
    return found


def _blob(event: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(account, container, path) of the blob the event's data names, or None."""
    data = event.get("data") or {}
    url = data.get("url") or data.get("fileUrl")
    if not isinstance(url, str):
        return None
    try:
        location = locate(url)
    except NotABlobUri:
        return None
    account = account_of(url)
    return (account, location.container, location.path) if account else None


def _as_the_service_sends_it(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """The event with the subject Event Grid derives from the same blob as data.url.

    Several samples were written by hand: msdocs' blob sample names container ``test-container``
    in its subject and ``testcontainer`` in its url, the WebJobs fakes carry ``eventhubs/test`` or
    no subject at all. The service derives both from the one blob, so the filter is evaluated on
    the subject it would send.
    """
    blob = _blob(event)
    if blob is None:
        return event
    _, container, path = blob
    return {**event, "subject": f"/blobServices/default/containers/{container}/blobs/{path}"}


def _targets(blob: tuple[str, str, str] | None) -> Iterator[tuple[str, str, str]]:
    """(account, container, prefix) targets to compare under: the event's own container with and
    without its folder, near misses (a prefix that is not a folder, the folder in another case,
    another container) and the Bicep default."""
    if blob is None:
        yield "unknown", "capture", ""
        return
    account, container, path = blob
    yield account, container, ""
    folder = path.split("/")[0] if "/" in path else ""
    if folder:
        yield account, container, folder
        yield account, container, folder[:-1]
        if folder.swapcase() != folder:
            yield account, container, folder.swapcase()
    yield account, container + "x", ""
    yield account, "capture", ""


def _in_service_format(event: Mapping[str, Any]) -> bool:
    data = event.get("data") or {}
    return not any("_" in key for key in data)


def assert_agree(bicep: Mapping[str, Any], event: Mapping[str, Any], target: tuple[str, str, str]) -> None:
    """The filter delivers ``event`` exactly when the trigger would start a batch for it."""
    account, container, prefix = target
    through = delivers(subscription(bicep, captureContainer=container, capturePrefix=prefix), event)
    decision = events.decide(events.parse(event), events.CaptureTarget(account, container, prefix))
    assert through == (decision.action == "start"), (
        f"container={container!r} prefix={prefix!r}: the filter {'delivers' if through else 'drops'} "
        f"{event.get('subject')!r} but the trigger decides {decision.action} ({decision.reason})"
    )


# -- the tests -----------------------------------------------------------------------------------
@pytest.mark.parametrize("event", real_events(storage=True))
def test_filter_and_trigger_agree_on_real_storage_events(
    bicep: Mapping[str, Any], real_world: Path, event: Mapping[str, Any]
) -> None:
    if not _in_service_format(event):
        pytest.skip(
            "data keys in snake_case: the azure-eventgrid SDK's as_dict() form, never sent by the service"
        )
    sent = _as_the_service_sends_it(event)
    for target in _targets(_blob(event)):
        assert_agree(bicep, sent, target)


@pytest.mark.parametrize("event", real_events(storage=False))
def test_real_events_from_other_sources_never_pass_the_filter(
    bicep: Mapping[str, Any], real_world: Path, event: Mapping[str, Any]
) -> None:
    # CaptureFileCreated comes from an Event Hubs namespace's topic, which infra/ does not subscribe to.
    assert not delivers(subscription(bicep, captureContainer="capture", capturePrefix=""), event)


def test_real_samples_include_events_the_filter_lets_through(
    bicep: Mapping[str, Any], real_world: Path
) -> None:
    # Guards the agreement test against passing because every sample is dropped.
    verdicts = [
        delivers(
            subscription(bicep, captureContainer=blob[1], capturePrefix=""), _as_the_service_sends_it(event)
        )
        for event in (param.values[0] for param in real_events(storage=True))
        if (blob := _blob(event)) and _in_service_format(event)
    ]
    assert any(verdicts) and not all(verdicts)


def _blob_created(container: str, path: str, api: str, length: int) -> dict[str, Any]:
    """A BlobCreated event as the service sends it (Event Grid schema)."""
    return {
        "id": "1",
        "eventType": events.BLOB_CREATED,
        "topic": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/stlake",
        "subject": f"/blobServices/default/containers/{container}/blobs/{path}",
        "data": {
            "api": api,
            "contentLength": length,
            "eTag": "0x8DC0",
            "url": f"https://stlake.blob.core.windows.net/{container}/{path}",
        },
    }


@pytest.mark.parametrize("api", sorted(events.COMMITTED_APIS | {"CreateFile", "PutBlock"}))
@pytest.mark.parametrize("length", [0, 1, 99_000_000])
@pytest.mark.parametrize(
    "container,path",
    [
        ("capture", "ns/hub/0/2025/01/01/00/00/00.avro"),
        ("capture", "ns-old/hub/0/2025/01/01/00/00/00.avro"),
        ("capture", "NS/hub/0/2025/01/01/00/00/00.avro"),
        ("capture2", "ns/hub/0/2025/01/01/00/00/00.avro"),
    ],
)
@pytest.mark.parametrize("prefix", ["", "ns"])
def test_filter_and_trigger_agree_around_every_rule(
    bicep: Mapping[str, Any], api: str, length: int, container: str, path: str, prefix: str
) -> None:
    assert_agree(bicep, _blob_created(container, path, api, length), ("stlake", "capture", prefix))


def test_the_filter_takes_blob_creations_by_the_apis_the_trigger_counts_as_committed(
    bicep: Mapping[str, Any],
) -> None:
    taken = subscription(bicep, captureContainer="capture", capturePrefix="")
    # The one storage event that starts batches; the trigger fails loudly on any other type.
    assert taken["includedEventTypes"] == [events.BLOB_CREATED]
    rules = taken["advancedFilters"]
    (api,) = [rule for rule in rules if rule["key"] == "data.api"]
    assert api["operatorType"] == "StringIn"
    assert sorted(api["values"]) == sorted(events.COMMITTED_APIS)


def test_the_subscription_delivers_to_the_trigger_function(bicep: Mapping[str, Any]) -> None:
    tree = bicep[EVENTING]
    assert tree["parameters"]["functionName"]["default"] == events.EVENT_FUNCTION
    destination = resource(tree, "subscription")["properties"]["destination"]
    assert destination["endpointType"] == "AzureFunction"
    assert destination["properties"]["resourceId"] == "${site.id}/functions/${functionName}"


def test_undeliverable_events_are_dead_lettered_with_the_topic_identity(bicep: Mapping[str, Any]) -> None:
    properties = resource(bicep[EVENTING], "subscription")["properties"]
    dead_letter = properties["deadLetterWithResourceIdentity"]
    assert dead_letter["identity"] == {"type": "SystemAssigned"}
    assert dead_letter["deadLetterDestination"]["endpointType"] == "StorageBlob"
    assert "deadLetterDestination" not in properties
    assert Scope(bicep[EVENTING]).value(properties["retryPolicy"]) == {
        "maxDeliveryAttempts": 30,
        "eventTimeToLiveInMinutes": 1440,
    }
