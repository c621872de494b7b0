"""``python -m shared``: generate Capture files, ingest them, inspect batches and tables.

Every command reads the same settings the Function app does (environment over
``local.settings.json``); local runs default to Azurite. Every command has ``--help``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from shared.errors import PipelineError
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.adapters.storage import ObjectInfo, Storage
    from shared.app import App
    from shared.services.runner import Ran

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
        description="Run validate, bronze, silver and gold on each file, as the orchestrator does "
        "(the same retries; a file that fails is recorded FAILED and the run goes on). Sources are "
        "local files or folders, az://container/prefix URIs or blob URLs. Re-ingesting a file that "
        "already finished changes nothing. Exits 1 if any file failed.",
    )
    ingest.add_argument("sources", nargs="+", metavar="SOURCE")
    ingest.add_argument("--json", action="store_true", help="print batch records as JSON lines")
    ingest.set_defaults(run=_ingest)

    batches = sub.add_parser(
        "batches", help="list batch state", description="List the batch state of the lake LAKE_URI names."
    )
    batches.add_argument("--json", action="store_true", help="print JSON")
    batches.add_argument("--state", help="only batches in this state")
    batches.set_defaults(run=_batches)

    show = sub.add_parser("show", help="print a table", description="Print rows of a lake table.")
    show.add_argument("table", choices=table_names())
    show.add_argument("--json", action="store_true", help="print JSON rows")
    show.add_argument("--limit", type=int, default=20, help="rows to print (default 20)")
    show.set_defaults(run=_show)

    demo = sub.add_parser(
        "demo",
        help="generate a day into CAPTURE_URI, ingest it and print a summary",
        description="Generate a realistic, defect-laden day of Capture files into CAPTURE_URI, "
        "run the whole pipeline over them and print batch states, table sizes and top users.",
    )
    demo.add_argument("--files", type=int, default=48, help="Capture files (default 48)")
    demo.add_argument("--events-per-file", type=int, default=2000, help="records per file (default 2000)")
    demo.add_argument("--defect-rate", type=float, default=0.02, help="defective fraction (default 0.02)")
    demo.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    demo.add_argument(
        "--large-events",
        type=int,
        default=20_000,
        help="records of one more, larger file that takes the Databricks route: LARGE_FILE_BYTES is set "
        "below its size for the demo, and without DATABRICKS_HOST a local Jobs API stand-in runs its "
        "Spark job with local PySpark (0 skips it; default 20000)",
    )
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

    # Its flags only: the command itself loads azure-eventhub when it runs.
    from shared.dev.producer.command import register

    register(sub)
    return parser


def table_names() -> list[str]:
    """Every table ``show`` prints: bronze, quarantine, silver and each gold table by name."""
    from shared.contracts import CONTRACTS

    return ["bronze", "quarantine", "silver", *(t.name for c in CONTRACTS.values() for t in c.gold)]


# -- commands ---------------------------------------------------------------------------------
def _generate(args: argparse.Namespace) -> int:
    written = write_generated(
        _app().storage,
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
    from shared.uris import join

    written = 0
    started = time.monotonic()
    total = files + 2 if defect_rate else files
    for i, generated in enumerate(
        generate_day(files=files, events_per_file=events_per_file, defect_rate=defect_rate, seed=seed),
        start=1,
    ):
        if storage.write_if_changed(join(out, generated.path), generated.data):
            written += 1
        _progress(f"generate {i}/{total}", started)
    _progress_done()
    return written


def _ingest(args: argparse.Namespace) -> int:
    app = _app()
    files = list(expand_sources(app.storage, args.sources))
    if not files:
        print("no files found under " + ", ".join(args.sources), file=sys.stderr)
        return 1
    runs = ingest_files(app, files, as_json=args.json)
    failed = [r for r in runs if r.batch is None or r.batch.state == "FAILED"]
    print(f"{len(runs)} files: {len(runs) - len(failed)} finished, {len(failed)} failed", file=sys.stderr)
    for run in failed:
        print(f"  FAILED {run.source}: {run.error}", file=sys.stderr)
    return 1 if failed else 0


def expand_sources(storage: Storage, sources: Iterable[str]) -> Iterable[ObjectInfo]:
    """Every landed file under the given files, folders and prefixes, in name order."""
    for source in sources:
        yield from storage.list(source, SOURCE_SUFFIXES)


def ingest_files(app: App, files: list[ObjectInfo], *, as_json: bool = False) -> list[Ran]:
    """Run the pipeline over files one by one, printing a line per batch."""
    runs: list[Ran] = []
    started = time.monotonic()
    for i, run in enumerate(app.runner.run_all(files), start=1):
        runs.append(run)
        batch = run.batch
        if as_json:
            print(json.dumps(batch.to_dict() if batch else {"source": run.source, "error": run.error}))
            continue
        if batch is None:
            print(f"[{i}/{len(files)}] {'FAILED':<11} {_short(run.source):<60} error={run.error}")
            continue
        c = batch.counts
        print(
            f"[{i}/{len(files)}] {batch.state:<11} {_short(run.source):<60} "
            f"in={c.rows_in or 0} valid={c.rows_valid or 0} quarantined={c.rows_quarantined or 0} "
            f"inserted={c.silver_inserted or 0} dups={c.duplicates_dropped or 0} "
            f"({time.monotonic() - started:.1f}s)" + (f" error={batch.error}" if batch.error else "")
        )
    return runs


def _batches(args: argparse.Namespace) -> int:
    from shared import costs, report
    from shared.batches import State

    app = _app()
    state = State(args.state) if args.state else None
    batches = sorted(app.states.list(lake=app.settings.lake_uri, state=state), key=lambda b: b.received_at)
    if args.json:
        records = [b.to_dict() | {"cost_usd": costs.batch_cost(b).total_usd} for b in batches]
        print(json.dumps(records, indent=2))
    else:
        print(report.batch_table(batches))
        if batches:
            print(report.cost_line(batches))
    return 0


def _show(args: argparse.Namespace) -> int:
    from shared import report

    app = _app()
    table = report.table(app, args.table)
    if not table.exists():
        print(f"{args.table} has no commits yet", file=sys.stderr)
        return 1
    snapshot = table.snapshot()
    frame = snapshot.scan().head(args.limit).collect()
    if args.json:
        print(frame.write_json())
        return 0
    print(f"{args.table}: {table.uri} (version {snapshot.version})")
    print(report.frame_text(frame, rows=args.limit))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    from shared import report

    started = time.monotonic()
    with ExitStack() as stack:
        app = _app()
        settings = app.settings
        print(f"1/3 generating {args.files} Capture files into {settings.capture_uri} ...")
        written = write_generated(
            app.storage,
            settings.capture_uri,
            files=args.files,
            events_per_file=args.events_per_file,
            defect_rate=args.defect_rate,
            seed=args.seed,
        )
        if args.large_events:
            app = stack.enter_context(_large_file_route(app, args))
        print(f"    {written} new or changed files")
        files = list(expand_sources(app.storage, [settings.capture_uri]))
        print(f"2/3 ingesting {len(files)} files (lake {settings.lake_uri}) ...")
        runs = ingest_files(app, files)
    print("3/3 summary")
    print(report.summary(app))
    print(f"demo finished in {time.monotonic() - started:.1f}s")
    return 1 if any(r.batch is None or r.batch.state == "FAILED" for r in runs) else 0


@contextmanager
def _large_file_route(app: App, args: argparse.Namespace) -> Iterator[App]:
    """The demo's large file: written, LARGE_FILE_BYTES set just below its size, and a
    Databricks workspace to run it (DATABRICKS_HOST, or a local Jobs API stand-in)."""
    from dataclasses import replace

    from shared.app import build
    from shared.dev.generator import generate_capture_file
    from shared.uris import join

    large = generate_capture_file(events=args.large_events, seed=args.seed + 1000, partition=9)
    uri = join(app.settings.capture_uri, large.path)
    app.storage.write_if_changed(uri, large.data)
    settings = replace(app.settings, large_file_bytes=len(large.data) - 1)
    print(f"    {large.path} ({len(large.data) / 1e6:.1f} MB) takes the Databricks route", end="")
    if settings.databricks.configured:
        print(f" on {settings.databricks.host}")
        yield build(settings)
        return
    from shared.dev.jobs_api import JobsApi

    token = "dapi-demo"
    api = JobsApi(token=token, job_root=settings.databricks.job_root).start()
    print(f": a local Jobs API stand-in at {api.url} runs its Spark job with local PySpark")
    try:
        yield build(replace(settings, databricks=replace(settings.databricks, host=api.url, token=token)))
    finally:
        api.stop()


def _events(args: argparse.Namespace) -> int:
    from shared.dev.events import DEFAULT_HOST_URL, post_events
    from shared.events import EVENT_FUNCTION

    posted = post_events(
        _settings(),
        args.prefix,
        args.url or DEFAULT_HOST_URL,
        args.function_name or EVENT_FUNCTION,
    )
    print(f"posted {posted} events")
    return 0


def _settings() -> Settings:
    # Local commands talk to Azurite's default ports unless told otherwise.
    return Settings.from_env(defaults={"AzureWebJobsStorage": "UseDevelopmentStorage=true"})


def _app() -> App:
    from shared.app import build

    return build(_settings())


# -- output helpers ---------------------------------------------------------------------------
def _short(uri: str, width: int = 60) -> str:
    return uri if len(uri) <= width else "…" + uri[-(width - 1) :]


def _progress(message: str, started: float) -> None:
    if sys.stderr.isatty():
        print(f"\r{message} ({time.monotonic() - started:.1f}s)", end="", file=sys.stderr, flush=True)


def _progress_done() -> None:
    if sys.stderr.isatty():
        print(file=sys.stderr)
