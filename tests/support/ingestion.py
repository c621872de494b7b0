"""A stand-in for Application Insights' ingestion endpoint, for the real Azure Monitor exporter.

Ingestion cannot run here, so this serves its Track API as azure-monitor-opentelemetry-exporter
calls it (``_generated/exporter/_operations``): ``POST {IngestionEndpoint}/v2.1/track`` with a
JSON array of envelopes (gzip-compressed when ``Content-Encoding`` says so), answered ``200``
with ``{"itemsReceived": n, "itemsAccepted": n, "errors": []}``. Every other request (the
Live Metrics ping and post to ``LiveEndpoint``) gets ``200``, ``x-ms-qps-subscribed: false``
and no body: no one is watching Live Metrics. The raw bodies are kept too, so a test can
look for text that must never leave the process.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TRACK_PATH = "/v2.1/track"


@dataclass
class Ingestion:
    """What the exporter sent: every envelope, and every request body as received."""

    url: str = ""
    envelopes: list[dict[str, Any]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def connection_string(self) -> str:
        """A connection string that sends every signal here, with a dummy instrumentation key."""
        return (
            "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
            f"IngestionEndpoint={self.url}/;LiveEndpoint={self.url}/"
        )

    def items(self, base_type: str | None = None) -> list[dict[str, Any]]:
        """The envelopes received so far, of one ``baseType`` (``EventData``, ``MessageData``...)."""
        with self.lock:
            return [e for e in self.envelopes if base_type is None or e["data"]["baseType"] == base_type]

    def wait_for(
        self, found: Callable[[Ingestion], list[dict[str, Any]]], *, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """Poll until ``found`` returns something (the exporter sends in batches); [] on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            result = found(self)
            if result or time.monotonic() > deadline:
                return result
            time.sleep(0.2)


def events(ingestion: Ingestion, name: str) -> list[dict[str, Any]]:
    """The custom event envelopes named ``name`` received so far."""
    return [e for e in ingestion.items("EventData") if e["data"]["baseData"]["name"] == name]


@contextmanager
def serve_ingestion() -> Iterator[Ingestion]:
    """An ingestion endpoint on a free loopback port, for the duration of the block."""
    ingestion = Ingestion()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding", "").lower() == "gzip":
                body = gzip.decompress(body)
            with ingestion.lock:
                ingestion.bodies.append(body)
            if self.path.split("?", 1)[0].rstrip("/") != TRACK_PATH:
                self._answer(b"")
                return
            received = json.loads(body)
            with ingestion.lock:
                ingestion.envelopes.extend(received)
            n = len(received)
            self._answer(json.dumps({"itemsReceived": n, "itemsAccepted": n, "errors": []}).encode())

        def _answer(self, payload: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("x-ms-qps-subscribed", "false")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # the test output stays quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ingestion.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="ingestion", daemon=True)
    thread.start()
    try:
        yield ingestion
    finally:
        server.shutdown()
        server.server_close()
