"""``python -m shared events`` posts what the Event Grid extension's local webhook accepts.

The stand-in below applies the rules of the extension's webhook (azure-sdk-for-net,
``Microsoft.Azure.WebJobs.Extensions.EventGrid``: ``EventGridExtensionConfigProvider`` and
``HttpRequestProcessor``), then does what the extension does with an accepted notification:
each event, one invocation, through the real worker. Its answers are the extension's:

- the host serves extension webhooks at ``/runtime/webhooks/{extension}``, here ``EventGrid``;
- ``functionName`` in the query must name an Event Grid-triggered function, else 404;
- ``aeg-event-type`` (case-insensitive) ``Notification`` carries events; ``SubscriptionValidation``
  and ``Unsubscribe`` are handshakes; any other value or none is 400;
- the body is one JSON event object or an array of them (anything else fails the request);
- every event is dispatched on its own; 202 if all succeeded, 500 with the first failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from shared.app import App
from shared.dev.events import post_events
from shared.dev.generator import generate_day
from shared.errors import EventDeliveryError
from shared.events import EVENT_FUNCTION
from shared.settings import Settings
from shared.uris import join
from tests.support.durable import FakeDurable
from tests.worker.harness import ROOT, Invocation, Worker, json_data, string_data

pytestmark = pytest.mark.azurite

WEBHOOK_PATH = "/runtime/webhooks/EventGrid"


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int = 0
    invocations: list[Invocation] = field(default_factory=list)


@dataclass
class Webhook:
    """The Event Grid extension's webhook, in front of the worker."""

    worker: Worker
    durable: FakeDurable
    received: list[Received] = field(default_factory=list)
    url: str = ""

    def listeners(self) -> set[str]:
        return {
            m.name
            for m in self.worker.metadata
            if any(json.loads(raw)["type"] == "eventGridTrigger" for raw in m.raw_bindings)
        }

    def handle(self, got: Received) -> tuple[int, str]:
        if got.path != WEBHOOK_PATH:
            return 404, ""
        name = (got.query.get("functionName") or [""])[0]
        if name not in self.listeners():
            return 404, f"cannot find function: '{name}'"
        kind = got.headers.get("aeg-event-type", "").lower()
        if kind in ("subscriptionvalidation", "unsubscribe"):
            return 200 if kind == "subscriptionvalidation" else 202, ""
        if kind != "notification":
            return 400, ""
        if not isinstance(got.body, list | dict):
            return 500, "The request content should be parseable into a JSON object or array"
        for event in got.body if isinstance(got.body, list) else [got.body]:
            got.invocations.append(
                self.worker.invoke(
                    name, {"event": json_data(event), "client": string_data(self.durable.binding())}
                )
            )
        failed = [i for i in got.invocations if i.status != "Success"]
        return (500, failed[0].exception or "") if failed else (202, "")


@pytest.fixture
def webhook(app_worker: Worker, durable: FakeDurable) -> Iterator[Webhook]:
    hook = Webhook(app_worker, durable)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = None
            parsed = urlparse(self.path)
            got = Received(
                "POST",
                parsed.path,
                parse_qs(parsed.query),
                {k.lower(): v for k, v in self.headers.items()},
                body,
            )
            got.status, text = hook.handle(got)
            hook.received.append(got)
            self.send_response(got.status)
            self.send_header("Content-Length", str(len(text.encode())))
            self.end_headers()
            self.wfile.write(text.encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield hook
    server.shutdown()
    server.server_close()


def land(ops: App, settings: Settings, prefix: str, files: int) -> list[str]:
    uris = []
    for generated in list(generate_day(files=files, events_per_file=30, seed=5))[:files]:
        uri = join(settings.capture_uri, f"{prefix}/{generated.path}")
        ops.storage.write(uri, generated.data)
        uris.append(uri)
    return uris


def assert_posted_as_the_extension_expects(got: Received) -> None:
    assert (got.method, got.path, got.query) == ("POST", WEBHOOK_PATH, {"functionName": [EVENT_FUNCTION]})
    assert got.headers["aeg-event-type"] == "Notification"
    assert got.headers["content-type"] == "application/json"
    assert isinstance(got.body, list) and len(got.body) == 1
    (event,) = got.body
    # The Event Grid schema (the worker decodes it as an EventGridEvent: no specversion).
    assert "specversion" not in event
    assert {
        "id",
        "topic",
        "subject",
        "eventType",
        "eventTime",
        "data",
        "dataVersion",
        "metadataVersion",
    } <= set(event)
    assert event["eventType"] == "Microsoft.Storage.BlobCreated"
    assert got.status == 202


def test_post_events_is_accepted_by_the_webhook_and_starts_each_batch(
    webhook: Webhook, ops: App, worker_settings: Settings, durable: FakeDurable
) -> None:
    uris = land(ops, worker_settings, "webhook", files=2)
    posted = post_events(worker_settings, prefix="webhook", url=webhook.url)
    assert posted == 2 and len(webhook.received) == 2
    for got in webhook.received:
        assert_posted_as_the_extension_expects(got)
        (invocation,) = got.invocations
        assert invocation.status == "Success"
        assert any("orchestration started" in m for m in invocation.messages("INFO"))
    assert sorted(ref["source"] for _, ref in durable.starts if "/webhook/" in ref["source"]) == sorted(uris)


def test_the_cli_posts_the_same_requests(
    webhook: Webhook, ops: App, worker_settings: Settings, worker_env: dict[str, str | None]
) -> None:
    land(ops, worker_settings, "cli", files=1)
    env = {k: v for k, v in {**os.environ, **worker_env}.items() if v is not None}
    done = subprocess.run(
        [sys.executable, "-m", "shared", "events", "--prefix", "cli", "--url", webhook.url],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "posted 1 events"
    (got,) = webhook.received
    assert_posted_as_the_extension_expects(got)


def test_a_function_name_the_host_does_not_know_is_refused(
    webhook: Webhook, ops: App, worker_settings: Settings
) -> None:
    land(ops, worker_settings, "unknown", files=1)
    with pytest.raises(EventDeliveryError, match="HTTP 404"):
        post_events(worker_settings, prefix="unknown", url=webhook.url, function_name="on_blob", attempts=1)
    assert [got.status for got in webhook.received] == [404]
