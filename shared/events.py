"""Event Grid intake: parse an event in either schema and decide what it means for the lake.

Two event types matter:

- ``Microsoft.Storage.BlobCreated``: a blob was committed (``data.api`` one of
  ``COMMITTED_APIS``); ``CreateFile`` is ADLS Gen2 creating an empty file that a later
  ``FlushWithClose`` commits, so it is ignored. ``contentLength`` 0 is an EMPTY batch.
- ``Microsoft.EventHub.CaptureFileCreated`` (and its pre-GA name ``captureFileCreated``):
  ``fileUrl``, ``sizeInBytes`` and ``eventCount``; ``eventCount`` 0 is an EMPTY batch.

Both the Event Grid schema (``eventType``/``topic``) and CloudEvents 1.0 (``type``/
``source``) are accepted, as is the CloudEvents 0.1 shape the WebJobs extension still
reads (``cloudEventsVersion``/``eventID``). ``data`` keys are read in the service's
camelCase and, failing that, in snake_case: the service never sends snake_case, but the
azure-eventgrid SDK's own test mocks and ``as_dict()`` of its models do, and accepting
them costs one lookup.

An event for another account, container or prefix, or whose URL does not parse, is an
``ignore`` decision: the trigger logs it and acknowledges it, so Event Grid never retries
it. An event type outside those above raises ``UnknownEventType``: the subscription is
filtered to the two types, so anything else means the subscription drifted and the
invocation should fail where an operator sees it.

The local loop's event poster lives in ``shared.dev.events``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from shared.errors import NotABlobUri, UnknownEventType
from shared.settings import Settings
from shared.uris import account_of, is_remote, locate

log = logging.getLogger(__name__)

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
CAPTURE_FILE_CREATED = "Microsoft.EventHub.CaptureFileCreated"
# Event Hubs' name for the type before it reached GA; still in the WebJobs extension's fixtures.
LEGACY_CAPTURE_FILE_CREATED = "captureFileCreated"
# Handled by the Functions Event Grid extension before the function runs; harmless if seen.
SYSTEM_EVENT_TYPES = frozenset(
    {"Microsoft.EventGrid.SubscriptionValidationEvent", "Microsoft.EventGrid.SubscriptionDeletedEvent"}
)
# data.api values that mean the blob's content is committed and readable.
COMMITTED_APIS = frozenset({"PutBlob", "PutBlockList", "CopyBlob", "FlushWithClose", "SftpCommit"})

# What Capture writes: Avro, or Parquet from the Stream Analytics no-code editor.
CAPTURE_SUFFIXES = (".avro", ".parquet")

EVENT_FUNCTION = "on_capture_event"
"""Name of the Event Grid-triggered function (the ``functionName`` of its webhook)."""

Schema = Literal["eventgrid", "cloudevents"]
Action = Literal["start", "empty", "ignore"]


@dataclass(frozen=True, slots=True)
class Envelope:
    """One event, schema differences removed."""

    schema: Schema
    id: str
    type: str
    subject: str
    source: str
    """Event Grid ``topic`` or CloudEvents ``source``."""
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CaptureTarget:
    """Where Capture files land: the only blobs whose events start batches."""

    account: str
    container: str
    prefix: str

    @classmethod
    def from_settings(cls, settings: Settings) -> CaptureTarget | None:
        """The lake account plus CAPTURE_URI's container and prefix.

        Returns None when CAPTURE_URI is a local folder: no event can name it.
        """
        if not is_remote(settings.capture_uri):
            return None
        location = locate(settings.capture_uri, settings.lake_storage.name)
        return cls(settings.lake_storage.name, location.container, location.path.strip("/"))

    def covers(self, account: str | None, container: str, path: str) -> bool:
        """Whether a blob is one of ours: this account and container, under the prefix, and
        with no ``.`` or ``..`` segment that could name something else."""
        if account is None or account.lower() != self.account.lower() or container != self.container:
            return False
        if any(part in ("", ".", "..") for part in path.split("/")):
            return False
        return not self.prefix or path.startswith(self.prefix + "/")


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one event."""

    action: Action
    reason: str
    event_id: str = ""
    source: str = ""
    """The file as an ``az://container/path`` URI (empty when ignored)."""
    size: int | None = None
    etag: str | None = None
    """The blob's ETag without quotes; None when the event carries none (CaptureFileCreated)."""


# -- parsing ---------------------------------------------------------------------------------
def envelopes(body: Any) -> list[Envelope]:
    """Every event in a webhook body: one event object or an array of them."""
    items = body if isinstance(body, list) else [body]
    return [parse(item) for item in items]


def parse(event: Mapping[str, Any]) -> Envelope:
    """One event in the Event Grid, CloudEvents 1.0 or CloudEvents 0.1 schema.

    Raises:
        UnknownEventType: the object is not an event in any of those schemas.
    """
    if not isinstance(event, Mapping):
        raise UnknownEventType(f"not an event object: {type(event).__name__}")
    data = event.get("data")
    data = data if isinstance(data, Mapping) else {}
    if "specversion" in event:
        return Envelope(
            "cloudevents",
            str(event.get("id") or ""),
            str(event.get("type") or ""),
            str(event.get("subject") or ""),
            str(event.get("source") or ""),
            data,
        )
    if "cloudEventsVersion" in event:
        return Envelope(
            "cloudevents",
            str(event.get("eventID") or ""),
            str(event.get("eventType") or ""),
            str(event.get("subject") or ""),
            str(event.get("source") or ""),
            data,
        )
    if "eventType" in event:
        return Envelope(
            "eventgrid",
            str(event.get("id") or ""),
            str(event.get("eventType") or ""),
            str(event.get("subject") or ""),
            str(event.get("topic") or ""),
            data,
        )
    raise UnknownEventType(f"no event type in an event with keys {sorted(event)}")


def from_trigger(event: Any) -> Envelope:
    """The envelope of what the Functions worker hands the trigger.

    The worker gives a ``func.CloudEvent`` when the payload has ``specversion`` and a
    ``func.EventGridEvent`` otherwise (also for CloudEvents 0.1, whose id it drops).
    """
    if hasattr(event, "specversion"):
        return Envelope(
            "cloudevents",
            str(event.id or ""),
            str(event.type or ""),
            str(event.subject or ""),
            str(event.source or ""),
            _mapping(event.get_json()),
        )
    return Envelope(
        "eventgrid",
        str(event.id or ""),
        str(event.event_type or ""),
        str(event.subject or ""),
        str(event.topic or ""),
        _mapping(event.get_json()),
    )


# -- deciding --------------------------------------------------------------------------------
def decide(envelope: Envelope, target: CaptureTarget | None) -> Decision:
    """Whether an event starts a batch, records an EMPTY one, or is acknowledged and ignored.

    Args:
        envelope: The parsed event.
        target: Where Capture files land; None when CAPTURE_URI is local.

    Raises:
        UnknownEventType: the event type is neither BlobCreated nor CaptureFileCreated.
    """
    kind = envelope.type
    if kind in SYSTEM_EVENT_TYPES:
        return _ignore(envelope, f"{kind} is handled by the Event Grid extension")
    if kind == BLOB_CREATED:
        api = str(_field(envelope.data, "api") or "")
        if api not in COMMITTED_APIS:
            return _ignore(envelope, f"api {api or '(none)'} does not commit the blob")
        url, size = _field(envelope.data, "url"), _int_field(envelope.data, "contentLength")
        etag = _field(envelope.data, "eTag")
        empty = size == 0
    elif kind in (CAPTURE_FILE_CREATED, LEGACY_CAPTURE_FILE_CREATED):
        url, size, etag = _field(envelope.data, "fileUrl"), _int_field(envelope.data, "sizeInBytes"), None
        empty = _int_field(envelope.data, "eventCount") == 0
    else:
        raise UnknownEventType(
            f"event {envelope.id or '(no id)'} has type {kind!r}; this app handles only "
            f"{BLOB_CREATED} and {CAPTURE_FILE_CREATED}: check the Event Grid subscription's filter"
        )
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        return _ignore(envelope, f"url {url!r} does not parse")
    if target is None:
        return _ignore(envelope, "CAPTURE_URI is a local folder; no event can name it")
    try:
        location = locate(url, target.account)
        account = account_of(url)
    except NotABlobUri as exc:
        return _ignore(envelope, f"url does not parse: {exc}")
    if not target.covers(account, location.container, location.path):
        where = f"{account}/{location.container}/{location.path}"
        return _ignore(envelope, f"{where} is outside {target.account}/{target.container}/{target.prefix}")
    return Decision(
        "empty" if empty else "start",
        "no events in the file" if empty else "committed capture file",
        event_id=envelope.id,
        source=location.uri,
        size=size,
        etag=str(etag).strip('"') if etag else None,
    )


def _ignore(envelope: Envelope, reason: str) -> Decision:
    return Decision("ignore", reason, event_id=envelope.id)


def _mapping(value: Any) -> Mapping[str, Any]:
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return {}
    return value if isinstance(value, Mapping) else {}


def _field(data: Mapping[str, Any], name: str) -> Any:
    """``data[name]`` in the service's camelCase, else in snake_case (SDK models, mocks)."""
    if name in data:
        return data[name]
    return data.get(re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower())


def _int_field(data: Mapping[str, Any], name: str) -> int | None:
    value = _field(data, name)
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None
