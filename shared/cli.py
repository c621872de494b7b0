"""``python -m shared``: generate Capture files, ingest them, inspect batches and tables.

Every command reads the same settings the Function app does (environment over
``local.settings.json``); local runs default to Azurite.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl

from shared.adapters.state import BatchState
from shared.adapters.storage import ObjectInfo, Storage, join
from shared.errors import PipelineError
from shared.settings import Settings

SOURCE_SUFFIXES = (
    ".avro",
    ".parquet",
    ".csv",
    ".csv.gz",
    ".json",
    ".json.gz",
    ".jsonl",
    ".jsonl.gz",
    ".ndjson",
    ".ndjson.gz",
)
TABLES = {
    "bronze": "bronze/user_activity",
    "quarantine": "quarantine/user_activity",
    "silver": "silver/user_activity",
    "user_watch_time": "gold/user_watch_time",
    "daily_user_watch_time": "gold/daily_user_watch_time",
    "region_daily_watch_time": "gold/region_daily_watch_time",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, run one command, return its exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return int(args.run(args))
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shared",
        description="Tributary: Event Hubs Capture files -> bronze, silver and gold Delta tables.",
    )
    sub = parser.add_subparsers(title="commands")

    gen = sub.add_parser(
        "generate",
        help="write a synthetic day of Capture files",
        description="Write Capture-format Avro files in Capture's blob layout "
        "{namespace}/{eventhub}/{partition}/{YYYY}/{MM}/{DD}/{hh}/{mm}/{ss}.avro.",
    )
    gen.add_argument("--out", required=True, help="local folder or az://container/prefix")
    gen.add_argument("--files", type=int, default=24, help="number of files (default 24)")
    gen.add_argument("--events-per-file", type=int, default=1000, help="Avro records per file (default 1000)")
    gen.add_argument(
        "--defect-rate", type=float, default=0.0, help="fraction of defective events (default 0)"
    )
    gen.add_argument("--seed", type=int, default=7, help="random seed; same seed, same files (default 7)")
    gen.set_defaults(run=_generate)

    ingest = sub.add_parser(
        "ingest",
        help="run every step on files, folders or blob prefixes",
        description="Run validate, bronze, silver and gold on each file, as the orchestrator does. "
        "Sources are local files or folders, az://container/prefix URIs or blob URLs. "
        "Re-ingesting a file that already finished changes nothing.",
    )
    ingest.add_argument("sources", nargs="+", metavar="SOURCE")
    ingest.add_argument("--json", action="store_true", help="print batch results as JSON lines")
    ingest.set_defaults(run=_ingest)

    batches = sub.add_parser("batches", help="list batch state", description="List batch state.")
    batches.add_argument("--json", action="store_true", help="print JSON")
    batches.add_argument("--state", help="only batches in this state")
    batches.set_defaults(run=_batches)

    show = sub.add_parser("show", help="print a table", description="Print rows of a lake table.")
    show.add_argument("table", choices=sorted(TABLES))
    show.add_argument("--json", action="store_true", help="print JSON rows")
    show.add_argument("--limit", type=int, default=20, help="rows to print (default 20)")
    show.set_defaults(run=_show)

    demo = sub.add_parser(
        "demo",
        help="generate a day into CAPTURE_URI, ingest it and print a summary",
        description="Generate a realistic, defect-laden day of Capture files into CAPTURE_URI, "
        "run the whole pipeline over them and print batch states, table sizes and top users.",
    )
    demo.add_argument("--files", type=int, default=48)
    demo.add_argument("--events-per-file", type=int, default=2000)
    demo.add_argument("--defect-rate", type=float, default=0.02)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(run=_demo)

    events = sub.add_parser(
        "events",
        help="post Event Grid events for Capture blobs to a local `func start`",
        description="Find Capture blobs under CAPTURE_URI (or --prefix) and POST Event Grid "
        "BlobCreated events to the local Functions host's Event Grid webhook.",
    )
    events.add_argument("--prefix", help="az://container/prefix, or a path under CAPTURE_URI (default: all)")
    events.add_argument("--url", default=None, help="Functions host base URL (default http://localhost:7071)")
    events.add_argument("--function-name", default=None, help="Event Grid trigger function name")
    events.set_defaults(run=_events)
    return parser


# -- commands ---------------------------------------------------------------------------------
def _generate(args: argparse.Namespace) -> int:
    settings = _settings()
    written = write_generated(
        Storage(settings.storage_connection),
        args.out,
        files=args.files,
        events_per_file=args.events_per_file,
        defect_rate=args.defect_rate,
        seed=args.seed,
    )
    print(f"wrote {written} files under {args.out}")
    return 0


def write_generated(
    storage: Storage, out: str, *, files: int, events_per_file: int, defect_rate: float, seed: int
) -> int:
    """Generate a day of Capture files and write them under ``out``; returns files written.

    A file already there with the same bytes is left alone, so re-running keeps ETags
    (and therefore batch ids) stable.
    """
    from shared.dev.generator import generate_day

    written = 0
    started = time.monotonic()
    for i, generated in enumerate(
        generate_day(files=files, events_per_file=events_per_file, defect_rate=defect_rate, seed=seed),
        start=1,
    ):
        if storage.write_if_changed(join(out, generated.path), generated.data):
            written += 1
        _progress(f"generate {i}/{files + 2 if defect_rate else files}", started)
    _progress_done()
    return written


def _ingest(args: argparse.Namespace) -> int:
    from shared.steps import Pipeline

    settings = _settings()
    pipeline = Pipeline(settings)
    files = list(expand_sources(pipeline.storage, args.sources))
    if not files:
        print("no files found under " + ", ".join(args.sources), file=sys.stderr)
        return 1
    results = ingest_files(pipeline, files, as_json=args.json)
    return 1 if any(b.state == "FAILED" for b in results) else 0


def expand_sources(storage: Storage, sources: Iterable[str]) -> Iterable[ObjectInfo]:
    """Every landed file under the given files, folders and prefixes, in name order."""
    for source in sources:
        yield from storage.list(source, SOURCE_SUFFIXES)


def ingest_files(pipeline: Any, files: list[ObjectInfo], *, as_json: bool = False) -> list[BatchState]:
    """Run the pipeline over files one by one, printing a line per batch."""
    results: list[BatchState] = []
    started = time.monotonic()
    for i, info in enumerate(files, start=1):
        try:
            batch = pipeline.run(info.uri)
        except PipelineError as exc:
            print(f"[{i}/{len(files)}] FAILED {info.uri}: {exc}", file=sys.stderr)
            failed = pipeline.states.get("user_activity", _batch_id(info))
            if failed is not None:
                results.append(failed)
            continue
        results.append(batch)
        if as_json:
            print(json.dumps(batch.to_dict()))
        else:
            c = batch.counts
            print(
                f"[{i}/{len(files)}] {batch.state:<11} {_short(info.uri):<60} "
                f"in={c.get('rows_in', 0)} valid={c.get('rows_valid', 0)} "
                f"quarantined={c.get('rows_quarantined', 0)} inserted={c.get('silver_inserted', 0)} "
                f"dups={c.get('duplicates_dropped', 0)} ({time.monotonic() - started:.1f}s)"
                + (f" error={batch.error}" if batch.error else "")
            )
    return results


def _batch_id(info: ObjectInfo) -> str:
    from shared.steps import batch_id_for

    return batch_id_for(info.uri, info.etag)


def _batches(args: argparse.Namespace) -> int:
    from shared.adapters.state import BatchStateStore

    settings = _settings()
    store = BatchStateStore(settings.storage_connection, settings.state_table)
    batches = sorted(
        store.list(state=args.state), key=lambda b: b.transitions[0]["at"] if b.transitions else ""
    )
    if args.json:
        print(json.dumps([b.to_dict() for b in batches], indent=2))
        return 0
    print(batch_table(batches))
    return 0


def batch_table(batches: list[BatchState]) -> str:
    """Batches as a printable table: state, counts and where the file came from."""
    if not batches:
        return "no batches"
    rows = [
        {
            "batch": b.batch_id[:12],
            "state": b.state,
            "source": _short(b.source, 34),
            "rows_in": b.counts.get("rows_in", 0),
            "valid": b.counts.get("rows_valid", 0),
            "quarantined": b.counts.get("rows_quarantined", 0),
            "inserted": b.counts.get("silver_inserted", 0),
            "dups": b.counts.get("duplicates_dropped", 0),
            "seconds": round(sum(b.durations.values()), 2),
            "error": b.error or "",
        }
        for b in batches
    ]
    with pl.Config(
        tbl_rows=len(rows),
        tbl_cols=12,
        fmt_str_lengths=60,
        tbl_width_chars=220,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
    ):
        return str(pl.DataFrame(rows))


def _show(args: argparse.Namespace) -> int:
    from shared.adapters.lake import Lake

    settings = _settings()
    lake = Lake(settings)
    table = TABLES[args.table]
    dt = lake.open(table)
    if dt is None:
        print(f"{args.table} has no commits yet", file=sys.stderr)
        return 1
    frame = lake.scan(table).head(args.limit).collect()
    if args.json:
        print(frame.write_json())
        return 0
    print(f"{args.table}: {lake.uri(table)} (version {dt.version()})")
    with pl.Config(
        tbl_rows=args.limit,
        tbl_cols=30,
        fmt_str_lengths=40,
        tbl_width_chars=220,
        tbl_hide_dataframe_shape=True,
    ):
        print(frame)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from shared.steps import Pipeline

    settings = _settings()
    pipeline = Pipeline(settings)
    started = time.monotonic()
    print(f"1/3 generating {args.files} Capture files into {settings.capture_uri} ...")
    written = write_generated(
        pipeline.storage,
        settings.capture_uri,
        files=args.files,
        events_per_file=args.events_per_file,
        defect_rate=args.defect_rate,
        seed=args.seed,
    )
    print(f"    {written} new or changed files")
    files = list(expand_sources(pipeline.storage, [settings.capture_uri]))
    print(f"2/3 ingesting {len(files)} files (lake {settings.lake_uri}) ...")
    ingest_files(pipeline, files)
    print("3/3 summary")
    print(summary(pipeline))
    print(f"demo finished in {time.monotonic() - started:.1f}s")
    return 0


def summary(pipeline: Any) -> str:
    """What a run left behind: batch states, table sizes and versions, top users."""
    batches = list(pipeline.states.list())
    lines = [batch_table(sorted(batches, key=lambda b: b.source)), ""]
    by_state: dict[str, int] = {}
    for b in batches:
        by_state[b.state] = by_state.get(b.state, 0) + 1
    totals = {
        k: sum(int(b.counts.get(k, 0)) for b in batches)
        for k in ("rows_in", "rows_valid", "rows_quarantined", "silver_inserted", "duplicates_dropped")
    }
    lines.append("batches by state: " + ", ".join(f"{k}={v}" for k, v in sorted(by_state.items())))
    lines.append("rows: " + ", ".join(f"{k}={v}" for k, v in totals.items()))
    lines.append("")
    sizes = []
    for name, table in TABLES.items():
        dt = pipeline.lake.open(table)
        if dt is None:
            continue
        rows = sum(
            int(n)
            for n in dt.get_add_actions(flatten=True).column("num_records").to_pylist()
            if n is not None
        )
        sizes.append({"table": name, "rows": rows, "files": len(dt.file_uris()), "version": dt.version()})
    with pl.Config(
        tbl_rows=20, tbl_width_chars=220, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True
    ):
        lines.append(str(pl.DataFrame(sizes)))
        if pipeline.lake.open(TABLES["user_watch_time"]) is not None:
            top = (
                pipeline.lake.scan(TABLES["user_watch_time"])
                .sort("total_watch_sec", descending=True)
                .head(10)
                .select(
                    "user_id",
                    (pl.col("total_watch_sec") / 3600).round(2).alias("watch_hours"),
                    "events",
                    "first_event_time",
                    "last_event_time",
                )
                .collect()
            )
            lines.append("\ntop users by watch time")
            lines.append(str(top))
    return "\n".join(lines)


def _events(args: argparse.Namespace) -> int:
    from shared.dev.events import DEFAULT_HOST_URL, post_events
    from shared.events import EVENT_FUNCTION

    settings = _settings()
    posted = post_events(
        settings,
        args.prefix,
        args.url or DEFAULT_HOST_URL,
        args.function_name or EVENT_FUNCTION,
    )
    print(f"posted {posted} events")
    return 0


def _settings() -> Settings:
    # Local commands talk to Azurite's default ports unless told otherwise.
    return Settings.from_env(defaults={"AzureWebJobsStorage": "UseDevelopmentStorage=true"})


# -- output helpers ---------------------------------------------------------------------------
def _short(uri: str, width: int = 60) -> str:
    return uri if len(uri) <= width else "…" + uri[-(width - 1) :]


def _progress(message: str, started: float) -> None:
    if sys.stderr.isatty():
        print(f"\r{message} ({time.monotonic() - started:.1f}s)", end="", file=sys.stderr, flush=True)


def _progress_done() -> None:
    if sys.stderr.isatty():
        print(file=sys.stderr)
