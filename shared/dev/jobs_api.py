"""A local stand-in for the Databricks Jobs API 2.2 that runs submitted jobs with local PySpark.

It speaks the wire format databricks-sdk sends and reads (paths, bodies, the state enums
of ``RunLifeCycleState`` and ``RunResultState``), so the real SDK and the project's
adapter talk to it unchanged:

* ``GET /.well-known/databricks-config``: 404, as a workspace without host metadata
  answers (the SDK falls back to its configuration).
* ``POST /api/2.2/jobs/runs/submit``: a run of the first task's ``spark_python_task``. A
  known ``idempotency_token`` returns the run it started. The run is PENDING for
  ``start_seconds`` (the cluster starting), RUNNING while ``python_file`` runs in a
  subprocess (with ``--local`` appended, so the job uses delta-rs and local PySpark), then
  TERMINATED with SUCCESS or FAILED by its exit status, TIMEDOUT past the task's
  ``timeout_seconds``, CANCELED when cancelled. A file that cannot be started ends the run
  in INTERNAL_ERROR.
* ``GET /api/2.2/jobs/runs/get?run_id=``, ``POST /api/2.2/jobs/runs/cancel``.

``python_file`` must lie under ``job_root`` (the workspace folder the bundle deploys to);
the stand-in runs the file at the same relative path under ``files`` (the checkout).
``answer_next`` makes the next requests fail (a 429 once, say) for tests.

Run it for ``make demo``: ``python -m shared.dev.jobs_api --port 8089``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

ROOT = Path(__file__).resolve().parents[2]
API = "/api/2.2/jobs/runs"


@dataclass
class _Run:
    run_id: int
    name: str
    task_key: str
    python_file: str
    parameters: list[str]
    timeout: float
    submitted: float
    life_cycle: str = "PENDING"
    result: str | None = None
    message: str = "Waiting for cluster"
    started: float | None = None
    ended: float | None = None
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    cancel_requested: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _Canned:
    status: int
    error_code: str
    message: str
    retry_after: int | None


class JobsApi:
    """The stand-in server; ``start()`` it, use ``url``, ``stop()`` it.

    Args:
        files: The local folder that ``job_root`` stands for (default: this checkout).
        job_root: The workspace folder jobs are deployed to (``DATABRICKS_JOB_ROOT``).
        token: The bearer token requests must carry (None accepts any).
        start_seconds: How long a run stays PENDING, as a cluster takes to start.
        logs: Where each run's output is written (default: a ``.jobs`` folder under ``files``).
        port: 0 picks a free port.
    """

    def __init__(
        self,
        *,
        files: Path = ROOT,
        job_root: str = "/Workspace/Shared/tributary",
        token: str | None = None,
        start_seconds: float = 0.5,
        logs: Path | None = None,
        port: int = 0,
    ) -> None:
        self.files = files
        self.job_root = job_root.rstrip("/")
        self.token = token
        self.start_seconds = start_seconds
        self.logs = logs or files / ".jobs"
        self.requests: list[dict[str, Any]] = []
        self._runs: dict[int, _Run] = {}
        self._tokens: dict[str, int] = {}
        self._canned: list[_Canned] = []
        self._lock = threading.Lock()
        self._next_id = 455_644_833
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> JobsApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and end the runs still going (their subprocesses)."""
        for run in list(self._runs.values()):
            self._kill(run)
        self._server.shutdown()
        self._server.server_close()

    def answer_next(
        self, status: int, error_code: str, message: str, *, times: int = 1, retry_after: int | None = None
    ) -> None:
        """Answer the next ``times`` API requests with this error instead of serving them."""
        with self._lock:
            self._canned += [_Canned(status, error_code, message, retry_after)] * times

    def run_log(self, run_id: int) -> str:
        run = self._runs[run_id]
        return run.log.read_text(errors="replace") if run.log and run.log.exists() else ""

    # -- the API -----------------------------------------------------------------------------
    def handle(
        self, method: str, path: str, query: dict[str, list[str]], body: Any, auth: str | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """One request -> (status, JSON body, extra headers)."""
        self.requests.append({"method": method, "path": path, "query": query, "body": body})
        if path == "/.well-known/databricks-config":
            return 404, {"error_code": "NOT_FOUND", "message": "Not Found"}, {}
        if self.token is not None and auth != f"Bearer {self.token}":
            return 401, {"error_code": "UNAUTHENTICATED", "message": "Invalid access token."}, {}
        with self._lock:
            canned = self._canned.pop(0) if self._canned else None
        if canned is not None:
            headers = {"Retry-After": str(canned.retry_after)} if canned.retry_after is not None else {}
            return canned.status, {"error_code": canned.error_code, "message": canned.message}, headers
        if method == "POST" and path == f"{API}/submit":
            return self._submit(body or {})
        if method == "GET" and path == f"{API}/get":
            run = self._find(query.get("run_id", [""])[0])
            return (200, self._describe(run), {}) if run else _no_run(query)
        if method == "POST" and path == f"{API}/cancel":
            run = self._find(str((body or {}).get("run_id", "")))
            if run is None:
                return _no_run({"run_id": [str((body or {}).get("run_id"))]})
            self._cancel(run)
            return 200, {}, {}
        return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"No API found for '{method} {path}'"}, {}

    def _submit(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        tasks = body.get("tasks") or []
        token = body.get("idempotency_token")
        if token is not None and len(token) > 64:
            return (
                400,
                {"error_code": "INVALID_PARAMETER_VALUE", "message": "idempotency_token is longer than 64"},
                {},
            )
        if not tasks or "spark_python_task" not in tasks[0] or not tasks[0].get("task_key"):
            return (
                400,
                {
                    "error_code": "INVALID_PARAMETER_VALUE",
                    "message": "tasks[0] needs task_key and spark_python_task",
                },
                {},
            )
        with self._lock:
            if token is not None and token in self._tokens:
                return 200, {"run_id": self._tokens[token]}, {}
            run_id = self._next_id
            self._next_id += 1
            task = tasks[0]
            run = _Run(
                run_id=run_id,
                name=body.get("run_name") or "Untitled",
                task_key=task["task_key"],
                python_file=task["spark_python_task"]["python_file"],
                parameters=list(task["spark_python_task"].get("parameters") or []),
                timeout=float(task.get("timeout_seconds") or body.get("timeout_seconds") or 0),
                submitted=time.time(),
            )
            self._runs[run_id] = run
            if token is not None:
                self._tokens[token] = run_id
        threading.Thread(target=self._execute, args=(run,), daemon=True).start()
        return 200, {"run_id": run_id}, {}

    def _execute(self, run: _Run) -> None:
        time.sleep(self.start_seconds)
        with run.lock:
            if run.cancel_requested:
                self._end(run, "TERMINATED", "CANCELED", "Run was cancelled before it started.")
                return
            local = self._local(run.python_file)
            if local is None or not local.is_file():
                self._end(
                    run, "INTERNAL_ERROR", "FAILED", f"Run failed to start: {run.python_file} does not exist"
                )
                return
            self.logs.mkdir(parents=True, exist_ok=True)
            run.log = self.logs / f"run-{run.run_id}.log"
            env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYTHONPATH": str(self.files)}
            try:
                with open(run.log, "wb") as out:
                    run.process = subprocess.Popen(
                        [sys.executable, str(local), *run.parameters, "--local"],
                        cwd=self.files, env=env, stdout=out, stderr=subprocess.STDOUT,
                    )  # fmt: skip
            except OSError as exc:
                self._end(run, "INTERNAL_ERROR", "FAILED", f"Run failed to start: {exc}")
                return
            run.life_cycle, run.message, run.started = "RUNNING", "In run", time.time()
        try:
            code = run.process.wait(timeout=run.timeout or None)
        except subprocess.TimeoutExpired:
            self._kill(run)
            self._end(run, "TERMINATED", "TIMEDOUT", f"Run timed out after {run.timeout:g} seconds.")
            return
        if run.cancel_requested:
            self._end(run, "TERMINATED", "CANCELED", "Run was cancelled.")
        elif code == 0:
            self._end(run, "TERMINATED", "SUCCESS", "")
        else:
            self._end(
                run, "TERMINATED", "FAILED", _last_error(self.run_log(run.run_id)) or f"exit status {code}"
            )

    def _cancel(self, run: _Run) -> None:
        with run.lock:
            if run.life_cycle in ("TERMINATED", "INTERNAL_ERROR", "SKIPPED"):
                return
            run.cancel_requested = True
            if run.life_cycle == "RUNNING":
                run.life_cycle = "TERMINATING"
        self._kill(run)

    def _kill(self, run: _Run) -> None:
        process = run.process
        if process is not None and process.poll() is None:
            process.kill()  # the subprocess this stand-in started for the run
            process.wait()

    def _end(self, run: _Run, life_cycle: str, result: str, message: str) -> None:
        run.life_cycle, run.result, run.message, run.ended = life_cycle, result, message, time.time()

    def _find(self, raw: str) -> _Run | None:
        return self._runs.get(int(raw)) if raw.isdigit() else None

    def _local(self, python_file: str) -> Path | None:
        for prefix in (self.job_root + "/", "/Workspace" + self.job_root + "/"):
            if python_file.startswith(prefix):
                return self.files / python_file[len(prefix) :]
        return None

    def _describe(self, run: _Run) -> dict[str, Any]:
        """``runs/get``'s answer, in the shape of the Jobs API reference sample."""
        ms = lambda t: int(t * 1000) if t else 0  # noqa: E731
        state: dict[str, Any] = {
            "life_cycle_state": run.life_cycle,
            "state_message": run.message,
            "user_cancelled_or_timedout": run.result in ("CANCELED", "TIMEDOUT"),
        }
        if run.result:
            state["result_state"] = run.result
        url = f"{self.url}/#job/0/run/{run.run_id}"
        task = {"task_key": run.task_key, "run_id": run.run_id + 1, "state": state, "run_page_url": url,
                "spark_python_task": {"python_file": run.python_file, "parameters": run.parameters},
                "start_time": ms(run.started), "end_time": ms(run.ended), "attempt_number": 0}  # fmt: skip
        v2 = {"PENDING": "PENDING", "RUNNING": "RUNNING", "TERMINATING": "TERMINATING"}.get(
            run.life_cycle, "TERMINATED"
        )
        return {
            "job_id": 0,
            "run_id": run.run_id,
            "number_in_job": run.run_id,
            "original_attempt_run_id": run.run_id,
            "run_name": run.name,
            "run_type": "SUBMIT_RUN",
            "state": state,
            "status": {"state": v2},
            "run_page_url": url,
            "start_time": ms(run.submitted),
            "end_time": ms(run.ended),
            "setup_duration": ms((run.started or time.time()) - run.submitted),
            # A multitask run's whole duration: set once it ended, as the Jobs API does.
            "run_duration": ms(run.ended - run.submitted) if run.ended else 0,
            "tasks": [task],
            "attempt_number": 0,
        }


def _no_run(query: dict[str, list[str]]) -> tuple[int, dict[str, Any], dict[str, str]]:
    run_id = (query.get("run_id") or [""])[0]
    return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": f"Run {run_id} does not exist."}, {}


def _last_error(log: str) -> str:
    """The job's error line: its JSON summary's ``error``, else its last line."""
    for line in reversed(log.splitlines()):
        if line.startswith("{") and '"error"' in line:
            try:
                return str(json.loads(line)["error"])
            except (ValueError, KeyError):
                break
    lines = [line for line in log.splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""


def _handler(api: JobsApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers: dict[str, str]
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                status, answer, headers = (
                    400,
                    {"error_code": "MALFORMED_REQUEST", "message": "Invalid JSON"},
                    {},
                )
            else:
                status, answer, headers = api.handle(
                    method, url.path, parse_qs(url.query), body, self.headers.get("Authorization")
                )
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m shared.dev.jobs_api", description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8089)
    p.add_argument("--job-root", default="/Workspace/Shared/tributary", help="DATABRICKS_JOB_ROOT")
    p.add_argument("--token", help="the token requests must carry (DATABRICKS_TOKEN); any if unset")
    args = p.parse_args(argv)
    api = JobsApi(job_root=args.job_root, token=args.token, port=args.port).start()
    print(f"Jobs API stand-in on {api.url} (DATABRICKS_HOST={api.url})", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        api.stop()


if __name__ == "__main__":
    main()
