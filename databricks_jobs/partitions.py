"""The project's own Python, run on each Spark partition (``mapInArrow``).

Three steps run here rather than as Spark expressions, because only the project's code
gives exactly the in-function route's answer:

* **Parsing** records into the parsed frame (``shared.pipeline.decode``): a body is one
  object, a pretty-printed object, an array of objects or NDJSON; unknown fields become
  ``_rescued_data``; numbers keep orjson's text (``1E3`` is ``1000.0``); invalid UTF-8 or
  JSON is ``_malformed`` with its raw text. Spark's ``from_json`` agrees on none of that.
* **Typing** (``shared.pipeline.validate.typed_columns``): chrono's ISO-8601 reading and
  polars' float parser. Spark's differ: ``to_timestamp`` takes ``2026-11-21 12:00:00Z`` (a
  space for the ``T``) and refuses a leap second polars reads; ``CAST(... AS DOUBLE)``
  takes ``1d`` and ``1f``.
* **Geo** (``shared.pipeline.geo.enrich``): geoip2fast's database, searched as the
  in-function route searches it.

Each function takes and yields Arrow record batches. Records carry ``_split`` (where the
file split they were read in starts) and arrive in file order within a split, so the
position of a record in its split (``_i``) is counted here; the driver turns (split,
position) into the record's number in the file (``transforms.numbered``).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import Any, Literal

import polars as pl
import pyarrow as pa

from databricks_jobs.schema import INDEX, SPLIT, SUB, to_arrow

# Set before the first import of the pipeline's compiled loops on a worker: the package
# folder a cluster installs into may be read-only.
os.environ.setdefault("NUMBA_CACHE_DIR", "/tmp/tributary-numba")

Kind = Literal["bodies", "lines", "structured", "csv"]

#: The raw record columns a reader adapter gives ``parse`` (``sources``), per kind.
RECORD_COLUMNS: dict[str, pl.DataType] = {
    "_body": pl.Binary(),
    "_sequence_number": pl.Int64(),
    "_offset": pl.String(),
    "_enqueued_exact": pl.Int64(),
    "_enqueued_text": pl.String(),
}


def parsed_schema(dataset: str) -> dict[str, pl.DataType]:
    """What ``parse`` yields: the parsed frame with its fields typed, plus the split columns.

    A ``timestamp`` or ``double`` field is typed in place and keeps the string it arrived
    as in ``_raw_<name>``, as ``validate`` does; ``_row`` is the record's position in its
    split until the driver numbers it.
    """
    from shared.contracts import CONTRACTS
    from shared.pipeline import decode

    contract = CONTRACTS[dataset]
    schema = dict(decode.parsed_schema(contract))
    for field in contract.fields:
        if field.type == "timestamp":
            schema[field.name] = pl.Datetime("us", "UTC")
            schema[f"_raw_{field.name}"] = pl.String()
        elif field.type == "double":
            schema[field.name] = pl.Float64()
            schema[f"_raw_{field.name}"] = pl.String()
    schema[SPLIT] = pl.Int64()
    schema[INDEX] = pl.Int64()
    schema[SUB] = pl.Int64()
    return schema


def parse(
    batches: Iterator[pa.RecordBatch],
    *,
    dataset: str,
    kind: Kind,
    partition: str | None = None,
    header: list[str] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Parse one Spark partition's records into the typed parsed frame.

    Args:
        batches: Records in file order within each split: ``_split`` plus, for ``bodies``
            (Capture Avro) and ``lines`` (NDJSON), the ``RECORD_COLUMNS``; for
            ``structured`` (Parquet) the file's own columns; for ``csv`` the lines after the
            header as ``_body``.
        dataset: The contract's dataset name.
        kind: How records become events (see ``sources``).
        partition: The Event Hubs partition named by a Capture file's path.
        header: A CSV file's column names.
    """
    from shared.contracts import CONTRACTS

    contract = CONTRACTS[dataset]
    schema = parsed_schema(dataset)
    taken: dict[int, int] = {}  # records (CSV: rows) already taken from each split
    lines: dict[int, int] = {}  # NDJSON lines seen in each split, blank ones included
    for batch in batches:
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        for key, group in frame.group_by(SPLIT, maintain_order=True):
            split = int(key[0])
            first = taken.get(split, 0)
            if kind in ("lines", "csv"):
                seen = lines.get(split, 0)
                lines[split] = seen + group.height
                if kind == "lines":
                    group = _kept_lines(group, seen)
                elif split == 0 and seen == 0:
                    group = group.slice(1)  # the header line, which the driver read
            parsed, count = _parse(group, contract, kind, partition, header, first)
            taken[split] = first + count
            if parsed.height:
                yield from to_arrow(_typed(parsed, contract, split), schema).to_batches()


def _kept_lines(group: pl.DataFrame, seen: int) -> pl.DataFrame:
    """An NDJSON split's lines as records, as ``decode`` reads them: blank lines skipped,
    ``\\r\\n`` stripped, ``_sequence_number`` the line's position in the split (the driver
    adds the lines before it and one)."""
    raw = group.get_column("_body").to_list()
    kept = [(seen + i, line.rstrip(b"\r\n")) for i, line in enumerate(raw) if line.strip()]
    return pl.DataFrame(
        {
            "_body": [line for _, line in kept],
            "_sequence_number": [n for n, _ in kept],
            "_offset": [None] * len(kept),
            "_enqueued_exact": [None] * len(kept),
            "_enqueued_text": [None] * len(kept),
        },
        schema=RECORD_COLUMNS,
    )


def _parse(
    group: pl.DataFrame,
    contract: Any,
    kind: Kind,
    partition: str | None,
    header: list[str] | None,
    first: int,
) -> tuple[pl.DataFrame, int]:
    """One split's run of records -> (parsed rows, records taken); ``_row`` counts from ``first``."""
    from shared.pipeline import decode

    if kind == "structured":
        rows = group.drop(SPLIT)
        return decode.structured_chunk(rows, contract, first), rows.height
    if kind == "csv":
        rows = _csv_rows(group.get_column("_body").to_list(), header or [])
        return decode.structured_chunk(rows, contract, first), rows.height
    records = decode.RecordColumns(partition, strict_single=kind == "lines")
    records.first_row = first
    records.bodies = group.get_column("_body").to_list()
    records.sequence_numbers = group.get_column("_sequence_number").to_list()
    records.offsets = group.get_column("_offset").to_list()
    records.enqueued = [
        exact if exact is not None else decode.enqueued_at(None, text)
        for exact, text in zip(
            group.get_column("_enqueued_exact").to_list(),
            group.get_column("_enqueued_text").to_list(),
            strict=True,
        )
    ]
    return records.parse(contract), group.height


def _csv_rows(lines: list[bytes], header: list[str]) -> pl.DataFrame:
    """CSV lines read as ``decode`` reads a CSV file: every column a string, ``""`` null.

    Quoted newlines cannot occur: the in-function route does not accept them either
    (pyarrow's CSV reader without ``newlines_in_values`` fails the file).
    """
    import pyarrow.csv as pacsv

    data = b"\n".join(lines)
    table = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=header),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in header}, strings_can_be_null=True, null_values=[""]
        ),
    )
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _typed(parsed: pl.DataFrame, contract: Any, split: int) -> pl.DataFrame:
    """Type the parsed rows as ``validate`` does, and number events within their record."""
    from shared.pipeline.validate import typed_columns

    return parsed.with_columns(typed_columns(contract)).with_columns(
        pl.lit(split, pl.Int64).alias(SPLIT),
        pl.col("_row").alias(INDEX),
        pl.int_range(pl.len(), dtype=pl.Int64).over("_row").alias(SUB),
    )


def enrich(batches: Iterator[pa.RecordBatch], *, ip_column: str) -> Iterator[pa.RecordBatch]:
    """Add ``country`` and ``region`` to each batch, looked up as the in-function route does."""
    from shared.pipeline import geo

    for batch in batches:
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        enriched = geo.enrich(frame, ip_column)
        schema = {name: enriched.schema[name] for name in enriched.columns}
        yield from to_arrow(enriched, schema).to_batches()
