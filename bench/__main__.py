"""``python -m bench``: run the benchmark, write ``bench/results/latest.json`` and a chart.

Every case runs in its own child process (``bench.cases``) so its peak RSS is its own;
repeats are interleaved (baseline, route, baseline, route, ...) so that ratios compare
runs taken under the same conditions, and the report keeps medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import inputs, report

ROOT = Path(__file__).resolve().parent.parent
#: Route variants measured side by side against the obvious implementation: the route as
#: shipped (CHUNK_ROWS and Parquet row groups at their defaults).
VARIANTS: dict[str, dict[str, Any]] = {"route": {}}
#: Variants also run across file sizes and in the growing-silver series.
SIZE_VARIANTS = ("route",)
RESULTS = Path(__file__).resolve().parent / "results"
SETTLE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Plan:
    """What one invocation measures."""

    name: str
    repeats: int
    headline: inputs.Input  # baseline vs route, side by side
    sizes: tuple[inputs.Input, ...]  # route across file sizes (memory flatness)
    baseline_sizes: tuple[inputs.Input, ...]  # the baseline's memory growth
    series_files: int
    series_events: int
    compare_batches: tuple[int, int]  # 1-based batch numbers whose merge cost is compared
    extra: tuple[inputs.Input, ...] = field(default=())


def full_plan(repeats: int) -> Plan:
    return Plan(
        name="full",
        repeats=repeats,
        headline=inputs.by_events("events-1m", 1_000_000),
        sizes=(
            inputs.by_size("size-10mb", 10),
            inputs.by_size("size-100mb", 100),
            inputs.by_size("size-500mb", 500),
        ),
        baseline_sizes=(inputs.by_size("size-10mb", 10), inputs.by_size("size-100mb", 100)),
        series_files=200,
        series_events=5_000,
        compare_batches=(10, 200),
        extra=(inputs.by_events("events-5m", 5_000_000),),
    )


def quick_plan(repeats: int) -> Plan:
    return Plan(
        name="quick",
        repeats=repeats,
        headline=inputs.by_events("events-100k", 100_000),
        sizes=(inputs.by_size("size-10mb", 10),),
        baseline_sizes=(),
        series_files=40,
        series_events=2_000,
        compare_batches=(10, 40),
    )


class Runner:
    """Starts Azurite for batch state and runs cases in child processes."""

    def __init__(self, work: Path, verbose: bool) -> None:
        self.work = work
        self.verbose = verbose
        self.process: subprocess.Popen[bytes] | None = None
        self.connection = ""
        self.runs = 0

    def __enter__(self) -> Runner:
        from shared.dev import azurite

        ports = azurite.Ports(*azurite.free_ports(3))
        self.process = azurite.start(self.work / "azurite", ports)
        self.connection = ports.connection_string()
        return self

    def __exit__(self, *exc: object) -> None:
        from shared.dev import azurite

        if self.process is not None:
            azurite.stop(self.process)

    def case(self, name: str, args: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
        from shared.settings import PROCESS_ENVIRONMENT

        self.runs += 1
        work = self.work / f"run-{self.runs:03d}-{name}"
        args = {**args, "work": str(work)}
        # What a deployed worker starts with (infra/), unless the caller's shell overrides it.
        env = {
            **PROCESS_ENVIRONMENT,
            **os.environ,
            "BENCH_STORAGE": self.connection,
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        }
        command = [sys.executable, "-m", "bench.cases", name, json.dumps(args)]
        # Let the machine settle first: in a VM, memory a previous case freed (the obvious
        # implementation peaks at 2.7 GB) goes back to the host over the next seconds, and a
        # case started at once ran up to 25% slower. Every case waits alike.
        time.sleep(SETTLE_SECONDS)
        started = time.perf_counter()
        child = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=None if self.verbose else subprocess.DEVNULL,
        )
        assert child.stdout is not None
        output = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        shutil.rmtree(work, ignore_errors=True)
        if child.returncode != 0:
            raise RuntimeError(f"case {name} {args} failed with exit code {child.returncode}")
        result: dict[str, Any] = json.loads(output.decode().strip().splitlines()[-1])
        # The child's own VmHWM (kept across its per-step resets). Not wait4's ru_maxrss:
        # Linux carries the parent's high-water mark into a forked child through exec,
        # so a parent that generated a 500 MB input would inflate every small case.
        result["peak_rss_mb"] = round(result.get("peak_rss_mb") or usage.ru_maxrss / 1024, 1)
        result["wall_seconds"] = round(time.perf_counter() - started, 3)
        # The whole child's CPU time, imports included; a case's own grandchildren add theirs.
        result["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 3)
        # Its minor page faults, its own children's included: a new page each (see first_touch).
        result["minor_faults"] = usage.ru_minflt
        return result


def drop_library_pages() -> dict[str, float]:
    """Drop the page cache of the environment's compiled libraries, once, before any case.

    Linux 6.x keeps pages a process wrote (pip installing the wheels, ``make kernels``) in
    large folios, and maps a whole folio into any process that faults one page of it. In a
    fresh clone straight after ``make venv``, the same code on events-5m peaked at 627 MB of
    RSS against 533 MB once these files had been read back from disk, the anonymous part
    equal (370 MB): ``deltalake``'s library alone counted 81 MB against 51. Written back
    first, then dropped (``POSIX_FADV_DONTNEED``, clean pages only), the libraries are read
    back through page faults by the first cases, as an instance reads a mounted package,
    whatever wrote them and however long ago.
    """
    roots = {Path(sysconfig.get_path(key)) for key in ("platlib", "purelib")} | {ROOT / "shared"}
    files = {p for root in roots for p in root.rglob("*.so*") if p.is_file()}
    dropped = 0
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            dropped += os.fstat(fd).st_size
        finally:
            os.close(fd)
    return {"files": len(files), "mb": round(dropped / 2**20, 1)}


def first_touch(mb: int = 512) -> dict[str, float]:
    """Milliseconds per MB to touch ``mb`` of memory this process has not used, after the
    settle every case waits, and again at once.

    On a VM that hands freed memory back to its host (virtio-balloon free page reporting,
    as here), a page the guest freed a second ago faults on the host when touched again:
    here that cost about 6 ms per MB against 0.2, so a case pays for every MB it touches,
    and the obvious implementation's 2.5 GB weigh seconds in its time. Each case's minor
    page faults are in its results (``minor_faults``) for that reason.
    """
    import numpy as np

    time.sleep(SETTLE_SECONDS)
    started = time.perf_counter()
    block = np.ones(mb * 2**20 // 8)
    settled = time.perf_counter() - started
    del block
    started = time.perf_counter()
    block = np.ones(mb * 2**20 // 8)
    hot = time.perf_counter() - started
    del block
    return {
        "mb": mb,
        "settled_ms_per_mb": round(1000 * settled / mb, 3),
        "hot_ms_per_mb": round(1000 * hot / mb, 3),
    }


def _say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def _summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median seconds, events/s, peak RSS and per-step figures over repeated runs."""
    seconds = _median([r["seconds"] for r in runs])
    rows = runs[0].get("rows_in", 0)
    out: dict[str, Any] = {
        "repeats": len(runs),
        "rows_in": rows,
        "seconds": seconds,
        "events_per_s": round(rows / seconds) if seconds else None,
        "peak_rss_mb": _median([r["peak_rss_mb"] for r in runs]),
        "peak_anon_mb": _median([r.get("peak_anon_mb", 0.0) for r in runs]),
        "seconds_all": [r["seconds"] for r in runs],
        "minor_faults": _median([r.get("minor_faults", 0) for r in runs]),
    }
    if "instance_memory_mb" in runs[0]:
        out["instance_memory_mb"] = runs[0]["instance_memory_mb"]
    steps = runs[0].get("steps")
    if steps:
        out["steps"] = {
            step: {
                key: _median([r["steps"][step][key] for r in runs if step in r["steps"]])
                for key in steps[step]
            }
            for step in steps
        }
    return out


def run(plan: Plan, *, verbose: bool) -> dict[str, Any]:
    results: dict[str, Any] = {"plan": plan.name, "cases": {}}
    cases = results["cases"]
    needed = {plan.headline, *plan.sizes, *plan.baseline_sizes, *plan.extra}
    for spec in sorted(needed, key=lambda s: s.events):
        _say(f"input {spec.name}: {spec.events:,} events (generated once into bench/data/)")
        inputs.ensure(spec)
    _say(f"input series: {plan.series_files} files x {plan.series_events:,} events")
    series_paths = inputs.ensure_series("series", plan.series_files, plan.series_events)

    work = Path(tempfile.mkdtemp(prefix="bench-", dir=inputs.DATA))
    results["library_pages_dropped"] = drop_library_pages()
    _say(f"page cache of the compiled libraries dropped: {results['library_pages_dropped']}")
    results["first_touch"] = {"before": first_touch()}
    _say(f"touching fresh memory: {results['first_touch']['before']}")
    try:
        with Runner(work, verbose) as runner:
            head = str(plan.headline.path)
            # Without the ahead-of-time module a cold instance compiles the loops once
            # (numba caches them on local disk).
            coldstart = runner.case("coldstart", {"repeats": plan.repeats})
            cases["coldstart"] = {
                k: coldstart[k] for k in ("median", "heavy_modules", "python", "worker_version")
            }
            _say(f"cold start of function_app in the real worker: {coldstart['median']}")
            cold = runner.case("compile", {}, env={"NUMBA_CACHE_DIR": str(work / "numba-cold")})
            cases["compile"] = {k: cold[k] for k in ("seconds", "cached_seconds", "ahead_of_time_seconds")}
            _say(
                f"kernels: numba {cold['seconds']}s to compile, {cold['cached_seconds']}s from its cache; "
                f"ahead-of-time module {cold['ahead_of_time_seconds']}s"
            )
            floor = [runner.case("floor", {"input": head}) for _ in range(plan.repeats)]
            cases["floor"] = _summarise(floor)
            _say(f"floor (inflate blocks): {cases['floor']['seconds']}s")
            for parser in ("straightforward", "fast"):
                runs = [runner.case("decode", {"input": head, "parser": parser}) for _ in range(plan.repeats)]
                cases[f"decode_{parser}"] = _summarise(runs)
                _say(f"decode {parser}: {cases[f'decode_{parser}']['events_per_s']:,} events/s")

            runs_by: dict[str, list[dict[str, Any]]] = {
                "baseline": [],
                "ingest": [],
                **{v: [] for v in VARIANTS},
            }
            for i in range(plan.repeats):
                runs_by["baseline"].append(runner.case("baseline", {"input": head}))
                # The route as a user runs it: `python -m shared ingest FILE`, a whole process.
                runs_by["ingest"].append(runner.case("ingest", {"input": head}))
                for variant, options in VARIANTS.items():
                    runs_by[variant].append(runner.case("route", {"input": head, **options}))
                _say(
                    f"end to end {plan.headline.name} #{i + 1}: "
                    + ", ".join(
                        f"{k} {v[-1]['seconds']}s ({v[-1]['peak_rss_mb']} MB)" for k, v in runs_by.items()
                    )
                )
            for kind, runs in runs_by.items():
                cases[kind] = {plan.headline.name: _summarise(runs)}
            base = runs_by["baseline"]
            cases["speedup"] = {
                variant: _median(
                    [b["seconds"] / r["seconds"] for b, r in zip(base, runs_by[variant], strict=True)]
                )
                for variant in VARIANTS
            } | {"input": plan.headline.name}
            # Whole processes against whole processes: the obvious implementation's child and
            # `python -m shared ingest`, wall and CPU (user + sys), imports and all.
            pairs = list(zip(base, runs_by["ingest"], strict=True))
            cases["process_speedup"] = {
                "wall": _median([b["wall_seconds"] / r["process_wall_seconds"] for b, r in pairs]),
                "cpu": _median([b["cpu_seconds"] / r["process_cpu_seconds"] for b, r in pairs]),
                "input": plan.headline.name,
            }
            _say(f"speed-up over the obvious implementation, same run: {cases['speedup']}")
            _say(f"as a user runs it (whole processes): {cases['process_speedup']}")
            # The Databricks route's job on local PySpark, same file, once: what a cluster
            # node's worth of Spark costs against the Function for one file.
            spark_run = runner.case("spark", {"input": head})
            ingest_median = cases["ingest"][plan.headline.name]["seconds"]
            cases["spark"] = {plan.headline.name: spark_run} | {
                "ratio_to_ingest": round(spark_run["seconds"] / ingest_median, 2)
            }
            ratio = cases["spark"]["ratio_to_ingest"]
            _say(f"local PySpark job: {spark_run['seconds']}s, {ratio}x the ingest process")

            for spec in (*plan.sizes, *plan.extra):
                repeats = 1 if spec.events > 500_000 else plan.repeats
                for variant in SIZE_VARIANTS:
                    options = VARIANTS[variant]
                    runs = [
                        runner.case("route", {"input": str(spec.path), **options}) for _ in range(repeats)
                    ]
                    cases[variant][spec.name] = _summarise(runs) | {
                        "file_mb": round(spec.path.stat().st_size / 1e6, 1)
                    }
                    got = cases[variant][spec.name]
                    _say(f"{variant} {spec.name}: {got['seconds']}s, {got['peak_rss_mb']} MB peak")
            for spec in plan.baseline_sizes:
                runs = [runner.case("baseline", {"input": str(spec.path)})]
                cases["baseline"][spec.name] = _summarise(runs) | {
                    "file_mb": round(spec.path.stat().st_size / 1e6, 1)
                }
                got = cases["baseline"][spec.name]
                _say(f"baseline {spec.name}: {got['seconds']}s, {got['peak_rss_mb']} MB peak")

            cases["series"] = {}
            for variant in SIZE_VARIANTS:
                _say(f"series, {variant}: {plan.series_files} batches into one lake (silver and gold growth)")
                args = {"inputs": [str(p) for p in series_paths], **VARIANTS[variant]}
                series = runner.case("series", args)
                summary = _series_summary(series["batches"], plan.compare_batches)
                summary["peak_rss_mb"] = series["peak_rss_mb"]
                cases["series"][variant] = summary
                first, last = plan.compare_batches
                _say(
                    f"silver step, batch {first} vs {last}: {summary['silver_ratio']}x"
                    f" (amortised {summary['silver_mean_ratio']}x);"
                    f" gold {summary['gold_ratio']}x (amortised {summary['gold_mean_ratio']}x)"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["first_touch"]["after"] = first_touch()
    _say(f"touching fresh memory, at the end: {results['first_touch']['after']}")
    return results


def _series_summary(batches: list[dict[str, Any]], compare: tuple[int, int]) -> dict[str, Any]:
    """Per-batch step seconds; the cost at batch ``a`` vs ``b`` (medians of 5 around each);
    and the amortised cost, the mean over the first vs the last quarter of the batches,
    which counts the compactions a few batches pay for all."""

    def around(step: str, n: int) -> float:
        lo, hi = max(0, n - 3), min(len(batches), n + 2)
        return _median([b["seconds"][step] for b in batches[lo:hi]])

    def quarters(step: str) -> list[float]:
        k = max(1, len(batches) // 4)
        parts = (batches[:k], batches[-k:])
        return [round(statistics.mean(b["seconds"][step] for b in part), 4) for part in parts]

    first, last = compare
    silver_a, silver_b = around("silver", first), around("silver", last)
    gold_a, gold_b = around("gold", first), around("gold", last)
    silver_mean, gold_mean = quarters("silver"), quarters("gold")
    return {
        "batches": len(batches),
        "compare": list(compare),
        "silver_seconds": [silver_a, silver_b],
        "silver_ratio": round(silver_b / silver_a, 2),
        "silver_mean_seconds": silver_mean,
        "silver_mean_ratio": round(silver_mean[1] / silver_mean[0], 2),
        "gold_seconds": [gold_a, gold_b],
        "gold_ratio": round(gold_b / gold_a, 2),
        "gold_mean_seconds": gold_mean,
        "gold_mean_ratio": round(gold_mean[1] / gold_mean[0], 2),
        "bronze_seconds": [around("bronze", first), around("bronze", last)],
        "per_batch": [b["seconds"] for b in batches],
    }


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run the plan, write the results and the chart."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="small inputs, one repeat: a smoke run in under 3 minutes"
    )
    parser.add_argument("--repeats", type=int, default=None, help="repeats per case (default 3, quick 1)")
    parser.add_argument(
        "--out", type=Path, default=RESULTS / "latest.json", help="results file (the chart goes beside it)"
    )
    parser.add_argument("--verbose", action="store_true", help="show the children's stderr")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    plan = quick_plan(repeats) if args.quick else full_plan(repeats)
    started = time.perf_counter()
    load_before = os.getloadavg()
    results = run(plan, verbose=args.verbose)
    results["machine"] = machine() | {
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }
    results["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    results["targets"] = report.targets(results)
    results["large_file_bytes"] = {v: report.large_file_bytes(results, v) for v in SIZE_VARIANTS}
    results["cost"] = report.cost(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    chart = report.chart(results, args.out.with_suffix(".png"))
    print(report.table(results))
    _say(f"wrote {args.out} and {chart} in {results['elapsed_seconds']}s")
    return 0


def machine() -> dict[str, Any]:
    """Where the numbers came from."""
    info: dict[str, Any] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("Model name", "CPU(s)", "Thread(s) per core"):
                info[key.strip()] = value.strip()
        with open("/proc/meminfo") as fh:
            info["MemTotal"] = fh.readline().split(":")[1].strip()
    except OSError:
        pass
    import deltalake
    import polars

    info["polars"] = polars.__version__
    info["deltalake"] = deltalake.__version__
    return info


if __name__ == "__main__":
    raise SystemExit(main())
