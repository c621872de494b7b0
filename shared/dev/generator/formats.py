"""Landing formats other than Capture: Stream Analytics Parquet, CSV and NDJSON."""

from __future__ import annotations

import csv
import datetime as dt
import io
from gzip import compress as gzip_compress
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from shared.contracts.user_activity import USER_ACTIVITY
from shared.dev.generator.sessions import Event
from shared.dev.generator.timestamps import _epoch_ms


def _text(value: Any) -> str | None:
    """A JSON value as the string a text format would carry."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool | dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"watch_time_sec must be a number or null for Parquet, got {value!r}")
    return float(value)


def to_parquet_stream_analytics(
    events: list[Event], *, partition_id: int = 0, enqueued: dt.datetime
) -> bytes:
    """Write events as the Stream Analytics no-code editor lands them in Parquet.

    Each JSON field becomes a column (contract fields first, then unknown fields in
    first-seen order, nested values as JSON text), followed by the columns the job adds:
    ``EventProcessedUtcTime``, ``PartitionId`` and ``EventEnqueuedUtcTime``.

    Args:
        events: Event dicts, e.g. from ``clean_events``.
        partition_id: Event Hubs partition the job read.
        enqueued: Timezone-aware enqueue time of the events.

    Returns:
        The Parquet file's bytes. Every field is a string except ``watch_time_sec``
        (float64) and the job's timestamp (UTC, µs) and int64 columns.

    Raises:
        ValueError: If ``enqueued`` is naive or a ``watch_time_sec`` is not a number.
    """
    enqueued_ms = _epoch_ms(enqueued, "enqueued")
    names = list(USER_ACTIVITY.field_names)
    for event in events:
        names.extend(k for k in event if k not in names)
    columns: dict[str, pa.Array] = {}
    for name in names:
        if name == "watch_time_sec":
            columns[name] = pa.array([_number(e.get(name)) for e in events], pa.float64())
        else:
            columns[name] = pa.array([_text(e.get(name)) for e in events], pa.string())
    moment = pa.timestamp("us", tz="UTC")
    # The job processes a micro-batch a moment after it is enqueued.
    columns["EventProcessedUtcTime"] = pa.array([(enqueued_ms + 1_250) * 1000] * len(events), moment)
    columns["PartitionId"] = pa.array([partition_id] * len(events), pa.int64())
    columns["EventEnqueuedUtcTime"] = pa.array([enqueued_ms * 1000] * len(events), moment)
    out = io.BytesIO()
    pq.write_table(pa.table(columns), out)
    return out.getvalue()


def to_csv(events: list[Event], *, gzip: bool = False) -> bytes:
    """Write events as CSV with a header row of the contract's fields.

    Unknown fields are left out; a missing or null field is an empty cell.

    Args:
        events: Event dicts.
        gzip: Gzip the result (with a zero mtime, so output stays deterministic).

    Returns:
        UTF-8 CSV bytes, newline-terminated rows.
    """
    names = USER_ACTIVITY.field_names
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(names)
    writer.writerows([_text(e.get(name)) or "" for name in names] for e in events)
    data = text.getvalue().encode()
    return gzip_compress(data, mtime=0) if gzip else data


def to_ndjson(events: list[Event], *, gzip: bool = False) -> bytes:
    """Write events as newline-delimited JSON, one compact object per line.

    Args:
        events: Event dicts.
        gzip: Gzip the result (with a zero mtime, so output stays deterministic).

    Returns:
        UTF-8 NDJSON bytes, each line newline-terminated.
    """
    data = b"".join(orjson.dumps(e) + b"\n" for e in events)
    return gzip_compress(data, mtime=0) if gzip else data
