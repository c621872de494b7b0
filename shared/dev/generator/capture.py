"""The Event Hubs Capture Avro format: its schema, its records, its blob paths."""

from __future__ import annotations

import datetime as dt
import io
import time
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any, Final, Literal, TypedDict

import fastavro

from shared.dev.generator.timestamps import _dotnet_time, _epoch_ms

Codec = Literal["null", "deflate"]
PropertiesVariant = Literal["nullable", "classic"]
SystemPropertyValue = int | float | str | bytes
PropertyValue = int | float | str | bytes | None


class CaptureRecord(TypedDict):
    """One record of an Event Hubs Capture Avro file."""

    SequenceNumber: int
    Offset: str
    EnqueuedTimeUtc: str
    SystemProperties: dict[str, SystemPropertyValue]
    Properties: dict[str, PropertyValue]
    Body: bytes | None


@cache
def _capture_schema(variant: PropertiesVariant) -> Any:
    values = ["long", "double", "string", "bytes"]
    properties = [*values, "null"] if variant == "nullable" else values
    return fastavro.parse_schema(
        {
            "type": "record",
            "name": "EventData",
            "namespace": "Microsoft.ServiceBus.Messaging",
            "fields": [
                {"name": "SequenceNumber", "type": "long"},
                {"name": "Offset", "type": "string"},
                {"name": "EnqueuedTimeUtc", "type": "string"},
                {"name": "SystemProperties", "type": {"type": "map", "values": values}},
                {"name": "Properties", "type": {"type": "map", "values": properties}},
                {"name": "Body", "type": ["null", "bytes"]},
            ],
        }
    )


def write_capture(
    records: Iterable[CaptureRecord],
    *,
    codec: Codec = "deflate",
    properties_variant: PropertiesVariant = "nullable",
    sync_interval: int = 16_000,
    sync_marker: bytes | None = None,
) -> bytes:
    """Write records as an Event Hubs Capture Avro file.

    Records are streamed into ``fastavro.writer``, so a generator never materialises.
    No records gives a header-only file, which is what Capture writes for an idle window.

    Args:
        records: Capture records, e.g. from ``capture_record``.
        codec: ``deflate`` (what Capture writes) or ``null``.
        properties_variant: ``nullable`` lets ``Properties`` values be null (current
            Capture schema); ``classic`` is the older schema without null.
        sync_interval: Uncompressed bytes per Avro block.
        sync_marker: The 16 bytes that end the header and every block; a fixed default.

    Returns:
        The Avro file's bytes.

    Raises:
        ValueError: For an unknown codec or properties variant, or a record the schema
            cannot hold (e.g. a null property under ``classic``).
    """
    _check_codec(codec)
    if properties_variant not in ("nullable", "classic"):
        raise ValueError(f"properties_variant must be 'nullable' or 'classic', not {properties_variant!r}")
    return _avro(records, codec, properties_variant, sync_interval, sync_marker)


# Fixed so the same records always give the same bytes. Capture picks a random marker per
# file, which no reader depends on.
_SYNC_MARKER: Final = bytes.fromhex("5d1f0c6a9e2b47d38a64f1c07b92e4a1")


def _avro(
    records: Iterable[Mapping[str, Any]],
    codec: Codec,
    variant: PropertiesVariant = "nullable",
    sync_interval: int = 16_000,
    sync_marker: bytes | None = None,
) -> bytes:
    out = io.BytesIO()
    fastavro.writer(
        out,
        _capture_schema(variant),
        records,
        codec=codec,
        sync_interval=sync_interval,
        sync_marker=sync_marker if sync_marker is not None else _SYNC_MARKER,
        # zlib's default level doubles the write time of a big file for ~10% fewer bytes;
        # readers cannot tell the difference.
        codec_compression_level=1 if codec == "deflate" else None,
    )
    return out.getvalue()


def capture_record(
    body: bytes | None,
    *,
    sequence_number: int,
    offset: int,
    enqueued: dt.datetime,
    partition_key: str | None = None,
    properties: Mapping[str, PropertyValue] | None = None,
) -> CaptureRecord:
    """Build one Capture record the way Event Hubs fills it in.

    Args:
        body: The event body as sent, or None.
        sequence_number: Position of the event in its partition.
        offset: Byte position of the event in its partition; stored as a string.
        enqueued: Timezone-aware enqueue time.
        partition_key: The producer's partition key, if it sent one.
        properties: Application properties.

    Returns:
        The record, with ``x-opt-enqueued-time`` (epoch ms) and ``x-opt-partition-key``
        in ``SystemProperties``.

    Raises:
        ValueError: If ``enqueued`` is naive.
    """
    enqueued_ms = _epoch_ms(enqueued, "enqueued")
    system: dict[str, SystemPropertyValue] = {"x-opt-enqueued-time": enqueued_ms}
    if partition_key is not None:
        system["x-opt-partition-key"] = partition_key
    return {
        "SequenceNumber": sequence_number,
        "Offset": str(offset),
        "EnqueuedTimeUtc": _dotnet_time(enqueued_ms // 1000),
        "SystemProperties": system,
        "Properties": dict(properties or {}),
        "Body": body,
    }


def capture_path(namespace: str, eventhub: str, partition: int, window_start: dt.datetime) -> str:
    """Return the blob path Capture uses for one partition's window.

    Args:
        namespace: Event Hubs namespace name.
        eventhub: Event hub name.
        partition: Partition id.
        window_start: Timezone-aware start of the capture window.

    Returns:
        ``{namespace}/{eventhub}/{partition}/{YYYY}/{MM}/{DD}/{hh}/{mm}/{ss}.avro``.

    Raises:
        ValueError: If ``window_start`` is naive.
    """
    t = time.gmtime(_epoch_ms(window_start, "window_start") // 1000)
    return (
        f"{namespace}/{eventhub}/{partition}/{t.tm_year:04d}/{t.tm_mon:02d}/{t.tm_mday:02d}"
        f"/{t.tm_hour:02d}/{t.tm_min:02d}/{t.tm_sec:02d}.avro"
    )


def _truncate(data: bytes, sync_marker: bytes) -> bytes:
    """Cut a Capture file in the middle of its last block's data."""
    markers = []  # the first ends the header, each later one ends a block
    at = data.find(sync_marker)
    while at >= 0:
        markers.append(at)
        at = data.find(sync_marker, at + 1)
    last_block_start = markers[-2] + len(sync_marker)
    return data[: (last_block_start + markers[-1]) // 2]


def _check_codec(codec: str) -> None:
    if codec not in ("null", "deflate"):
        raise ValueError(f"codec must be 'null' or 'deflate', not {codec!r}")
