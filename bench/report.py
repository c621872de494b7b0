"""Turn a results dict into the target checks, a Markdown table and a PNG chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MEMORY_TARGET_MB = 600
SPEEDUP_TARGET = 5.0
# The same route as a user runs it does at least this many times less work (CPU, user + sys).
CPU_SPEEDUP_TARGET = 3.0
#: A Flex Consumption instance has 2,048 MB by default; keep a quarter for the host.
INSTANCE_BUDGET_MB = 1_536
#: Wall time one file may take in-function: well inside the activity timeout, and short
#: enough that a retry after a crash costs little.
TIME_BUDGET_S = 60.0


def large_file_bytes(results: dict[str, Any], variant: str = "route") -> dict[str, Any]:
    """The LARGE_FILE_BYTES a variant supports: the largest file within memory and time.

    Peak RSS and seconds are fitted linearly against file size over the measured sizes
    (both grow about linearly while a step holds a whole batch); the threshold is the
    smaller of the sizes where the fit reaches the memory limit and the time budget,
    rounded down to 16 MiB. With the 600 MB target and with the instance budget.
    """
    sized = sorted(
        (c["file_mb"], c["peak_rss_mb"], c["seconds"])
        for c in results["cases"].get(variant, {}).values()
        if "file_mb" in c
    )
    if len(sized) < 2:
        return {}

    def fit(index: int) -> tuple[float, float]:
        xs = [s[0] for s in sized]
        ys = [s[index] for s in sized]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
        return slope, my - slope * mx

    def size_at(limit: float, index: int) -> float:
        slope, intercept = fit(index)
        return float("inf") if slope <= 0 else max(0.0, (limit - intercept) / slope)

    by_time = size_at(TIME_BUDGET_S, 2)
    measured = sized[-1][0]
    out: dict[str, Any] = {
        "variant": variant,
        "time_budget_s": TIME_BUDGET_S,
        "max_mb_by_time": round(by_time, 1),
        "largest_measured_mb": measured,
    }
    for label, limit in (("target_600mb", MEMORY_TARGET_MB), ("instance_1536mb", INSTANCE_BUDGET_MB)):
        by_memory = size_at(limit, 1)
        # Never beyond the largest file measured: the fit says nothing past it.
        mb = min(by_memory, by_time, measured)
        mib16 = int(mb * 1e6 // (16 * 2**20)) * 16 * 2**20
        out[label] = {"max_mb_by_memory": round(by_memory, 1), "large_file_bytes": mib16}
    return out


def cost(results: dict[str, Any]) -> dict[str, Any]:
    """Cost per million events on both routes, from the headline file's measured seconds.

    In-function: each layer step's median seconds on the headline case x the
    ``INSTANCE_MEMORY_MB`` the route ran with, plus one execution per step, at Flex
    Consumption's on-demand rates. Databricks: the ``spark`` case's seconds on the smallest
    job cluster (one driver and one worker, Standard_DS3_v2, Jobs Compute Premium). That case
    is the job on this machine's local PySpark, a stand-in for a cluster's run: a real run also
    pays the cluster's start (minutes, billed) and runs on other CPUs. Rates are list prices
    as of ``shared.costs.RATES_AS_LISTED``, East US for the VM.
    """
    from shared import costs

    cases = results["cases"]
    headline = cases.get("speedup", {}).get("input")
    out: dict[str, Any] = {"rates_as_listed": costs.RATES_AS_LISTED}
    route = cases.get("route", {}).get(headline) if headline else None
    if route and route.get("steps") and route.get("instance_memory_mb"):
        memory = int(route["instance_memory_mb"])
        layers = {k: v["seconds"] for k, v in route["steps"].items() if k != "register"}
        gb = sum(costs.gb_seconds(s, memory) for s in layers.values())
        usd = costs.functions_usd(gb, executions=len(layers))
        out["in_function"] = {
            "input": headline,
            "events": route["rows_in"],
            "instance_memory_mb": memory,
            "step_seconds": layers,
            "gb_seconds": round(gb, 3),
            "usd": round(usd, 9),
            "usd_per_million_events": round(costs.per_million_events(usd, route["rows_in"]) or 0, 9),
        }
    spark = cases.get("spark", {}).get(headline) if headline else None
    if spark:
        usd = costs.smallest_cluster_usd(spark["seconds"])
        out["databricks"] = {
            "input": headline,
            "events": spark["rows_in"],
            "seconds": spark["seconds"],
            "seconds_from": "local PySpark on this machine, a stand-in for a cluster's run",
            "cluster": f"{costs.SMALLEST_CLUSTER_NODES} x Standard_DS3_v2, Jobs Compute Premium",
            "usd": round(usd, 9),
            "usd_per_million_events": round(costs.per_million_events(usd, spark["rows_in"]) or 0, 9),
        }
    return out


def targets(results: dict[str, Any]) -> dict[str, Any]:
    """Each issue-4 target with its measured figure and whether it is met, per route variant."""
    cases = results["cases"]
    out: dict[str, Any] = {}
    process = cases.get("process_speedup")
    if process:
        for key, target in (("wall", SPEEDUP_TARGET), ("cpu", CPU_SPEEDUP_TARGET)):
            out[f"ingest process vs obvious process, {key} time"] = {
                "target": f">= {target}x",
                "measured": process[key],
                "met": process[key] >= target,
            }
    for variant in ("route", "route_proposal"):
        if variant not in cases:
            continue
        speedup = cases["speedup"][variant]
        out[f"{variant}: speed-up vs obvious"] = {
            "target": f">= {SPEEDUP_TARGET}x",
            "measured": speedup,
            "met": speedup >= SPEEDUP_TARGET,
        }
        sized = {k: v for k, v in cases[variant].items() if "file_mb" in v}
        if sized:
            biggest = max(sized, key=lambda k: sized[k]["file_mb"])
            smallest = min(sized, key=lambda k: sized[k]["file_mb"])
            peak = sized[biggest]["peak_rss_mb"]
            out[f"{variant}: peak RSS on {biggest}"] = {
                "target": f"<= {MEMORY_TARGET_MB} MB",
                "measured": peak,
                "met": peak <= MEMORY_TARGET_MB,
            }
            anon = sized[biggest].get("peak_anon_mb", 0.0)
            out[f"{variant}: peak anonymous memory on {biggest} (RSS less library pages)"] = {
                "target": f"<= {MEMORY_TARGET_MB} MB",
                "measured": anon,
                "met": 0 < anon <= MEMORY_TARGET_MB,
            }
            ratio = round(peak / sized[smallest]["peak_rss_mb"], 2)
            out[f"{variant}: peak RSS {biggest} / {smallest}"] = {
                "target": "<= 1.5x",
                "measured": ratio,
                "met": ratio <= 1.5,
            }
        series = cases.get("series", {}).get(variant)
        if series:
            first, last = series["compare"]
            n = series["batches"] // 4
            for step, target in (("silver", "<= 2x"), ("gold", "flat at equal touched keys (<= 2x)")):
                out[f"{variant}: {step} step, batch {last} / batch {first}"] = {
                    "target": target,
                    "measured": series[f"{step}_ratio"],
                    "met": series[f"{step}_ratio"] <= 2.0,
                }
                if f"{step}_mean_ratio" in series:  # compactions included
                    out[f"{variant}: {step} step amortised, last {n} batches / first {n}"] = {
                        "target": "<= 2x",
                        "measured": series[f"{step}_mean_ratio"],
                        "met": series[f"{step}_mean_ratio"] <= 2.0,
                    }
    return out


def table(results: dict[str, Any]) -> str:
    """The README table: one row per measured case."""
    cases = results["cases"]
    lines = [
        "| case | input | events | seconds (median) | events/s | peak RSS MB | peak anonymous MB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, key in (
        ("floor: inflate Avro blocks", "floor"),
        ("decode, straightforward", "decode_straightforward"),
        ("decode, fast path", "decode_fast"),
    ):
        lines.append(_row(label, "headline", cases[key]))
    labels = {
        "ingest": "python -m shared ingest (whole process)",
        "baseline": "obvious implementation",
        "route_defaults": "in-function route, shipped settings",
        "route": "in-function route",
        "route_proposal": "in-function route, recommended settings + proposed silver",
    }
    for kind, label in labels.items():
        for name, c in cases.get(kind, {}).items():
            size = f" ({c['file_mb']} MB)" if "file_mb" in c else ""
            lines.append(_row(label, f"{name}{size}", c))
    lines.append("")
    lines.append("| target | measured | met |")
    lines.append("|---|---|---|")
    for name, t in results.get("targets", {}).items():
        lines.append(f"| {name} ({t['target']}) | {t['measured']} | {'yes' if t['met'] else 'NO'} |")
    lines += cost_table(results.get("cost", {}))
    return "\n".join(lines)


def cost_table(spent: dict[str, Any]) -> list[str]:
    """The cost lines of the README table: one row per route priced (``cost``)."""
    routes = [(k, spent[k]) for k in ("in_function", "databricks") if k in spent]
    if not routes:
        return []
    rates = f"list prices, {spent['rates_as_listed']}"
    lines = [
        "",
        f"| route | input | seconds | USD | USD per million events ({rates}) |",
        "|---|---|---:|---:|---:|",
    ]
    for route, c in routes:
        seconds = c.get("seconds", sum(c.get("step_seconds", {}).values()))
        lines.append(
            f"| {route.replace('_', '-')} | {c['input']} | {round(seconds, 3)} | {c['usd']} "
            f"| {c['usd_per_million_events']} |"
        )
    return lines


def _row(label: str, name: str, c: dict[str, Any]) -> str:
    cells = [
        label,
        name,
        f"{c['rows_in']:,}",
        str(c["seconds"]),
        f"{c['events_per_s']:,}",
        str(c["peak_rss_mb"]),
        str(c.get("peak_anon_mb", "")),
    ]
    return "| " + " | ".join(cells) + " |"


def chart(results: dict[str, Any], path: Path) -> Path:
    """Four panels: events/s, per-step seconds, peak RSS vs file size, cost per batch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = results["cases"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    headline = cases["speedup"]["input"]
    base = cases["baseline"][headline]
    route = cases.get("route_proposal", cases["route"])[headline]
    variants = [k for k in ("baseline", "route_defaults", "route", "route_proposal") if k in cases]

    ax = axes[0][0]
    ax.bar(
        [v.replace("route_", "") for v in variants],
        [cases[v][headline]["events_per_s"] for v in variants],
        color=["#999", "#8bc", "#2a7", "#175"][: len(variants)],
    )
    ax.set_title(f"end to end, {headline}: events/s")

    ax = axes[0][1]
    steps = [
        s
        for s in ("decode", "validate", "register", "bronze", "silver", "gold")
        if s in base.get("steps", {}) or s in route.get("steps", {})
    ]
    width = 0.4
    xs = range(len(steps))
    ax.bar(
        [x - width / 2 for x in xs],
        [base["steps"].get(s, {}).get("seconds", 0) for s in steps],
        width,
        label="obvious",
        color="#999",
    )
    ax.bar(
        [x + width / 2 for x in xs],
        [route["steps"].get(s, {}).get("seconds", 0) for s in steps],
        width,
        label="route",
        color="#2a7",
    )
    ax.set_xticks(list(xs), steps)
    ax.set_title("seconds per step (route decodes inside bronze)")
    ax.legend()

    ax = axes[1][0]
    for kind, colour in (("route", "#2a7"), ("route_proposal", "#175"), ("baseline", "#999")):
        sized = sorted(
            (c["file_mb"], c["peak_rss_mb"]) for c in cases.get(kind, {}).values() if "file_mb" in c
        )
        if sized:
            ax.plot([s[0] for s in sized], [s[1] for s in sized], "o-", color=colour, label=kind)
    ax.axhline(MEMORY_TARGET_MB, color="red", linestyle="--", label="600 MB target")
    ax.set_xlabel("Capture file MB")
    ax.set_ylabel("peak RSS MB")
    ax.set_title("peak RSS vs file size")
    ax.legend()

    ax = axes[1][1]
    for (variant, series), style in zip(cases.get("series", {}).items(), ("-", "--"), strict=False):
        per = series["per_batch"]
        for step, colour in (("silver", "#c84"), ("gold", "#8a4")):
            ax.plot(
                range(1, len(per) + 1),
                [b.get(step, 0) for b in per],
                style,
                color=colour,
                label=f"{step} ({variant}, {series[step + '_ratio']}x)",
            )
    ax.set_xlabel("batch number (same batch size, same day)")
    ax.set_ylabel("seconds")
    ax.set_title("cost per batch as silver grows")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
