"""Cold start: what loading the app through the real Python worker costs a fresh instance.

Each repeat starts a fresh worker process (``tests.worker.harness.Worker``: the real
``azure_functions_runtime`` behind a stand-in for the host's proxy worker) with the app
settings of ``local.settings.example.json``, and measures what a cold instance pays before
its first invocation: ``WorkerInitRequest`` (which imports ``function_app`` and indexes it),
``FunctionsMetadataRequest`` and one ``FunctionLoadRequest`` per function. It reports

* ``spawn_to_loaded_s``: from starting the process to the last load response (interpreter,
  gRPC, the worker library and the app);
* ``init_to_loaded_s``: from sending the init request to the last load response (the app);
* ``peak_rss_mb``: the worker process's VmHWM when it exits (nothing is invoked);
* ``heavy_modules``: which of the data stack's modules loading imported.

``python -m bench.coldstart [--repeats N]`` prints the medians and every repeat as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOCAL_SETTINGS = ROOT / "local.settings.example.json"


def app_settings() -> dict[str, str]:
    """The Values of local.settings.example.json: what ``func start`` puts in the worker's env."""
    return dict(json.loads(LOCAL_SETTINGS.read_text())["Values"])


def measure_once(env: dict[str, str | None] | None = None) -> dict[str, Any]:
    """Load the app in one fresh worker process; what it cost.

    Raises:
        RuntimeError: the worker did not load every function.
    """
    from tests.worker.harness import Worker, pb

    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        started = time.perf_counter()
        worker = Worker(env=env if env is not None else app_settings(), report=report)
        try:
            worker.start().load()
            loaded = time.perf_counter() - started
            failed = worker.init_response.result.status != pb.StatusResult.Success or any(
                r.result.status != pb.StatusResult.Success for r in worker.load_responses.values()
            )
            if failed or not worker.load_responses:
                raise RuntimeError(f"the worker did not load the app: {worker.init_response.result}")
        finally:
            worker.close()
        child = json.loads(report.read_text())
    return {
        "spawn_to_loaded_s": round(loaded, 3),
        "init_to_loaded_s": round(worker.timings["loaded"], 3),
        "peak_rss_mb": round(child["peak_rss_kb"] / 1024, 1),
        "heavy_modules": child["heavy_modules"],
        "functions": len(worker.load_responses),
        "python": child["python"],
        "worker_version": child["worker_version"],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure ``--repeats`` cold loads and print the medians and each run as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    result = summary([measure_once() for _ in range(args.repeats)])
    print(json.dumps(result, indent=2))
    return result


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The medians of several cold loads, what they imported, and every run."""
    return {
        "case": "coldstart",
        "repeats": len(runs),
        "median": {
            key: statistics.median(run[key] for run in runs)
            for key in ("spawn_to_loaded_s", "init_to_loaded_s", "peak_rss_mb")
        },
        "heavy_modules": sorted({m for run in runs for m in run["heavy_modules"]}),
        "python": runs[0]["python"],
        "worker_version": runs[0]["worker_version"],
        "runs": runs,
    }


if __name__ == "__main__":
    main()
