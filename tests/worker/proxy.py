"""A stand-in for the Functions host's Python 3.13 proxy worker, driving the real library worker.

From Python 3.13 the host starts a small "proxy worker" (azure-functions-python-worker,
``workers/proxy_worker``) that owns the gRPC stream and hands each request to the library
worker, ``azure_functions_runtime``: the package this app pins and the tests load it with.
The proxy is not on PyPI, so this script does what its dispatcher does, and no more:

- it is started like the proxy (``--host --port --workerId --requestId
  --grpcMaxMessageLength``), opens ``FunctionRpc.EventStream`` to the host and sends
  ``StartStream(worker_id)`` first;
- sys.path as ``DependencyManager.prioritize_customer_dependencies`` leaves it: the worker's
  own packages (here the protos) first, the app directory (``AzureWebJobsScriptRoot``) last;
- each request runs as a task on one asyncio loop; init and environment reload get
  ``properties={"protos": ..., "host": ...}``, the others none, and
  ``start_threadpool_executor()`` runs before ``worker_init_request``;
- every log record goes to the host as an ``RpcLog`` on the same stream (root logger at INFO,
  DEBUG with PYTHON_ENABLE_DEBUG_LOGGING), tagged with the invocation id of the task, the
  library's ``invocation_id_cv`` or the dispatching thread, in that order.

It differs from the proxy in what it leaves out: no runtime detection (it always loads
``azure_functions_runtime``, the V2 library worker), no Linux Consumption placeholder mode, no
``WorkerStatusRequest`` answer beyond an empty one, no console-log switching, no uvloop.

With ``--report PATH`` it writes, when the host ends the stream, what the cold-start
measurement reads: peak RSS (VmHWM), the heavy modules imported, and the process start time.
It imports nothing from the project: the app is loaded only through the worker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STARTED = time.time()
HEAVY_MODULES = (
    "polars",
    "deltalake",
    "pyarrow",
    "numpy",
    "numba",
    "azure.storage.blob",
    "azure.data.tables",
    "fastavro",
    "pandas",
)


@dataclass
class WorkerRequest:
    """What the proxy hands the library: the StreamingMessage and, for init, protos and host."""

    name: str
    request: Any
    properties: dict[str, Any] | None = None


class Proxy:
    """One gRPC stream to the host; each request becomes a task on ``loop``."""

    _STOP = object()

    def __init__(self, args: argparse.Namespace, protos: Any, library: Any) -> None:
        self.args = args
        self.protos = protos
        self.library = library
        self.loop = asyncio.new_event_loop()
        self.outgoing: queue.Queue[Any] = queue.Queue()
        self.thread_invocations: dict[int, str] = {}
        self.done = threading.Event()

    # -- logs ------------------------------------------------------------------------------------
    def invocation_id(self) -> str | None:
        try:
            task = asyncio.current_task(self.loop)
        except RuntimeError:
            task = None
        found = getattr(task, "invocation_id", None) if task is not None else None
        return (
            found or self.library.invocation_id_cv.get() or self.thread_invocations.get(threading.get_ident())
        )

    def log(self, record: logging.LogRecord, message: str) -> None:
        rpc_log = self.protos.RpcLog
        level = (
            rpc_log.Critical
            if record.levelno >= logging.CRITICAL
            else rpc_log.Error
            if record.levelno >= logging.ERROR
            else rpc_log.Warning
            if record.levelno >= logging.WARNING
            else rpc_log.Information
            if record.levelno >= logging.INFO
            else rpc_log.Debug
        )
        # proxy_worker.logging.is_system_log_category
        system = record.name.startswith(("proxy_worker", "azure.functions", "azure_functions_runtime"))
        fields: dict[str, Any] = {
            "level": level,
            "message": message,
            "category": record.name,
            "log_category": rpc_log.RpcLogCategory.Value("System" if system else "User"),
        }
        invocation = self.invocation_id()
        if invocation:
            fields["invocation_id"] = invocation
        self.send(rpc_log=self.protos.RpcLog(**fields))

    def send(self, **content: Any) -> None:
        self.outgoing.put(self.protos.StreamingMessage(request_id=self.args.request_id, **content))

    # -- the stream ------------------------------------------------------------------------------
    def run(self) -> None:
        import grpc

        options = []
        if self.args.grpc_max_msg_len:
            options = [
                ("grpc.max_receive_message_length", self.args.grpc_max_msg_len),
                ("grpc.max_send_message_length", self.args.grpc_max_msg_len),
            ]
        channel = grpc.insecure_channel(f"{self.args.host}:{self.args.port}", options)
        grpc.channel_ready_future(channel).result(timeout=5.0)
        stub = self.protos.FunctionRpcStub(channel)
        self.send(start_stream=self.protos.StartStream(worker_id=self.args.worker_id))
        handler = _Handler(self)
        handler.setFormatter(logging.Formatter("%(message)s"))
        root = logging.getLogger()
        root.setLevel(logging.DEBUG if os.environ.get("PYTHON_ENABLE_DEBUG_LOGGING") == "1" else logging.INFO)
        root.addHandler(handler)
        loop_thread = threading.Thread(target=self.loop.run_forever, name="dispatcher", daemon=True)
        loop_thread.start()
        responses = stub.EventStream(iter(self.outgoing.get, self._STOP))
        try:
            for request in responses:
                asyncio.run_coroutine_threadsafe(self.dispatch(request), self.loop)
        finally:
            root.removeHandler(handler)
            stop = getattr(self.library, "stop_threadpool_executor", None)
            if callable(stop):
                stop()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.outgoing.put(self._STOP)

    async def dispatch(self, request: Any) -> None:
        kind = request.WhichOneof("content")
        init_properties = {"protos": self.protos, "host": self.args.host}
        if kind == "worker_init_request":
            self.library.start_threadpool_executor()
            response = await self.library.worker_init_request(
                WorkerRequest("WorkerInitRequest", request, init_properties)
            )
            self.send(worker_init_response=response)
        elif kind == "function_environment_reload_request":
            response = await self.library.function_environment_reload_request(
                WorkerRequest("FunctionEnvironmentReloadRequest", request, init_properties)
            )
            self.send(function_environment_reload_response=response)
        elif kind == "functions_metadata_request":
            response = await self.library.functions_metadata_request(
                WorkerRequest("WorkerMetadataRequest", request)
            )
            self.send(function_metadata_response=response)
        elif kind == "function_load_request":
            response = await self.library.function_load_request(WorkerRequest("FunctionLoadRequest", request))
            self.send(function_load_response=response)
        elif kind == "worker_status_request":
            self.send(worker_status_response=self.protos.WorkerStatusResponse())
        elif kind == "invocation_request":
            invocation_id = request.invocation_request.invocation_id
            task = asyncio.current_task()
            if task is not None:
                task.invocation_id = invocation_id  # type: ignore[attr-defined]
            self.thread_invocations[threading.get_ident()] = invocation_id
            response = await self.library.invocation_request(
                WorkerRequest("FunctionInvocationRequest", request)
            )
            self.send(invocation_response=response)
        else:
            logging.getLogger("proxy_worker").error("Unknown StreamingMessage content type: %s", kind)


class _Handler(logging.Handler):
    def __init__(self, proxy: Proxy) -> None:
        super().__init__()
        self.proxy = proxy

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.proxy.log(record, self.format(record))
        except Exception:  # a log that cannot be sent must not break the invocation
            self.handleError(record)


def _peak_rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Python Azure Functions proxy worker (test stand-in)")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--workerId", dest="worker_id")
    parser.add_argument("--requestId", dest="request_id")
    parser.add_argument("--grpcMaxMessageLength", type=int, dest="grpc_max_msg_len")
    parser.add_argument("--protos", type=Path, required=True, help="folder holding the functionrpc package")
    parser.add_argument("--report", type=Path, help="write peak RSS and imported modules here at exit")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    # The worker's own packages first; the app folder last (prioritize_customer_dependencies).
    sys.path.insert(0, str(args.protos))
    app_root = os.environ.get("AzureWebJobsScriptRoot", "")
    if app_root and app_root not in sys.path:
        sys.path.append(app_root)
    import azure_functions_runtime as library
    import functionrpc as protos

    Proxy(args, protos, library).run()
    if args.report:
        args.report.write_text(
            json.dumps(
                {
                    "started_at": STARTED,
                    "python": sys.version.split()[0],
                    "worker_version": library.version.VERSION if hasattr(library, "version") else None,
                    "peak_rss_kb": _peak_rss_kb(),
                    "heavy_modules": sorted(m for m in HEAVY_MODULES if m in sys.modules),
                }
            )
        )


if __name__ == "__main__":
    main()
