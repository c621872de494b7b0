"""Capture Parquet, as the Stream Analytics no-code editor writes it, into parsed chunks."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from shared.contracts import Contract
from shared.errors import QuarantinedFile
from shared.pipeline.decode.rows import ChunkBuilder, json_text

_SA_ENQUEUED = "EventEnqueuedUtcTime"
_SA_PARTITION = "PartitionId"
_SA_DROPPED = {"EventProcessedUtcTime"}


def parquet_file(fh: BinaryIO, name: str) -> pq.ParquetFile:
    """The file opened for reading its metadata and row groups.

    Raises:
        QuarantinedFile: it is not a Parquet file Arrow can read.
    """
    # Parquet needs random access; blob streams are forward-only.
    source: Any = fh if fh.seekable() else io.BytesIO(fh.read())
    try:
        return pq.ParquetFile(source)
    except (pa.ArrowException, OSError, ValueError) as exc:  # a column name not UTF-8: ValueError
        raise QuarantinedFile(name, f"parquet: {exc}") from exc


def decode_parquet(fh: BinaryIO, name: str, contract: Contract, chunk_rows: int) -> Iterator[pl.DataFrame]:
    """Each row is one event whose columns are its fields.

    Raises:
        QuarantinedFile: a row group does not read, or holds a value Python cannot hold
            (a timestamp past year 9999, say).
    """
    pfile = parquet_file(fh, name)
    row = 0
    try:
        for batch in pfile.iter_batches(batch_size=chunk_rows):
            kept = [c for c in batch.schema.names if c not in _SA_DROPPED]
            # pyarrow, not polars, turns values into Python: it raises where polars can panic.
            yield _chunk(batch.select(kept).to_pylist(), contract, row)
            row += batch.num_rows
    except (pa.ArrowException, OSError, ValueError, OverflowError, TypeError) as exc:
        raise QuarantinedFile(name, f"parquet: {exc} after row {row}") from exc


def structured_chunk(frame: pl.DataFrame, contract: Contract, first_row: int) -> pl.DataFrame:
    """The parsed rows of a frame whose columns are the events' fields (Stream Analytics'
    Parquet columns, or a CSV's), ``_row`` counting from ``first_row``."""
    kept = frame.select(c for c in frame.columns if c not in _SA_DROPPED)
    return _chunk(kept.to_arrow().to_pylist(), contract, first_row)


def _chunk(rows: list[dict[str, Any]], contract: Contract, first_row: int) -> pl.DataFrame:
    fields = set(contract.field_names)
    builder = ChunkBuilder(contract)
    for i, record in enumerate(rows):
        enqueued = record.pop(_SA_ENQUEUED, None)
        partition = record.pop(_SA_PARTITION, None)
        payload = {k: v for k, v in record.items() if v is not None or k in fields}
        raw = json_text(payload)
        builder.add_record(
            orjson.loads(raw),
            raw,
            first_row + i,
            _epoch_ms(enqueued),
            None if partition is None else str(partition),
            first_row + i,
        )
    return builder.take()


def _epoch_ms(value: Any) -> int | None:
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(aware.timestamp() * 1000)
    if isinstance(value, str):
        try:
            return _epoch_ms(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None
