"""The large-file job: ``main()`` parses flags and runs bronze, silver and gold for one batch.

On Databricks this file is a ``spark_python_task`` (``databricks.yml``); locally the Jobs
API stand-in (``shared/dev/jobs_api.py``) runs it with ``--local`` in a subprocess, and
the tests call ``run`` with their own session. Exit status 0 means every layer named in
``--layers`` has its commit in the lake (committed now or found from an earlier run).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repository root holds the packages
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyspark.sql import SparkSession

from databricks_jobs import layers, sources
from databricks_jobs.lake import DeltaSparkLake, Lake, LocalLake
from databricks_jobs.transforms import Stamp
from shared.contracts import CONTRACTS
from shared.errors import ConfigError

log = logging.getLogger("databricks_jobs")

#: The session settings the transforms assume: timestamps and dates in UTC, and SQL that
#: yields NULL (a failed expectation) where ANSI mode would raise.
SESSION_CONF = {"spark.sql.session.timeZone": "UTC", "spark.sql.ansi.enabled": "false"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="databricks_jobs.main", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, choices=sorted(CONTRACTS))
    p.add_argument("--batch-id", required=True)
    p.add_argument("--source", required=True, help="the landed file (its _source lineage)")
    p.add_argument("--read-from", help="where to read it, when not at --source (a local copy)")
    p.add_argument("--format", required=True, choices=("avro", "parquet", "csv", "ndjson"))
    p.add_argument("--batch-time", required=True, help="ISO-8601 time the file landed (_batch_time)")
    p.add_argument(
        "--table", action="append", default=[], metavar="NAME=URI", help="a table by short name (repeat)"
    )
    p.add_argument("--layers", default=",".join(layers.LAYER_NAMES), help="comma-separated, in order")
    p.add_argument("--geo-sha256", help="the SHA-256 the geo database must have (the Function's)")
    p.add_argument("--local", action="store_true", help="delta-rs and a local avro reader (no cluster)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags and run the layers; 0 when all landed, 1 (with the error) otherwise."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    spark = session(local=args.local)
    try:
        figures = run(spark, args)
    except Exception as exc:
        log.exception("batch %s failed", args.batch_id)
        print(json.dumps({"batch_id": args.batch_id, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    print(json.dumps({"batch_id": args.batch_id, **figures}, sort_keys=True), flush=True)
    return 0


def session(*, local: bool) -> SparkSession:
    """The cluster's session (or a local one), set up as the transforms assume."""
    builder = SparkSession.builder.appName("tributary")
    if local:
        # The local adapter collects each table's rows to the driver for delta-rs.
        # Few shuffle partitions: Spark's 200 are for a cluster, and each costs a task here.
        builder = (
            builder.master("local[*]")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.driver.memory", "4g")
            .config("spark.sql.shuffle.partitions", "4")
        )
    spark = builder.getOrCreate()
    for key, value in SESSION_CONF.items():
        spark.conf.set(key, value)
    if not local:
        ship(spark)
    return spark


def run(
    spark: SparkSession,
    args: argparse.Namespace,
    *,
    lake: Lake | None = None,
    avro: sources.AvroSource | None = None,
) -> dict[str, object]:
    """Run the layers ``args`` name for one batch; returns what they counted.

    ``lake`` and ``avro`` replace the adapters ``--local`` chooses (tests).

    Raises:
        ConfigError: a flag is malformed or the geo database is not the Function's.
    """
    contract = CONTRACTS[args.dataset]
    if args.geo_sha256:
        check_geo(args.geo_sha256)
    try:
        tables = dict(item.split("=", 1) for item in args.table)
    except ValueError:
        raise ConfigError(f"--table takes NAME=URI, got {args.table!r}") from None
    names = [name.strip() for name in args.layers.split(",") if name.strip()]
    unknown = [name for name in names if name not in layers.RUNNERS]
    if unknown:
        raise ConfigError(
            f"--layers: unknown layer {', '.join(unknown)} (known: {', '.join(layers.LAYER_NAMES)})"
        )
    read_from = args.read_from
    if args.local and lake is None:
        # No cluster: the lake and the file are reached as the Function reaches them, with
        # the storage settings of this process's environment (Azurite, in the local loop).
        lake, read_from = _local(spark, tables, read_from or args.source)
    batch = layers.Batch(
        spark=spark,
        lake=lake or DeltaSparkLake(spark),
        contract=contract,
        stamp=Stamp(
            args.batch_id, args.source, datetime.fromisoformat(args.batch_time.replace("Z", "+00:00"))
        ),
        source=read_from or args.source,
        format=args.format,
        tables=layers.table_refs(tables, contract),
        avro=avro or (sources.LocalCapture() if args.local else sources.databricks_avro),
    )
    for name in names:
        log.info("batch %s: %s", args.batch_id, name)
        layers.RUNNERS[name](batch)
    return batch.figures


def _local(spark: SparkSession, tables: dict[str, str], source: str) -> tuple[LocalLake, str]:
    """The local lake adapter, with storage options when the tables are in a container, and
    a local copy of a file that is in one."""
    from shared.uris import is_remote

    if not any(is_remote(uri) for uri in tables.values()) and not is_remote(source):
        return LocalLake(spark), source
    from shared.adapters.clients import delta_storage_options
    from shared.app import build
    from shared.settings import Settings

    settings = Settings.from_env(defaults={"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    options = delta_storage_options(settings.lake_storage)
    if is_remote(source):
        copy = Path(tempfile.mkdtemp(prefix="tributary-source-")) / Path(source).name
        copy.write_bytes(build(settings).storage.read_bytes(source))
        source = str(copy)
    return LocalLake(spark, options), source


def check_geo(expected: str) -> None:
    """Fail unless geoip2fast's database here is the one the in-function route uses.

    Raises:
        ConfigError: it is another file (another geoip2fast version on the cluster).
    """

    digest = geo_sha256()
    if digest != expected:
        raise ConfigError(
            f"the cluster's geo database (sha256 {digest}) is not the Function's ({expected}): "
            "install the geoip2fast version requirements.txt pins"
        )


def geo_sha256() -> str:
    """SHA-256 of the geoip2fast database file the pipeline's geo lookup reads."""
    from shared.pipeline import geo

    return geo.database_sha256()


def ship(spark: SparkSession) -> None:
    """Put the job's packages on every executor's path (the workspace files are on the driver's)."""
    root = Path(__file__).resolve().parents[1]
    archive = Path(tempfile.mkdtemp(prefix="tributary-")) / "tributary.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for package in ("shared", "databricks_jobs"):
            for path in sorted((root / package).rglob("*.py")):
                zf.write(path, path.relative_to(root).as_posix())
    try:
        spark.sparkContext.addPyFile(str(archive))
    except Exception:  # Spark Connect (serverless) has no SparkContext: artifacts instead
        spark.addArtifacts(str(archive), pyfile=True)


if __name__ == "__main__":
    sys.exit(main())
