"""What one benchmark child process runs: ``python -m bench.cases CASE JSON_ARGS``.

Each case runs in a fresh interpreter so that its peak RSS is its own: ``VmHWM`` of the
child, which also gives per-step peaks after a reset through ``/proc/self/clear_refs``
before each step (the overall peak is kept across resets). The last stdout line is the
JSON result.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _hwm_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


_PEAK_MB = [0.0]  # the process's peak across resets: wait4's ru_maxrss forgets older ones


class _AnonSampler:
    """Peak anonymous memory (RSS minus file-backed pages), sampled every 2 ms.

    RSS also counts the pages of shared libraries a process has executed (polars,
    deltalake, pyarrow: about 170 MB here), which are clean and reclaimable; the anonymous
    part is what grows with data and what runs an instance out of memory. Linux keeps no
    high-water mark for it, hence sampling: of this process, or of a child's ``pid``.
    """

    def __init__(self, pid: int | str = "self") -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.statm = f"/proc/{pid}/statm"
        self.step = 0.0
        self.overall = 0.0
        threading.Thread(target=self._run, name="anon-sampler", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                with open(self.statm) as fh:
                    fields = fh.read().split()
            except OSError:  # another process's, and it has ended
                return
            if not fields or fields[1] == "0":  # a zombie's: reaped next
                return
            anon = (int(fields[1]) - int(fields[2])) * self.page / 2**20
            self.step = max(self.step, anon)
            self.overall = max(self.overall, anon)
            time.sleep(0.002)


_ANON = _AnonSampler()


def _reset_hwm() -> None:
    # "5" resets the peak RSS counter (Linux >= 4.0); harmless where unsupported.
    _ANON.step = 0.0
    _PEAK_MB[0] = max(_PEAK_MB[0], _hwm_mb())
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def _measured(action: Callable[[], Any]) -> tuple[Any, float, float, float]:
    _reset_hwm()
    started = time.perf_counter()
    result = action()
    seconds = round(time.perf_counter() - started, 3)
    return result, seconds, round(_hwm_mb(), 1), round(_ANON.step, 1)


def _warm(*, scalar_geo: bool = False) -> None:
    """Load what a warm Function instance already holds, for every case alike.

    The first steps of a process load the geo networks (~0.3 s) and the compiled loops
    (0.1 s for the built module, 0.4 s from numba's cache; the ``compile`` case measures
    both, and a cold instance); an instance pays that once, not per batch. The baseline
    looks addresses up one at a time through geoip2fast (``scalar_geo``), so it is
    geoip2fast's file that it loads.
    """
    from shared.pipeline import geo, kernels

    if scalar_geo:
        geo.region_of(geo.country_of("8.8.8.8"))
    else:
        geo.warm()
    kernels.warm()


#: The in-function route on every input, the files past LARGE_FILE_BYTES too (events-5m is
#: 490 MB): their memory is what shows that the route is flat in file size, and so where the
#: threshold may sit.
IN_FUNCTION = {"LARGE_FILE_BYTES": str(1 << 40)}


def _tune(args: dict[str, Any]) -> dict[str, str]:
    """Settings a case overrides: ``chunk_rows`` is the CHUNK_ROWS setting."""
    return {"CHUNK_ROWS": str(args["chunk_rows"])} if args.get("chunk_rows") else {}


def _settings(work: Path, extra: dict[str, str] | None = None) -> Any:
    from shared.settings import Settings

    return Settings.from_env(
        {
            "AzureWebJobsStorage": os.environ["BENCH_STORAGE"],
            "LAKE_URI": str(work / "lake"),
            "CAPTURE_URI": str(work / "landing"),
            "QUARANTINE_URI": str(work / "quarantine"),
            "BATCH_STATE_TABLE": "bench" + uuid.uuid4().hex[:12],
            **IN_FUNCTION,
            **(extra or {}),
        }
    )


def _pipeline(args: dict[str, Any], work: Path) -> Any:
    from shared.app import build

    return build(_settings(work, _tune(args)))


def _land(path: Path, work: Path) -> Path:
    landing = work / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    target = landing / path.name
    try:
        os.link(path, target)
    except OSError:
        shutil.copyfile(path, target)
    return target


def _run_steps(app: Any, source: Path) -> dict[str, Any]:
    """register, validate, bronze, silver, gold: each timed, each with its own peak RSS."""
    from shared import layers
    from shared.batches import LAYERS
    from shared.services.intake import register

    steps: dict[str, dict[str, float]] = {}
    batch, seconds, peak, anon = _measured(
        lambda: register(app.settings, app.states, app.storage.info(str(source)))
    )
    steps["register"] = {"seconds": seconds, "peak_rss_mb": peak, "peak_anon_mb": anon}
    result: Any = None
    for layer in LAYERS:
        result, seconds, peak, anon = _measured(lambda: layers.run(app.context, layer, batch.ref))  # noqa: B023
        steps[layer.label] = {"seconds": seconds, "peak_rss_mb": peak, "peak_anon_mb": anon}
        if result.state.stops:
            break
    out = result.to_dict() if result is not None else {}
    return {"steps": steps, "state": out.get("state"), "counts": out.get("counts", {})}


def route(args: dict[str, Any]) -> dict[str, Any]:
    """The in-function route, end to end, on a fresh local lake."""
    work = Path(args["work"])
    source = _land(Path(args["input"]), work)
    pipeline = _pipeline(args, work)
    _warm()
    started = time.perf_counter()
    out = _run_steps(pipeline, source)
    out["seconds"] = round(time.perf_counter() - started, 3)
    out["rows_in"] = out["counts"].get("rows_in", 0)
    # What the batch's GB-seconds are counted with (bench.report.cost).
    out["instance_memory_mb"] = pipeline.settings.instance_memory_mb
    from shared.pipeline import kernels

    out["kernels"] = "ahead-of-time" if kernels.ahead_of_time() else "numba"
    return out


def baseline(args: dict[str, Any]) -> dict[str, Any]:
    """The obvious implementation (bench/baseline.py) on a fresh local lake."""
    from bench import baseline as obvious

    work = Path(args["work"])
    _warm(scalar_geo=True)
    started = time.perf_counter()
    out = obvious.run(Path(args["input"]), work / "lake")
    out["seconds"] = round(time.perf_counter() - started, 3)
    out["steps"] = {k: {"seconds": v} for k, v in out.pop("durations").items() if k != "total"}
    return out


def decode_only(args: dict[str, Any]) -> dict[str, Any]:
    """Decoding alone, with the chosen body parser; consumes and drops each chunk."""
    from shared.contracts import USER_ACTIVITY
    from shared.pipeline import decode

    path = Path(args["input"])
    rows = 0
    _warm()
    started = time.perf_counter()
    with path.open("rb") as fh:
        for chunk in decode.decode(fh, str(path), USER_ACTIVITY, parser=args["parser"]):
            rows += chunk.height
    return {"seconds": round(time.perf_counter() - started, 3), "rows_in": rows}


def floor(args: dict[str, Any]) -> dict[str, Any]:
    """The physical floor: read and inflate every Avro block (ISA-L), decode nothing."""
    from shared.pipeline import capture

    path = Path(args["input"])
    records = 0
    started = time.perf_counter()
    with path.open("rb", buffering=1 << 20) as fh:
        header = capture.read_header(fh)
        for count, _ in capture.blocks(fh, header):
            records += count
    return {"seconds": round(time.perf_counter() - started, 3), "rows_in": records}


def compile_kernels(args: dict[str, Any]) -> dict[str, Any]:
    """The loops' start-up cost: numba compiling them into an empty cache (a cold instance
    without the ahead-of-time module), numba loading them from that cache, and a process
    importing the ahead-of-time module instead."""
    started = time.perf_counter()
    from shared.pipeline import loops

    loops.warm()
    seconds = round(time.perf_counter() - started, 3)

    def fresh(code: str) -> list[str]:
        timed = f"import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"
        run = subprocess.run([sys.executable, "-c", timed], capture_output=True, text=True, check=True)
        return run.stdout.split()

    cached = fresh("from shared.pipeline import loops; loops.warm()")
    ahead, built = fresh("from shared.pipeline import kernels as k; k.warm(); print(k.ahead_of_time())")
    return {
        "seconds": seconds,
        "cached_seconds": round(float(cached[-1]), 3),
        # None without a current build (no C compiler): the route then runs numba's loops
        "ahead_of_time_seconds": round(float(built), 3) if ahead == "True" else None,
    }


def series(args: dict[str, Any]) -> dict[str, Any]:
    """Files ingested one after another into one lake: how each step's cost grows."""
    work = Path(args["work"])
    pipeline = _pipeline(args, work)
    _warm()
    batches = []
    for raw in args["inputs"]:
        source = _land(Path(raw), work)
        out = _run_steps(pipeline, source)
        batches.append(
            {
                "seconds": {k: v["seconds"] for k, v in out["steps"].items()},
                "rows_valid": out["counts"].get("rows_valid", 0),
                "silver_inserted": out["counts"].get("silver_inserted", 0),
            }
        )
        print(f"  batch {len(batches)}/{len(args['inputs'])}", file=sys.stderr, flush=True)
    return {"batches": batches}


def _timed_process(command: list[str], env: dict[str, str]) -> tuple[int, bytes, dict[str, float]]:
    """Run ``command`` to its end, timed from outside (wait4): its exit code, its stdout, and
    its wall, CPU (user + sys) and peak RSS, the process's imports and start-up included."""
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    anon = _AnonSampler(child.pid)
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = round(time.perf_counter() - started, 3)
    return (
        os.waitstatus_to_exitcode(status),
        output,
        {
            "seconds": wall,
            "process_wall_seconds": wall,
            "process_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "peak_anon_mb": round(anon.overall, 1),
        },
    )


def ingest(args: dict[str, Any]) -> dict[str, Any]:
    """``python -m shared ingest FILE`` as a user runs it: a fresh process, fresh lake and state.

    Timed from outside (wait4): wall, CPU (user + sys) and peak RSS of that process, its
    imports, settings, batch state and every layer included.
    """
    work = Path(args["work"])
    source = _land(Path(args["input"]), work)
    env = {
        **os.environ,
        "AzureWebJobsStorage": os.environ["BENCH_STORAGE"],
        "LAKE_URI": str(work / "lake"),
        "CAPTURE_URI": str(work / "landing"),
        "QUARANTINE_URI": str(work / "quarantine"),
        "BATCH_STATE_TABLE": "bench" + uuid.uuid4().hex[:12],
        **IN_FUNCTION,
    }
    code, output, timed = _timed_process(
        [sys.executable, "-m", "shared", "ingest", str(source), "--json"], env
    )
    if code != 0:
        raise RuntimeError(f"ingest of {source} failed")
    batch = json.loads(output.decode().strip().splitlines()[-1])
    return {
        **timed,
        "state": batch["state"],
        "rows_in": batch["counts"].get("rows_in", 0),
        "counts": batch["counts"],
    }


def spark(args: dict[str, Any]) -> dict[str, Any]:
    """The Databricks route's job (``databricks_jobs/main.py --local``) on this machine's
    local PySpark, on the same file as the route: a whole process, timed from outside."""
    from databricks_jobs.layers import lake_layout
    from shared.adapters.databricks import JobRun
    from shared.contracts import USER_ACTIVITY
    from shared.pipeline.geo import database_sha256

    work = Path(args["work"])
    source = _land(Path(args["input"]), work)
    run = JobRun(
        batch_id="bench" + uuid.uuid4().hex[:12],
        dataset=USER_ACTIVITY.dataset,
        source=str(source),
        format="avro",
        batch_time="2026-11-21T12:05:00Z",
        tables=lake_layout(str(work / "lake"), USER_ACTIVITY),
        geo_sha256=database_sha256(),
    )
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYTHONPATH": str(root)}
    command = [sys.executable, str(root / "databricks_jobs" / "main.py"), *run.parameters(), "--local"]
    code, output, timed = _timed_process(command, env)
    if code != 0:
        raise RuntimeError(f"the Spark job failed: {output.decode()[-2000:]}")
    figures = json.loads(output.decode().strip().splitlines()[-1])
    return {
        **timed,
        "rows_in": int(figures.get("rows_in", 0)),
        "silver_inserted": int(figures.get("silver_inserted", 0)),
    }


def coldstart(args: dict[str, Any]) -> dict[str, Any]:
    """Loading function_app in the real worker, as a cold instance pays it (bench.coldstart)."""
    from bench import coldstart as cold

    return cold.summary([cold.measure_once() for _ in range(int(args.get("repeats", 3)))])


CASES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "ingest": ingest,
    "spark": spark,
    "coldstart": coldstart,
    "route": route,
    "baseline": baseline,
    "decode": decode_only,
    "floor": floor,
    "compile": compile_kernels,
    "series": series,
}


def main() -> None:
    case, raw = sys.argv[1], sys.argv[2]
    result = CASES[case](json.loads(raw))
    # A case that measured another process (ingest, spark) reports that process's peaks instead.
    result.setdefault("peak_rss_mb", round(max(_PEAK_MB[0], _hwm_mb()), 1))
    result.setdefault("peak_anon_mb", round(_ANON.overall, 1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
