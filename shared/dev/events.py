"""The local loop's stand-in for Event Grid: post BlobCreated events to ``func start``.

Event Grid cannot reach a Functions host on localhost, so ``python -m shared events``
posts the events Event Grid would send for the Capture blobs already in Azurite, to the
host's Event Grid webhook (``/runtime/webhooks/EventGrid?functionName=...``).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from shared.adapters.storage import Storage, is_remote, join
from shared.errors import EventDeliveryError
from shared.events import BLOB_CREATED, CAPTURE_SUFFIXES, EVENT_FUNCTION
from shared.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_HOST_URL = "http://localhost:7071"


def blob_created_event(storage: Storage, uri: str, size: int, etag: str) -> dict[str, Any]:
    """The Event Grid-schema BlobCreated event the service would send for a blob."""
    location = storage.locate(uri)
    path = quote(location.path)
    return {
        "id": str(uuid.uuid4()),
        "topic": (
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local/providers/"
            f"Microsoft.Storage/storageAccounts/{storage.account.name}"
        ),
        "subject": f"/blobServices/default/containers/{location.container}/blobs/{path}",
        "eventType": BLOB_CREATED,
        "eventTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "data": {
            "api": "PutBlockList",
            "eTag": etag,
            "contentType": "application/octet-stream",
            "contentLength": size,
            "blobType": "BlockBlob",
            "url": f"{storage.account.blob_uri}/{location.container}/{path}",
            "sequencer": f"{int(time.time() * 1000):032x}",
        },
        "dataVersion": "",
        "metadataVersion": "1",
    }


def post_events(
    settings: Settings,
    prefix: str | None = None,
    url: str = DEFAULT_HOST_URL,
    function_name: str = EVENT_FUNCTION,
    *,
    attempts: int = 5,
    backoff: float = 0.5,
    send: Callable[[urllib.request.Request], int] | None = None,
) -> int:
    """Post a BlobCreated event for every Capture blob under a prefix to a running ``func start``.

    Args:
        settings: Where Capture files land (CAPTURE_URI) and the storage connection.
        prefix: ``az://container/path`` or a path relative to CAPTURE_URI; default all of it.
        url: Base URL of the Functions host.
        function_name: The Event Grid-triggered function to invoke.
        attempts: Tries per event on connection errors and 5xx answers.
        backoff: First delay between tries, in seconds; doubles each time.
        send: Sends one request and returns the HTTP status (tests replace it).

    Returns:
        The number of events the host accepted.

    Raises:
        EventDeliveryError: nothing listens at ``url``, or the host kept refusing an event.
    """
    storage = Storage(settings.lake_storage)
    root = prefix if prefix and is_remote(prefix) else join(settings.capture_uri, prefix or "")
    if not is_remote(root):
        raise EventDeliveryError(f"{root} is a local folder; events can only name blobs (az://...)")
    endpoint = f"{url.rstrip('/')}/runtime/webhooks/EventGrid?functionName={quote(function_name)}"
    sender = send or _send
    posted = 0
    for info in _capture_blobs(storage, root):
        body = json.dumps([blob_created_event(storage, info.uri, info.size, info.etag)]).encode()
        request = urllib.request.Request(
            endpoint,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "aeg-event-type": "Notification"},
        )
        _deliver(sender, request, info.uri, attempts, backoff)
        posted += 1
    if posted == 0:
        log.warning("no Capture blobs under %s", root)
    return posted


def _capture_blobs(storage: Storage, root: str) -> Iterator[Any]:
    yield from storage.list(root, CAPTURE_SUFFIXES)


def _deliver(
    send: Callable[[urllib.request.Request], int],
    request: urllib.request.Request,
    uri: str,
    attempts: int,
    backoff: float,
) -> None:
    problem = ""
    for attempt in range(attempts):
        try:
            status = send(request)
        except urllib.error.HTTPError as exc:
            status, problem = exc.code, f"HTTP {exc.code}"
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            status = 0
            problem = f"nothing is listening at {request.full_url} ({exc}); start the app with `func start`"
        if 200 <= status < 300:
            return
        if 400 <= status < 500:
            raise EventDeliveryError(
                f"the host refused the event for {uri} with HTTP {status}; "
                "is the function name right and the app started?"
            )
        problem = problem or f"HTTP {status}"
        if attempt < attempts - 1:
            time.sleep(backoff * 2**attempt)
    raise EventDeliveryError(f"event for {uri} not delivered after {attempts} tries: {problem}")


def _send(request: urllib.request.Request) -> int:
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status)
