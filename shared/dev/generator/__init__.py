"""Synthetic user-activity events as Event Hubs Capture files and other landing formats.

Everything here is pure and deterministic for a seed: one ``random.Random`` drives every
choice and no wall clock is read, so a test, the CLI demo and the benchmark see the same
bytes for the same arguments.

The data imitates a streaming service: a Zipf-skewed population of users, each with one
or two devices and one to three stable IP addresses from real ISP and cloud blocks in
many countries, watches Zipf-skewed content in sessions of
``play -> (pause | resume | seek)* -> stop | complete``. Sessions interleave within a
partition, and each event's ``event_time`` lags its enqueued time by the device's
latency (a fraction of a second to a few minutes).

With ``defect_rate`` > 0, records also carry the oddities the pipeline must survive; see
``VALID_KINDS``, ``MALFORMED_KINDS`` and ``INVALID_KINDS``.

The modules, in the order they build on each other: ``timestamps`` (epoch milliseconds and
their text forms), ``capture`` (the Avro format), ``world`` (users and catalogue),
``sessions`` (the valid events), ``defects`` (what a record can carry wrong), ``files``
(whole Capture files and days), ``formats`` (the other landing formats) and ``stream``
(events one at a time, as a live producer sends them).
"""

from __future__ import annotations

from shared.dev.generator.capture import (
    CaptureRecord,
    Codec,
    PropertiesVariant,
    capture_path,
    capture_record,
    write_capture,
)
from shared.dev.generator.defects import DEFECT_KINDS, INVALID_KINDS, MALFORMED_KINDS, VALID_KINDS
from shared.dev.generator.files import (
    FileKind,
    GeneratedFile,
    clean_events,
    generate_capture_file,
    generate_day,
)
from shared.dev.generator.formats import to_csv, to_ndjson, to_parquet_stream_analytics
from shared.dev.generator.sessions import Event
from shared.dev.generator.stream import ProducedEvent, activity_events

# Not public: tests/unit/test_geo.py checks that the generator's address blocks resolve to
# their countries, and reaches them here as it did when the generator was one module.
from shared.dev.generator.world import _address as _address
from shared.dev.generator.world import _blocks as _blocks

__all__ = [
    "DEFECT_KINDS",
    "INVALID_KINDS",
    "MALFORMED_KINDS",
    "VALID_KINDS",
    "CaptureRecord",
    "Codec",
    "Event",
    "FileKind",
    "GeneratedFile",
    "ProducedEvent",
    "PropertiesVariant",
    "activity_events",
    "capture_path",
    "capture_record",
    "clean_events",
    "generate_capture_file",
    "generate_day",
    "to_csv",
    "to_ndjson",
    "to_parquet_stream_analytics",
    "write_capture",
]
