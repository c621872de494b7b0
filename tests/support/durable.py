"""A stand-in for the Durable Functions extension's HTTP API, speaking its wire format.

The Durable client code under test is the real ``DurableOrchestrationClient``: it is given
the client binding JSON the host would give it (``FakeDurable.binding()``), whose
``rpcBaseUrl`` points at the small HTTP server here. The server answers
``POST {rpc}orchestrators/{name}/{id}`` and ``GET {rpc}instances/{id}`` like the extension,
refusing to start an instance that is Pending or Running, as
``overridableExistingInstanceStates: NonRunningStates`` does. Nothing else of the Durable
extension can run here, so only this part stands in.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlparse


@dataclass
class FakeDurable:
    """The instances the extension knows and every start it accepted."""

    instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    starts: list[tuple[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    def binding(self) -> str:
        base = "http://localhost:7071/runtime/webhooks/durabletask"
        create = f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]"
        return json.dumps(
            {
                "taskHubName": "tributary",
                "creationUrls": {
                    "createNewInstancePostUri": f"{create}?code=k",
                    "createAndWaitOnNewInstancePostUri": f"{create}?timeout={{timeoutInSeconds}}"
                    "&pollingInterval={{intervalInSeconds}}&code=k",
                },
                "managementUrls": {
                    "id": "INSTANCEID",
                    "statusQueryGetUri": f"{base}/instances/INSTANCEID?code=k",
                },
                "baseUrl": base,
                "requiredQueryStringParameters": "code=k",
                "rpcBaseUrl": f"http://127.0.0.1:{self.port}/durabletask/",
            }
        )

    def finish(self, instance_id: str, custom_status: Any = None, status: str = "Completed") -> None:
        with self.lock:
            self.instances[instance_id].update(
                runtimeStatus=status, customStatus=custom_status, lastUpdatedTime=_now()
            )

    def started(self, instance_id: str) -> list[Any]:
        return [payload for iid, payload in self.starts if iid == instance_id]


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _handler(fake: FakeDurable) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def reply(self, status: int, body: Any) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            parts = unquote(urlparse(self.path).path).strip("/").split("/")
            assert parts[:2] == ["durabletask", "orchestrators"], self.path
            name, instance_id = parts[2], parts[3]
            payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"null")
            # The SDK posts the input already serialized (a JSON string), as the extension expects.
            payload = json.loads(payload) if isinstance(payload, str) else payload
            time.sleep(0.05)  # the extension writes to the task hub before it answers
            with fake.lock:
                existing = fake.instances.get(instance_id)
                if existing and existing["runtimeStatus"] in ("Pending", "Running"):
                    self.reply(409, f"An Orchestration instance with the ID '{instance_id}' already exists.")
                    return
                fake.instances[instance_id] = {
                    "name": name,
                    "instanceId": instance_id,
                    "runtimeStatus": "Pending",
                    "input": payload,
                    "customStatus": None,
                    "createdTime": _now(),
                    "lastUpdatedTime": _now(),
                    "output": None,
                }
                fake.starts.append((instance_id, payload))
            self.reply(202, {"id": instance_id})

        def do_GET(self) -> None:
            parts = unquote(urlparse(self.path).path).strip("/").split("/")
            assert parts[:2] == ["durabletask", "instances"], self.path
            with fake.lock:
                instance = fake.instances.get(parts[2])
            if instance is None:
                self.reply(404, None)
            else:
                self.reply(200 if instance["runtimeStatus"] == "Completed" else 202, instance)

    return Handler


@contextmanager
def serve_durable() -> Iterator[FakeDurable]:
    """A ``FakeDurable`` served on a free loopback port for the duration of the block."""
    fake = FakeDurable()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
