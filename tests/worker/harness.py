"""Load and invoke the Function app through the real Python worker library, as the host does.

``Worker`` plays the Functions host's side of ``FunctionRpc.EventStream``: it serves gRPC
on a loopback port, starts ``tests/worker/proxy.py`` (the proxy worker's stand-in, which
drives ``azure_functions_runtime``) in a child process with the app's environment, and
sends the host's messages: ``WorkerInitRequest`` (``function_app_directory`` = the
checkout), ``FunctionsMetadataRequest``, one ``FunctionLoadRequest`` per function, then
``InvocationRequest``s whose inputs are built here in the shapes the host and the
extensions send them (see the ``*_data`` builders).

Why a child process: the library keeps the app's registry, its binding registry and the
protos in module globals, imports ``function_app`` by name (so a copy already imported
by other tests would be reused, not loaded), and changes the root logger; a cold start
and "what did loading import" can only be seen in a fresh interpreter. The child also
gets exactly the environment an app setting change would give it.

Where it differs from the host: ``WorkerInitRequest.capabilities`` is empty and
``log_categories`` unset (the host sends its own); trigger metadata carries only what a test
passes (the host adds ``sys`` and the trigger's binding data); ``FunctionLoadRequest``
carries the worker's own metadata back (the host sends what it registered from it). Like
the host's, the stream is asynchronous: several invocations may be in flight at once.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from tests.worker import protos as worker_protos

ROOT = Path(__file__).resolve().parents[2]
PROXY = Path(__file__).resolve().parent / "proxy.py"
HOST_VERSION = "4.1044.0.0"
TIMEOUT = 120.0
LEVELS = {0: "TRACE", 1: "DEBUG", 2: "INFO", 3: "WARNING", 4: "ERROR", 5: "CRITICAL", 6: "NONE"}

pb = worker_protos.load()


# -- what comes back --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Log:
    level: str
    category: str
    message: str
    invocation_id: str


@dataclass(frozen=True)
class HttpResult:
    """An ``RpcHttp`` response as the host reads it."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Invocation:
    """A decoded ``InvocationResponse`` and the logs the worker sent for it."""

    status: str
    return_value: Any
    outputs: dict[str, Any]
    exception: str | None
    logs: list[Log]

    def messages(self, level: str | None = None) -> list[str]:
        return [log.message for log in self.logs if level is None or log.level == level]


def decode(data: Any) -> Any:
    """A ``TypedData`` as a Python value (json parsed, http as ``HttpResult``)."""
    kind = data.WhichOneof("data")
    if kind is None:
        return None
    if kind == "json":
        return json.loads(data.json)
    if kind == "http":
        http = data.http
        body = decode(http.body)
        raw = body if isinstance(body, bytes) else (body or "").encode() if isinstance(body, str) else b""
        return HttpResult(int(http.status_code or 200), dict(http.headers), raw)
    return getattr(data, kind)


# -- what the host sends -------------------------------------------------------------------------
def json_data(value: Any) -> Any:
    """``TypedData.json``: how the host passes a JObject (Event Grid events, TimerInfo)."""
    return pb.TypedData(json=json.dumps(value, separators=(",", ":")))


def string_data(value: str) -> Any:
    """``TypedData.string``: durable client bindings, orchestration and activity inputs."""
    return pb.TypedData(string=value)


def activity_data(value: Any) -> Any:
    """An activity's input as the Durable extension gives a Python activity (legacy out-of-proc
    protocol: the input serialized as compact JSON, handed over as a string)."""
    return string_data(json.dumps(value, separators=(",", ":")))


def http_data(
    method: str,
    path: str,
    *,
    query: Mapping[str, str] | None = None,
    route: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    host: str = "localhost:7071",
) -> Any:
    """``TypedData.http`` as the host builds it for this worker, which advertises
    RpcHttpBodyOnly and RawHttpBodyBytes: url with the query string, headers lower-cased,
    empty query values dropped, route data in ``params``, the body as bytes (only when there
    is one) and no ``rawBody``."""
    query = dict(query or {})
    query_string = "&".join(f"{k}={v}" for k, v in query.items())
    http = pb.RpcHttp(
        method=method,
        url=f"http://{host}{path}" + (f"?{query_string}" if query_string else ""),
        headers={k.lower(): v for k, v in {"Host": host, **(headers or {})}.items()},
        query={k: v for k, v in query.items() if v},
        params=dict(route or {}),
    )
    if body:
        http.headers["content-length"] = str(len(body))
        http.body.CopyFrom(pb.TypedData(bytes=body))
    return pb.TypedData(http=http)


def timer_data(*, past_due: bool = False, last: str = "0001-01-01T00:00:00", next_: str = "") -> Any:
    """The TimerInfo the timer extension passes, serialized by the host as JSON."""
    return json_data(
        {
            "Schedule": {"AdjustForDST": True},
            "ScheduleStatus": {"Last": last, "Next": next_, "LastUpdated": last},
            "IsPastDue": past_due,
        }
    )


def orchestration_data(
    history: list[dict[str, Any]],
    input: str | None,
    instance_id: str,
    *,
    is_replaying: bool = False,
) -> Any:
    """The orchestration trigger's value for an out-of-proc worker, with every field of
    ``OrchestrationTriggerAttributeBindingProvider.OrchestrationContextToString`` (Azure
    Storage provider defaults: 3-day long-timer interval, 6-day maximum short timer)."""
    context = {
        "history": history,
        "input": input,
        "instanceId": instance_id,
        "isReplaying": is_replaying,
        "parentInstanceId": None,
        "upperSchemaVersion": 1,
        "upperSchemaVersionNew": 2,
        "longRunningTimerIntervalDuration": "3.00:00:00",
        "maximumShortTimerDuration": "6.00:00:00",
        "defaultHttpAsyncRequestSleepTimeMillseconds": 30000,
    }
    return string_data(json.dumps(context, indent=2))


# -- the host side of the stream ---------------------------------------------------------------
class _Stream:
    """One ``EventStream`` call: what we send, and what the worker sent, by kind."""

    def __init__(self) -> None:
        self.outgoing: queue.Queue[Any] = queue.Queue()
        self.incoming: queue.Queue[Any] = queue.Queue()
        self.connected = threading.Event()


class _Servicer(pb.FunctionRpcServicer):  # type: ignore[misc]
    def __init__(self, stream: _Stream) -> None:
        self.stream = stream

    def EventStream(self, request_iterator: Iterator[Any], context: Any) -> Iterator[Any]:
        def read() -> None:
            try:
                for message in request_iterator:
                    self.stream.incoming.put(message)
            except grpc.RpcError:
                pass
            self.stream.incoming.put(None)

        threading.Thread(target=read, name="host-reader", daemon=True).start()
        self.stream.connected.set()
        while (message := self.stream.outgoing.get()) is not None:
            yield message


@dataclass
class Worker:
    """The real worker library in a child process, loaded with the app at ``app_dir``.

    Args:
        env: The app settings (added to this process's environment; a None value removes one).
        app_dir: The function app directory (the checkout).
        report: Where the child writes its peak RSS and imported modules when closed.
    """

    env: Mapping[str, str | None] = field(default_factory=dict)
    app_dir: Path = ROOT
    report: Path | None = None
    init_response: Any = None
    metadata: list[Any] = field(default_factory=list)
    load_responses: dict[str, Any] = field(default_factory=dict)
    system_logs: list[Log] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stream = _Stream()
        self._responses: dict[str, Any] = {}
        self._logs: dict[str, list[Log]] = {}
        self._arrived = threading.Condition()
        self._closed = False
        self.request_id = str(uuid.uuid4())
        self.worker_id = str(uuid.uuid4())

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> Worker:
        """Start the child, open the stream and wait for its ``StartStream``."""
        started = time.perf_counter()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb.add_FunctionRpcServicer_to_server(_Servicer(self._stream), self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        env = {
            **os.environ,
            "FUNCTIONS_WORKER_RUNTIME": "python",
            "AzureWebJobsScriptRoot": str(self.app_dir),
        }
        for name, value in self.env.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        env.pop("PYTHONPATH", None)
        fd, self._log_path = tempfile.mkstemp(prefix="tributary-worker-", suffix=".log")
        self._stderr = os.fdopen(fd, "wb")
        command = [
            sys.executable,
            str(PROXY),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workerId",
            self.worker_id,
            "--requestId",
            self.request_id,
            "--grpcMaxMessageLength",
            str(2**31 - 1),
            "--protos",
            str(worker_protos.PROTOS_DIR),
        ]
        if self.report:
            command += ["--report", str(self.report)]
        self._process = subprocess.Popen(
            command,
            cwd=self.app_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._stderr,
            stderr=self._stderr,
        )
        self._reader = threading.Thread(target=self._read, name="host-router", daemon=True)
        self._reader.start()
        self._wait("start_stream")
        self.timings["start_stream"] = time.perf_counter() - started
        return self

    def load(self) -> Worker:
        """Init, metadata and a load request per function; what a cold instance does."""
        started = time.perf_counter()
        self.init_response = self.request(
            "worker_init_request",
            pb.WorkerInitRequest(
                host_version=HOST_VERSION,
                worker_directory=str(PROXY.parent),
                function_app_directory=str(self.app_dir),
            ),
        )
        self.timings["init"] = time.perf_counter() - started
        if self.init_response.result.status != pb.StatusResult.Success:
            return self
        metadata = self.request(
            "functions_metadata_request",
            pb.FunctionsMetadataRequest(function_app_directory=str(self.app_dir)),
        )
        self.metadata = list(metadata.function_metadata_results)
        for function in self.metadata:
            self.load_responses[function.name] = self.request(
                "function_load_request",
                pb.FunctionLoadRequest(function_id=function.function_id, metadata=function),
            )
        self.timings["loaded"] = time.perf_counter() - started
        return self

    def close(self) -> int:
        """End the stream (as the host does on shutdown) and wait for the child to exit."""
        if self._closed:
            return self._process.returncode
        self._closed = True
        self._stream.outgoing.put(None)
        try:
            code = self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            code = self._process.wait()
        self._server.stop(grace=1)
        self._stderr.close()
        if code == 0:
            Path(self._log_path).unlink(missing_ok=True)
        return code

    def __enter__(self) -> Worker:
        return self.start().load()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests --------------------------------------------------------------------------------
    def request(self, kind: str, message: Any) -> Any:
        """Send one request and wait for its response."""
        response_kind = {
            "worker_init_request": "worker_init_response",
            "functions_metadata_request": "function_metadata_response",
            "function_load_request": "function_load_response",
            "worker_status_request": "worker_status_response",
        }[kind]
        self._send(**{kind: message})
        return self._wait(response_kind)

    def function_id(self, name: str) -> str:
        for function in self.metadata:
            if function.name == name:
                return str(function.function_id)
        raise KeyError(f"{name} is not among the functions the worker indexed")

    def start_invocation(
        self,
        name: str,
        inputs: Mapping[str, Any],
        trigger_metadata: Mapping[str, Any] | None = None,
        *,
        trace_parent: str | None = None,
    ) -> str:
        """Send an ``InvocationRequest`` (inputs: binding name -> TypedData); returns its id.

        ``trace_parent`` is the W3C ``traceparent`` of the host's invocation activity, sent
        in ``RpcTraceContext`` as the host does (the worker attaches it when telemetry is on).
        """
        invocation_id = str(uuid.uuid4())
        request = pb.InvocationRequest(
            invocation_id=invocation_id,
            function_id=self.function_id(name),
            input_data=[pb.ParameterBinding(name=k, data=v) for k, v in inputs.items()],
            trigger_metadata=dict(trigger_metadata or {}),
        )
        if trace_parent is not None:
            request.trace_context.trace_parent = trace_parent
        self._send(invocation_request=request)
        return invocation_id

    def result(self, invocation_id: str) -> Invocation:
        response = self._wait(invocation_id)
        with self._arrived:
            logs = self._logs.pop(invocation_id, [])
        return Invocation(
            status=pb.StatusResult.Status.Name(response.result.status),
            return_value=decode(response.return_value) if response.HasField("return_value") else None,
            outputs={o.name: decode(o.data) for o in response.output_data},
            exception=response.result.exception.message if response.result.HasField("exception") else None,
            logs=logs,
        )

    def invoke(
        self,
        name: str,
        inputs: Mapping[str, Any],
        trigger_metadata: Mapping[str, Any] | None = None,
        *,
        trace_parent: str | None = None,
    ) -> Invocation:
        return self.result(self.start_invocation(name, inputs, trigger_metadata, trace_parent=trace_parent))

    def stderr(self) -> str:
        """The tail of what the child printed (the worker logs to the stream, not here)."""
        return Path(self._log_path).read_text(errors="replace")[-4000:]

    # -- plumbing --------------------------------------------------------------------------------
    def _send(self, **content: Any) -> None:
        self._stream.outgoing.put(pb.StreamingMessage(request_id=self.request_id, **content))

    def _read(self) -> None:
        """Route what the worker sends: logs to their invocation, responses to their waiter."""
        while not self._stream.connected.wait(0.1):
            if self._process.poll() is not None:
                break
        while True:
            try:
                message = self._stream.incoming.get(timeout=0.2)
            except queue.Empty:
                if self._process.poll() is not None and self._stream.incoming.empty():
                    message = None
                else:
                    continue
            with self._arrived:
                if message is None:
                    self._responses["__closed__"] = True
                    self._arrived.notify_all()
                    return
                kind = message.WhichOneof("content")
                if kind == "rpc_log":
                    log = message.rpc_log
                    entry = Log(
                        LEVELS.get(log.level, str(log.level)), log.category, log.message, log.invocation_id
                    )
                    if log.invocation_id:
                        self._logs.setdefault(log.invocation_id, []).append(entry)
                    else:
                        self.system_logs.append(entry)
                elif kind == "invocation_response":
                    self._responses[message.invocation_response.invocation_id] = message.invocation_response
                else:
                    self._responses[kind] = getattr(message, kind)
                self._arrived.notify_all()

    def _wait(self, key: str) -> Any:
        deadline = time.monotonic() + TIMEOUT
        with self._arrived:
            while key not in self._responses:
                if "__closed__" in self._responses:
                    raise RuntimeError(f"the worker ended the stream before {key}:\n{self.stderr()}")
                if not self._arrived.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"no {key} from the worker in {TIMEOUT:.0f}s:\n{self.stderr()}")
            return self._responses.pop(key)
