"""Landed files as Spark record frames, in the shape ``partitions.parse`` reads.

Every reader is a Spark file source, so a large file is read in splits, in parallel,
and each record carries ``_split``: where its split starts (``_metadata.file_block_start``).
Within a split the source yields records in file order, which is all ``parse`` and
``transforms.numbered`` need to number them exactly as the in-function route does.

One line differs on this machine: Databricks reads Capture Avro with its built-in
``avro`` source, which needs the spark-avro jar, and that cannot be downloaded here.
``LocalCapture`` stands in for it: it decodes the file with fastavro into a Parquet file
holding the columns the ``avro`` source gives (``SystemProperties`` as a map of
``member0..member3`` structs, the Spark-avro shape of Capture's union), and Spark reads that
file as a file source, in splits, like any other.
"""

from __future__ import annotations

import csv
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from databricks_jobs.partitions import Kind
from databricks_jobs.schema import SPLIT

Format = Literal["avro", "parquet", "csv", "ndjson"]
ENQUEUED_KEY = "x-opt-enqueued-time"


def _split() -> Column:
    return F.col("_metadata.file_block_start").alias(SPLIT)


@dataclass(frozen=True, slots=True)
class Records:
    """A file's records, how ``parse`` reads them, and what numbering them needs."""

    frame: DataFrame
    kind: Kind
    header: list[str] | None = None
    lines: DataFrame | None = None
    """NDJSON: lines per split, blank ones included (``_split``, ``lines``)."""


class AvroSource(Protocol):
    """Reads a Capture Avro file as Spark's ``avro`` source shapes it."""

    def __call__(self, spark: SparkSession, path: str) -> DataFrame: ...


def databricks_avro(spark: SparkSession, path: str) -> DataFrame:
    """Databricks' built-in ``avro`` source."""
    return spark.read.format("avro").load(path)


def records(spark: SparkSession, path: str, fmt: Format, avro: AvroSource = databricks_avro) -> Records:
    """The records of the file at ``path``, in the format the validate step detected."""
    if fmt == "avro":
        frame = avro(spark, path).select(
            _split(),
            F.col("Body").alias("_body"),
            F.col("SequenceNumber").alias("_sequence_number"),
            F.col("Offset").alias("_offset"),
            # Capture's SystemProperties union is [long, double, string, bytes]: member0 is long.
            F.col("SystemProperties").getItem(ENQUEUED_KEY).getField("member0").alias("_enqueued_exact"),
            F.col("EnqueuedTimeUtc").alias("_enqueued_text"),
        )
        return Records(frame, "bodies")
    if fmt == "parquet":
        return Records(spark.read.parquet(path).select("*", _split()), "structured")
    # Only "\n" ends a line, as when Python iterates a file; the bytes stay as they are.
    lines = (
        spark.read.option("lineSep", "\n")
        .text(path)
        .select(_split(), F.col("value").cast("binary").alias("_body"))
    )
    if fmt == "ndjson":
        counts = lines.groupBy(SPLIT).agg(F.count(F.lit(1)).alias("lines"))
        return Records(lines, "lines", lines=counts)
    first = lines.where(F.col(SPLIT) == 0).limit(1).collect()
    if not first:
        return Records(lines, "csv", header=[])
    header = next(csv.reader([bytes(first[0]["_body"]).decode("utf-8-sig")]))
    return Records(lines, "csv", header=header)


class LocalCapture:
    """The ``avro`` source's frame of a Capture file, made without the spark-avro jar.

    Args:
        scratch: Folder for the Parquet files it writes (default: a temporary folder).
        rows_per_group: Records per Parquet row group; a split holds whole row groups,
            so a small value exercises multi-split numbering.
    """

    def __init__(self, scratch: str | None = None, rows_per_group: int = 65_536) -> None:
        self.scratch = Path(scratch or tempfile.mkdtemp(prefix="tributary-avro-"))
        self.rows_per_group = rows_per_group

    def __call__(self, spark: SparkSession, path: str) -> DataFrame:
        import fastavro
        import pyarrow as pa
        import pyarrow.parquet as pq

        member = pa.struct(
            [
                ("member0", pa.int64()),
                ("member1", pa.float64()),
                ("member2", pa.string()),
                ("member3", pa.binary()),
            ]
        )
        shape = pa.schema(
            [
                ("SequenceNumber", pa.int64()),
                ("Offset", pa.string()),
                ("EnqueuedTimeUtc", pa.string()),
                ("SystemProperties", pa.map_(pa.string(), member)),
                ("Body", pa.binary()),
            ]
        )
        target = self.scratch / (Path(path).name + ".parquet")
        with open(path, "rb") as fh, pq.ParquetWriter(target, shape) as writer:
            rows: list[dict[str, Any]] = []
            for record in fastavro.reader(fh):
                rows.append(_shaped(record))  # type: ignore[arg-type]
                if len(rows) == self.rows_per_group:
                    writer.write_table(pa.Table.from_pylist(rows, shape))
                    rows = []
            if rows:
                writer.write_table(pa.Table.from_pylist(rows, shape))
        return spark.read.parquet(str(target))


def _shaped(record: dict[str, Any]) -> dict[str, Any]:
    """One Capture record as Spark-avro presents it: a union value as a struct with the
    branch it holds in ``member<i>`` (branches in the schema's order), the rest null."""
    properties = []
    for key, value in (record.get("SystemProperties") or {}).items():
        slot = (
            3
            if isinstance(value, bytes)
            else 2
            if isinstance(value, str)
            else 1
            if isinstance(value, float)
            else 0
        )
        properties.append((key, {f"member{slot}": value}))
    return {
        "SequenceNumber": record["SequenceNumber"],
        "Offset": record["Offset"],
        "EnqueuedTimeUtc": record["EnqueuedTimeUtc"],
        "SystemProperties": properties,
        "Body": record.get("Body"),
    }
