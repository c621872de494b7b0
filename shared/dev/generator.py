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
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import ipaddress
import math
import random
import time
from bisect import bisect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from gzip import compress as gzip_compress
from types import MappingProxyType
from typing import Any, Final, Literal, TypedDict

import fastavro
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from shared.contracts.user_activity import USER_ACTIVITY

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
    "PropertiesVariant",
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

Codec = Literal["null", "deflate"]
PropertiesVariant = Literal["nullable", "classic"]
FileKind = Literal["capture", "empty", "truncated"]
Event = dict[str, Any]
SystemPropertyValue = int | float | str | bytes
PropertyValue = int | float | str | bytes | None

DEFAULT_DAY: Final = dt.date(2026, 11, 21)
DEFAULT_START: Final = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)

#: Kinds that break exactly one contract expectation, mapped to that expectation's name.
INVALID_KINDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "log_id_missing": "log_id_required",  # key absent, null, "" or blanks
        "log_id_too_long": "log_id_max_64_chars",
        "log_id_control_char": "log_id_no_control_chars",
        "user_id_missing": "user_id_required",  # key absent or null
        "event_time_missing": "event_time_required",  # key absent or null
        "event_time_unparseable": "event_time_iso8601_or_epoch_ms",  # "yesterday", ...
        "event_time_without_offset": "event_time_iso8601_or_epoch_ms",  # naive ISO
        "event_time_before_2000": "event_time_not_before_2000",
        "event_time_far_future": "event_time_within_1_day_of_enqueued",
        "action_not_allowed": "action_allowed",
        "content_id_missing": "content_id_required",  # key absent or null
        "watch_time_not_number": "watch_time_sec_is_number",
        "watch_time_out_of_range": "watch_time_sec_0_to_86400",
        "ip_address_invalid": "ip_address_valid",
    }
)
#: Bodies that hold no JSON object at all: no expectation applies, the record is unreadable.
MALFORMED_KINDS: Final = ("body_truncated_json", "body_not_object", "body_invalid_utf8")
#: Odd but valid records: every event they carry must reach silver.
VALID_KINDS: Final = (
    "duplicate_in_file",
    "duplicate_across_files",
    "pretty_printed",
    "array_body",
    "ndjson_body",
    "extra_fields",
    "event_time_epoch_ms",
    "event_time_offset",
)
#: Every record-level kind ``defect_rate`` draws from; file-level kinds are ``GeneratedFile.kind``.
DEFECT_KINDS: Final = VALID_KINDS + MALFORMED_KINDS + tuple(INVALID_KINDS)


class CaptureRecord(TypedDict):
    """One record of an Event Hubs Capture Avro file."""

    SequenceNumber: int
    Offset: str
    EnqueuedTimeUtc: str
    SystemProperties: dict[str, SystemPropertyValue]
    Properties: dict[str, PropertyValue]
    Body: bytes | None


@dataclass(frozen=True, slots=True)
class GeneratedFile:
    """One landing file and what a correct pipeline must make of it.

    Attributes:
        path: Blob path relative to the container, in Capture layout for Avro files.
        data: The file's bytes.
        events: Avro records written. An array or NDJSON body is one record that expands
            to several rows; for a truncated file this counts the records written before
            the cut, none of which may land.
        valid_log_ids: log_ids that silver must hold because of this file: valid events,
            events inside array and NDJSON bodies, and re-sent duplicates.
        kind: ``capture``; ``empty`` (header only, as Capture writes for an idle window);
            or ``truncated`` (cut mid-block, so the whole file is quarantined).
    """

    path: str
    data: bytes
    events: int
    valid_log_ids: frozenset[str]
    kind: FileKind


# --------------------------------------------------------------------------- Capture Avro


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


def _epoch_ms(moment: dt.datetime, name: str) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment!r}")
    return (moment - _EPOCH) // _MS


_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS: Final = dt.timedelta(milliseconds=1)


# Records arrive in enqueue order, so consecutive ones share a second: caching the
# formatted second keeps time formatting off the per-event cost.
@lru_cache(maxsize=4096)
def _dotnet_time(second: int) -> str:
    t = time.gmtime(second)
    hour = t.tm_hour % 12 or 12
    half = "AM" if t.tm_hour < 12 else "PM"
    return f"{t.tm_mon}/{t.tm_mday}/{t.tm_year} {hour}:{t.tm_min:02d}:{t.tm_sec:02d} {half}"


@lru_cache(maxsize=16_384)
def _iso_second(second: int) -> str:
    t = time.gmtime(second)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


def _iso_z(ms: int) -> str:
    second, milli = divmod(ms, 1000)
    return f"{_iso_second(second)}.{milli:03d}Z"


def _iso_offset(ms: int, offset_minutes: int) -> str:
    """The same instant as ``_iso_z(ms)``, written in local time with a ``±hh:mm`` offset."""
    second, milli = divmod(ms, 1000)
    sign = "+" if offset_minutes >= 0 else "-"
    hours, minutes = divmod(abs(offset_minutes), 60)
    local = _iso_second(second + offset_minutes * 60)
    return f"{local}.{milli:03d}{sign}{hours:02d}:{minutes:02d}"


# --------------------------------------------------------------------------- population

# Blocks of large ISPs and clouds, weighted roughly by audience. Each block was checked
# against geoip2fast's database to resolve to its country, so gold's geo breakdown shows
# a believable spread rather than "unknown".
_NETWORKS: Final[tuple[tuple[str, int, tuple[str, ...], tuple[str, ...]], ...]] = (
    (
        "US",
        30,
        ("73.0.0.0/8", "98.192.0.0/10", "99.0.0.0/10", "71.160.0.0/11", "76.0.0.0/10", "3.80.0.0/12"),
        ("2601::/20", "2600:1700::/28", "2600:6c00::/24", "2600:1f00::/24"),
    ),
    ("IN", 12, ("49.36.0.0/14", "106.192.0.0/11", "117.192.0.0/10"), ("2409:4000::/22",)),
    ("BR", 7, ("177.0.0.0/12", "187.0.0.0/12"), ("2804:14c::/31", "2804:d41::/32")),
    ("DE", 6, ("79.192.0.0/10", "91.0.0.0/10"), ("2003::/19", "2a02:8100::/27")),
    ("GB", 6, ("86.128.0.0/10", "81.128.0.0/11"), ("2a00:23c0::/27",)),
    ("FR", 5, ("86.192.0.0/11", "90.0.0.0/10"), ("2a01:cb00::/24", "2a01:e30::/28")),
    ("JP", 5, ("126.0.0.0/8",), ("240b::/26", "2400:4050::/32")),
    ("MX", 4, ("189.128.0.0/10",), ("2806:2f0::/32",)),
    ("CA", 4, ("99.224.0.0/11", "142.112.0.0/13", "174.88.0.0/13"), ("2607:fea8::/32",)),
    ("ID", 3, ("36.64.0.0/11",), ("2001:448a::/32",)),
    ("KR", 3, ("175.192.0.0/10",), ("2001:2d8::/32",)),
    ("ES", 3, ("88.0.0.0/11",), ("2a0c:5a80::/29",)),
    ("IT", 3, ("79.0.0.0/10", "93.32.0.0/11"), ("2001:b07::/32",)),
    ("AU", 3, ("1.128.0.0/11",), ("2001:8000::/20", "2001:44b8::/32")),
    ("PL", 2, ("83.0.0.0/11",), ("2a01:110f::/32",)),
    ("NL", 2, ("77.160.0.0/12",), ("2a02:a400::/26",)),
    ("TR", 2, ("78.160.0.0/11",), ()),
    ("VN", 2, ("113.160.0.0/11",), ("2405:4800::/32",)),
    ("PH", 2, ("112.198.0.0/16",), ()),
    ("TH", 2, ("49.228.0.0/14",), ()),
    ("AR", 2, ("181.0.0.0/12",), ()),
    ("CN", 2, ("113.64.0.0/10",), ("240e::/20",)),
    ("SE", 1, ("90.224.0.0/12",), ("2001:2040::/32",)),
    ("CH", 1, ("85.0.0.0/13",), ("2a02:1210::/28",)),
    ("IE", 1, ("86.40.0.0/13",), ()),
    ("RO", 1, (), ("2a02:2f00::/29",)),
    ("RU", 1, ("95.24.0.0/13",), ()),
    ("ZA", 1, ("41.0.0.0/11",), ("2c0f:f4c0::/32",)),
    ("NG", 1, ("105.112.0.0/12",), ()),
    ("EG", 1, ("41.32.0.0/12",), ()),
)
_Block = tuple[int, int, int]  # (version, first address, address count)
_DEVICES: Final = ("ios", "android", "web", "tv", "roku")
_DEVICE_WEIGHTS: Final = (30, 30, 20, 12, 8)
# Decimals of watch_time_sec: set-top boxes report whole seconds, apps the player's position.
_DECIMALS: Final = MappingProxyType({"ios": 2, "android": 1, "web": 2, "tv": 0, "roku": 0})


@cache
def _blocks() -> tuple[tuple[int, ...], tuple[tuple[tuple[_Block, ...], tuple[_Block, ...]], ...]]:
    cumulative: list[int] = []
    countries: list[tuple[tuple[_Block, ...], tuple[_Block, ...]]] = []
    total = 0
    for _country, weight, v4, v6 in _NETWORKS:
        total += weight
        cumulative.append(total)
        nets = [ipaddress.ip_network(cidr) for cidr in (*v4, *v6)]
        blocks = [(n.version, int(n.network_address), n.num_addresses) for n in nets]
        countries.append((tuple(b for b in blocks if b[0] == 4), tuple(b for b in blocks if b[0] == 6)))
    return tuple(cumulative), tuple(countries)


def _address(rng: random.Random, block: _Block) -> str:
    version, first, size = block
    if version == 6:
        return str(ipaddress.IPv6Address(first + rng.randrange(1, size)))
    address = first + rng.randrange(1, size - 1)
    if address & 0xFF in (0, 255):  # look like a host, not a /24's network or broadcast
        address ^= 1
    return str(ipaddress.IPv4Address(address))


def _private_address(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    return f"192.168.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _diagnostic_id(rng: random.Random) -> str:
    return f"00-{rng.getrandbits(128):032x}-{rng.getrandbits(64):016x}-01"


@dataclass(frozen=True, slots=True)
class _User:
    user_id: str
    partition_key: str | None
    devices: tuple[str | None, ...]
    addresses: tuple[str, ...]
    avro_properties: dict[str, tuple[str, PropertyValue]]  # in fastavro's tuple notation


def _avro_type(value: PropertyValue) -> str:
    """The Capture Properties union branch that holds ``value``."""
    match value:
        case None:
            return "null"
        case bool() | int():
            return "long"
        case float():
            return "double"
        case str():
            return "string"
        case bytes():
            return "bytes"
    raise TypeError(f"a Capture property cannot hold {value!r}")


class _World:
    """Users and catalogue shared by every file of one generated day."""

    def __init__(self, rng: random.Random, *, users: int, partitions: int) -> None:
        self._rng = rng
        self._ids = [f"u-{n:07d}" for n in rng.sample(range(10_000_000), users)]
        self._users: list[_User | None] = [None] * users
        # Zipf over rank: a few heavy viewers, a long tail of occasional ones. Rank r is
        # keyed to partition r % partitions (a stand-in for hashing the partition key).
        self._by_partition: list[tuple[list[int], list[float]]] = []
        for p in range(partitions):
            ranks = list(range(p, users, partitions))
            cumulative: list[float] = []
            total = 0.0
            for r in ranks:
                total += (r + 5) ** -1.1
                cumulative.append(total)
            self._by_partition.append((ranks, cumulative))
        titles = max(50, min(20_000, users // 2))
        self.content_ids = [f"c-{n:06d}" for n in rng.sample(range(1_000_000), titles)]
        self.durations = [self._duration() for _ in range(titles)]
        self.content_cumulative: list[float] = []
        total = 0.0
        for r in range(titles):
            total += (r + 3) ** -1.0
            self.content_cumulative.append(total)

    def _duration(self) -> float:
        x = self._rng.random()
        if x < 0.6:
            return self._rng.uniform(1_200, 3_600)  # episodes
        if x < 0.85:
            return self._rng.uniform(4_800, 7_200)  # films
        return self._rng.uniform(60, 600)  # clips and trailers

    def pick_user(self, partition: int) -> _User:
        ranks, cumulative = self._by_partition[partition]
        if not ranks:  # more partitions than users
            ranks, cumulative = self._by_partition[0]
        rank = ranks[min(bisect(cumulative, self._rng.random() * cumulative[-1]), len(ranks) - 1)]
        user = self._users[rank]
        if user is None:  # built on first use: a big world never pays for idle users
            user = self._users[rank] = self._make_user(self._ids[rank])
        return user

    def pick_content(self) -> int:
        cumulative = self.content_cumulative
        return min(bisect(cumulative, self._rng.random() * cumulative[-1]), len(cumulative) - 1)

    def _make_user(self, user_id: str) -> _User:
        rng = self._rng
        cumulative, countries = _blocks()
        v4, v6 = countries[min(bisect(cumulative, rng.random() * cumulative[-1]), len(countries) - 1)]
        addresses: list[str] = []
        for _ in range(rng.choice((1, 1, 2, 2, 3))):
            family = v6 if v6 and (not v4 or rng.random() < 0.3) else v4
            addresses.append(_address(rng, rng.choice(family)))
        if rng.random() < 0.005:  # valid per the contract; geo lookup says "unknown"
            addresses[0] = _private_address(rng)
        devices: tuple[str | None, ...] = tuple(
            rng.choices(_DEVICES, _DEVICE_WEIGHTS, k=1 if rng.random() < 0.8 else 2)
        )
        if rng.random() < 0.01:  # an old client that never sent the optional field
            devices = (None,)
        x = rng.random()
        properties: dict[str, PropertyValue] = {}
        if x < 0.12:
            properties = {"Diagnostic-Id": _diagnostic_id(rng)}
        elif x < 0.18:
            properties = {
                "content-type": "application/json",
                "producer": "web-sdk/3.4.1",
                "batch-size": rng.randrange(1, 50),
                "sample-rate": 0.25,
                "checksum": rng.randbytes(4),
            }
        elif x < 0.2:
            properties = {"correlation-id": None}
        # Most producers key by user so a user's events stay in order; some do not.
        partition_key = user_id if rng.random() < 0.9 else None
        tagged = {name: (_avro_type(value), value) for name, value in properties.items()}
        return _User(user_id, partition_key, devices, tuple(addresses), tagged)


# --------------------------------------------------------------------------- sessions

_NEW, _PLAYING, _PAUSED = 0, 1, 2
_UUID_CLEAR: Final = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
_UUID_SET: Final = (0x4 << 76) | (0x2 << 62)


class _Session:
    __slots__ = (
        "address",
        "device",
        "duration",
        "lag_ms",
        "last_ms",
        "position",
        "scale",
        "state",
        "steps",
        "title",
        "user",
        "user_id",
    )

    def __init__(self, world: _World, r: Callable[[], float], partition: int, *, resumed: bool) -> None:
        user = world.pick_user(partition)
        self.user = user
        self.user_id = user.user_id
        self.device = user.devices[int(r() * len(user.devices))]
        self.address = user.addresses[int(r() * len(user.addresses))]
        # 10 ** decimals of watch_time_sec; 1 means the client sends an integer.
        self.scale = 10 ** _DECIMALS[self.device] if self.device is not None else 100
        content = world.pick_content()
        self.title = world.content_ids[content]
        self.duration = world.durations[content]
        # Device-to-hub latency: log-uniform from 0.2 s to 4 minutes.
        self.lag_ms = int(200 * 1200 ** r())
        # Mostly short sessions, a few long ones with many pauses and seeks.
        self.steps = int(r() * r() * 32)
        self.last_ms = -1
        # A session already running when the window opened starts mid-stream, so
        # windows do not all begin with a burst of plays.
        self.state = _PLAYING if resumed else _NEW
        self.position = r() * self.duration if resumed or r() < 0.3 else 0.0


class _EventSource:
    """Interleaved viewing sessions in one partition during one capture window."""

    def __init__(
        self, world: _World, rng: random.Random, partition: int, *, events: int, window_ms: int
    ) -> None:
        self._world = world
        self._random = r = rng.random
        self._bits = rng.getrandbits
        self._partition = partition
        # About 45 s between two events of one session; bounded so huge files stay cheap.
        concurrent = max(4, min(4096, events * 45_000 // max(window_ms, 1)))
        self._sessions = [_Session(world, r, partition, resumed=r() < 0.7) for _ in range(concurrent)]

    def next_event(self, enqueued_ms: int) -> tuple[Event, _User]:
        """The next valid event, enqueued at ``enqueued_ms``, and the user who sent it."""
        # The hot path of every generator: locals and plain arithmetic on purpose.
        r = self._random
        sessions = self._sessions
        i = int(r() * len(sessions))
        s = sessions[i]
        event_ms = enqueued_ms - s.lag_ms
        if event_ms < s.last_ms:
            event_ms = s.last_ms
        state = s.state
        if state == _NEW:
            action = "play"
            s.state = _PLAYING
        else:
            if state == _PLAYING and s.last_ms >= 0:
                s.position += (event_ms - s.last_ms) / 1000
            if s.position >= s.duration or (s.steps <= 0 and r() < 0.35):
                action, s.position = "complete", s.duration
                sessions[i] = _Session(self._world, r, self._partition, resumed=False)
            elif s.steps <= 0:
                action = "stop"
                sessions[i] = _Session(self._world, r, self._partition, resumed=False)
            elif state == _PAUSED:
                action, s.state = "resume", _PLAYING
            elif r() < 0.55:
                action, s.state = "pause", _PAUSED
            else:
                action, s.position = "seek", r() * s.duration
            s.steps -= 1
        s.last_ms = event_ms
        scale = s.scale
        if scale == 1:  # set-top boxes: whole seconds everywhere
            event_time = _iso_second(event_ms // 1000) + "Z"
            watch: float = int(s.position)
        else:
            event_time = _iso_z(event_ms)
            watch = int(s.position * scale) / scale
        # A version-4 UUID, formatted by hand: the uuid module costs 3x as much.
        h = (self._bits(128) & _UUID_CLEAR | _UUID_SET).to_bytes(16).hex()
        event: Event = {
            "log_id": f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}",
            "user_id": s.user_id,
            "event_time": event_time,
            "action": action,
            "content_id": s.title,
            "watch_time_sec": watch,
        }
        if r() >= 0.01:  # ~1% of events arrive without the optional address
            event["ip_address"] = s.address
        if s.device is not None:
            event["device"] = s.device
        return event, s.user


# --------------------------------------------------------------------------- defects


class _Defects:
    """Chooses which records carry a defect, and remembers bodies worth re-sending.

    Every kind is scheduled once, spread evenly over the day's records, so even a small
    day at a low rate shows all of them; on top, each record is defective with
    probability ``rate``.
    """

    def __init__(
        self, rng: random.Random, rate: float, records: int, kinds: tuple[str, ...] = DEFECT_KINDS
    ) -> None:
        self._random = rng.random
        self._rng = rng
        self._rate = rate
        self._kinds = kinds
        self._pending = list(kinds)
        self._due = [(k + 1) * records // (len(kinds) + 1) for k in range(len(kinds))]
        self._seen = 0
        # (body, its valid log_ids, partition key) of records with only valid events
        self.in_file: list[tuple[bytes, list[str], str | None]] = []
        self._ring = 0
        self.earlier: list[tuple[bytes, list[str]]] = []

    def _feasible(self, kind: str) -> bool:
        if kind == "duplicate_in_file":
            return bool(self.in_file)
        if kind == "duplicate_across_files":
            return bool(self.earlier)
        return True

    def next_kind(self) -> str | None:
        seen = self._seen
        self._seen += 1
        pending = self._pending
        if pending and seen >= self._due[len(self._kinds) - len(pending)]:
            for j, kind in enumerate(pending):
                if self._feasible(kind):
                    del pending[j]
                    return kind
        if self._random() < self._rate:
            kind = self._rng.choice([k for k in self._kinds if self._feasible(k)])
            if kind in pending:
                pending.remove(kind)
            return kind
        return None

    def remember(self, body: bytes, log_ids: list[str], partition_key: str | None) -> None:
        """Keep a record with only valid events as a candidate for re-sending."""
        if len(self.in_file) < 64:
            self.in_file.append((body, log_ids, partition_key))
        else:
            self.in_file[self._ring] = (body, log_ids, partition_key)
            self._ring = (self._ring + 1) % 64

    def end_file(self) -> None:
        self.earlier.extend((body, log_ids) for body, log_ids, _ in self.in_file)
        if len(self.earlier) > 256:
            self.earlier = self._rng.sample(self.earlier, 256)
        self.in_file.clear()
        self._ring = 0


def _defective_body(kind: str, event: Event, enqueued_ms: int, rng: random.Random) -> bytes:
    """Encode ``event`` as a single-event body of ``kind``; mutates ``event``."""
    log_id: str = event["log_id"]
    match kind:
        case "pretty_printed":
            return orjson.dumps(event, option=orjson.OPT_INDENT_2)
        case "extra_fields":
            event["app_version"] = rng.choice(("5.2.1", "5.3.0-beta.2", "4.18.7"))
            event["experiment"] = {"id": rng.randrange(1, 20), "arm": rng.choice("AB")}
        case "event_time_epoch_ms":
            event["event_time"] = enqueued_ms - rng.randrange(200, 60_000)
        case "event_time_offset":
            event["event_time"] = _iso_offset(
                enqueued_ms - rng.randrange(200, 60_000), rng.choice((120, -300, 330, 540, 60))
            )
        case "body_truncated_json":
            text = orjson.dumps(event)
            return text[: rng.randrange(1, len(text) - 1)]
        case "body_not_object":
            return rng.choice((b"42", b'"play"', b"null", b"3.5"))
        case "body_invalid_utf8":
            text = orjson.dumps(event)
            at = text.index(b'"user_id":"') + len(b'"user_id":"')
            return text[:at] + rng.choice((b"\xff\xfe", b"\xc3\x28", b"\xe2\x82")) + text[at:]
        case "log_id_missing":
            _drop(event, "log_id", rng, blanks=("", "   "))
        case "log_id_too_long":
            event["log_id"] = f"{log_id}-{log_id}"[: rng.randrange(65, 74)]
        case "log_id_control_char":
            event["log_id"] = log_id[:8] + rng.choice("\x00\t\n\x1b\x7f") + log_id[8:]
        case "user_id_missing":
            _drop(event, "user_id", rng)
        case "event_time_missing":
            _drop(event, "event_time", rng)
        case "event_time_unparseable":
            event["event_time"] = rng.choice(("yesterday", "21/11/2026 10:15", "2026-13-45T99:00:00Z"))
        case "event_time_without_offset":
            event["event_time"] = _iso_z(enqueued_ms - rng.randrange(200, 60_000))[:-1]
        case "event_time_before_2000":
            event["event_time"] = rng.choice(("1999-12-31T23:59:59.999Z", "1970-01-01T00:00:00Z"))
        case "event_time_far_future":
            event["event_time"] = _iso_z(enqueued_ms + rng.randrange(2, 30) * 86_400_000)
        case "action_not_allowed":
            event["action"] = rng.choice(("rewind", "fast_forward", "PLAY"))
        case "content_id_missing":
            _drop(event, "content_id", rng)
        case "watch_time_not_number":
            event["watch_time_sec"] = rng.choice(("abc", "n/a", "12 sec"))
        case "watch_time_out_of_range":
            event["watch_time_sec"] = rng.choice((-5, -0.5, 86_401, 90_000))
        case "ip_address_invalid":
            event["ip_address"] = rng.choice(("999.1.1.1", "not-an-ip", "10.0.0", "2001:db8::g1"))
        case _:
            raise ValueError(f"not a single-event defect kind: {kind!r}")
    return orjson.dumps(event)


def _drop(event: Event, field: str, rng: random.Random, blanks: tuple[str, ...] = ()) -> None:
    """Make a required field missing in one of the ways producers manage it."""
    way = rng.choice((None, "absent", *blanks))
    if way == "absent":
        del event[field]
    else:
        event[field] = way


# --------------------------------------------------------------------------- files


@dataclass(slots=True)
class _PartitionLog:
    """Where a partition's log stands; carries on from one capture window to the next."""

    sequence_number: int
    offset: int


def _records(
    *,
    world: _World,
    rng: random.Random,
    partition: int,
    log: _PartitionLog,
    start_ms: int,
    window_ms: int,
    events: int,
    defects: _Defects | None,
    valid: set[str] | None,
) -> Iterator[dict[str, Any]]:
    """Yield one window's records in enqueue order, adding valid log_ids to ``valid``."""
    source = _EventSource(world, rng, partition, events=events, window_ms=window_ms)
    r = rng.random
    dumps = orjson.dumps
    step = window_ms / events
    enqueued_ms = start_ms
    sequence_number, offset = log.sequence_number, log.offset
    second, enqueued_text = -1, ""
    for i in range(events):
        at = start_ms + int((i + r()) * step)
        if at > enqueued_ms:  # the hub's clock never runs backwards within a partition
            enqueued_ms = at
        kind = defects.next_kind() if defects is not None else None
        if kind is None:
            event, user = source.next_event(enqueued_ms)
            body = dumps(event)
            key = user.partition_key
            properties = user.avro_properties
            if valid is not None:
                valid.add(event["log_id"])
            if defects is not None:
                defects.remember(body, [event["log_id"]], key)
        else:
            assert defects is not None
            body, key, ids = _odd_record(kind, source, defects, enqueued_ms, rng)
            properties = {}
            if valid is not None:
                valid.update(ids)
            if ids:  # odd but valid records get re-sent too, or a rate of 1 could never duplicate
                defects.remember(body, ids, key)
        sequence_number += 1
        # Offsets are byte positions in the partition log: body plus framing.
        offset += len(body) + 96
        if enqueued_ms // 1000 != second:
            second = enqueued_ms // 1000
            enqueued_text = _dotnet_time(second)
        # Tuple notation names the union branch, which spares fastavro a branch search
        # per value (about 2 µs a record, a third of the write time).
        system: dict[str, tuple[str, int | str]] = {"x-opt-enqueued-time": ("long", enqueued_ms)}
        if key is not None:
            system["x-opt-partition-key"] = ("string", key)
        yield {
            "SequenceNumber": sequence_number,
            "Offset": str(offset),
            "EnqueuedTimeUtc": enqueued_text,
            "SystemProperties": system,
            "Properties": properties,
            "Body": ("bytes", body),
        }
    log.sequence_number, log.offset = sequence_number, offset


def _odd_record(
    kind: str, source: _EventSource, defects: _Defects, enqueued_ms: int, rng: random.Random
) -> tuple[bytes, str | None, list[str]]:
    """Body, partition key and valid log_ids of a record carrying a defect ``kind``."""
    if kind == "duplicate_in_file":
        body, ids, key = rng.choice(defects.in_file)
        return body, key, ids
    if kind == "duplicate_across_files":
        # A producer's retry sent without a key: it may land on any partition.
        body, ids = rng.choice(defects.earlier)
        return body, None, ids
    if kind in ("array_body", "ndjson_body"):
        batch = [source.next_event(enqueued_ms) for _ in range(rng.randrange(2, 4))]
        events = [event for event, _ in batch]
        if kind == "array_body":
            body = orjson.dumps(events)
        else:
            body = b"\n".join(orjson.dumps(event) for event in events) + rng.choice((b"", b"\n"))
        return body, batch[0][1].partition_key, [event["log_id"] for event in events]
    event, user = source.next_event(enqueued_ms)
    event_id: str = event["log_id"]
    body = _defective_body(kind, event, enqueued_ms, rng)
    return body, user.partition_key, [event_id] if kind in VALID_KINDS else []


def _truncate(data: bytes, sync_marker: bytes) -> bytes:
    """Cut a Capture file in the middle of its last block's data."""
    markers = []  # the first ends the header, each later one ends a block
    at = data.find(sync_marker)
    while at >= 0:
        markers.append(at)
        at = data.find(sync_marker, at + 1)
    last_block_start = markers[-2] + len(sync_marker)
    return data[: (last_block_start + markers[-1]) // 2]


def _users_for(events: int) -> int:
    # About 40 events per user per day: 200k events is a 5,000-user service.
    return max(50, min(250_000, events // 40))


def _check_codec(codec: str) -> None:
    if codec not in ("null", "deflate"):
        raise ValueError(f"codec must be 'null' or 'deflate', not {codec!r}")


def _check_rate(defect_rate: float) -> None:
    if not 0.0 <= defect_rate <= 1.0:
        raise ValueError(f"defect_rate must be between 0 and 1, not {defect_rate}")


def generate_day(
    *,
    files: int,
    events_per_file: int,
    defect_rate: float = 0.0,
    seed: int = 0,
    day: dt.date | None = None,
    namespace: str = "tributary-ns",
    eventhub: str = "user-activity",
    partitions: int = 4,
    codec: Codec = "deflate",
) -> Iterator[GeneratedFile]:
    """Generate one day of Capture files, one window per file, in time order.

    File ``i`` holds partition ``i % partitions``; windows are spread evenly over the
    day (on a 5-minute grid when there is room) and last at most 5 minutes.

    With ``defect_rate`` > 0, about that fraction of records carries a kind from
    ``DEFECT_KINDS`` (some valid, some not). Every kind appears at least once when the
    day has 200 records or more, ``files >= 2`` and ``events_per_file >= 2`` (duplicates
    need an earlier record in the file and an earlier file). Two more files come on top,
    a third and two thirds of the way through the day: one header-only
    (``kind="empty"``) and one cut mid-block (``kind="truncated"``, written clean since
    none of it may land).

    Args:
        files: Files with events; with ``defect_rate`` > 0 the empty and truncated files
            come on top, ``files + 2`` in all.
        events_per_file: Avro records per file with events.
        defect_rate: Fraction of records carrying a defect kind, 0 to 1.
        seed: Seed for every random choice.
        day: UTC day of the windows; defaults to 2026-11-21.
        namespace: Event Hubs namespace, the first path segment.
        eventhub: Event hub name, the second path segment.
        partitions: Partition count.
        codec: Avro codec.

    Returns:
        The files, lazily, each with the log_ids a correct pipeline must land from it.

    Raises:
        ValueError: For out-of-range arguments or more windows than seconds in a day; raised
            by the call, before any file is made.
    """
    _check_codec(codec)
    _check_rate(defect_rate)
    if files < 0 or events_per_file < 1 or partitions < 1:
        raise ValueError("files must be >= 0, events_per_file and partitions >= 1")
    layout = _Layout.plan(
        files=files, broken=defect_rate > 0 and files > 0, partitions=partitions, day=day or DEFAULT_DAY
    )
    return _day(
        layout,
        files=files,
        events_per_file=events_per_file,
        defect_rate=defect_rate,
        seed=seed,
        namespace=namespace,
        eventhub=eventhub,
        codec=codec,
    )


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where each file of a day goes: its partition, its window, and which two are broken."""

    total: int
    partitions: int
    day_start: dt.datetime
    spacing_s: int
    window_ms: int
    empty_at: int
    truncated_at: int

    @classmethod
    def plan(cls, *, files: int, broken: bool, partitions: int, day: dt.date) -> _Layout:
        total = files + 2 if broken else files
        windows = max(1, math.ceil(total / partitions))
        spacing = 86_400 // windows
        if spacing < 1:
            raise ValueError(f"{windows} windows per partition do not fit in one day")
        if spacing >= 300:
            spacing -= spacing % 300
        # Never first: the pipeline should meet a good file before a broken one.
        empty_at, truncated_at = (total // 3, 2 * total // 3) if broken else (-1, -1)
        day_start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        return cls(total, partitions, day_start, spacing, min(spacing, 300) * 1000, empty_at, truncated_at)

    def window_start(self, i: int) -> dt.datetime:
        return self.day_start + dt.timedelta(seconds=(i // self.partitions) * self.spacing_s)


def _day(
    layout: _Layout,
    *,
    files: int,
    events_per_file: int,
    defect_rate: float,
    seed: int,
    namespace: str,
    eventhub: str,
    codec: Codec,
) -> Iterator[GeneratedFile]:
    rng = random.Random(seed)
    partitions = layout.partitions
    world = _World(rng, users=_users_for(files * events_per_file), partitions=partitions)
    defects = _Defects(rng, defect_rate, files * events_per_file) if defect_rate > 0 else None
    logs = [_PartitionLog(rng.randrange(10_000_000), rng.randrange(1 << 33)) for _ in range(partitions)]
    for i in range(layout.total):
        partition = i % partitions
        start = layout.window_start(i)
        path = capture_path(namespace, eventhub, partition, start)
        sync_marker = rng.randbytes(16)
        if i == layout.empty_at:
            data = _avro((), codec, sync_marker=sync_marker)
            yield GeneratedFile(path, data, 0, frozenset(), "empty")
            continue
        truncated = i == layout.truncated_at
        valid: set[str] | None = None if truncated else set()
        records = _records(
            world=world,
            rng=rng,
            partition=partition,
            log=logs[partition],
            start_ms=_epoch_ms(start, "start"),
            window_ms=layout.window_ms,
            events=events_per_file,
            # A clean file: whatever it carried never lands, so a defect there proves nothing.
            defects=None if truncated else defects,
            valid=valid,
        )
        if truncated:
            # Small blocks so the cut leaves whole blocks before it, as a failed upload does.
            data = _avro(
                records, codec, sync_interval=max(256, events_per_file * 40), sync_marker=sync_marker
            )
            yield GeneratedFile(path, _truncate(data, sync_marker), events_per_file, frozenset(), "truncated")
            continue
        data = _avro(records, codec, sync_marker=sync_marker)
        if defects is not None:
            defects.end_file()
        yield GeneratedFile(path, data, events_per_file, frozenset(valid or ()), "capture")


_SINGLE_FILE_KINDS: Final = tuple(k for k in DEFECT_KINDS if k != "duplicate_across_files")


def generate_capture_file(
    *,
    events: int,
    seed: int,
    codec: Codec = "deflate",
    start: dt.datetime = DEFAULT_START,
    defect_rate: float = 0.0,
    collect_log_ids: bool = True,
    namespace: str = "tributary-ns",
    eventhub: str = "user-activity",
    partition: int = 0,
) -> GeneratedFile:
    """Generate one large Capture file: a 5-minute window of a busy partition.

    Meant for benchmarks (1M or 5M events, hundreds of MB), so records stream straight
    into the Avro writer.

    Args:
        events: Avro records to write.
        seed: Seed for every random choice.
        codec: Avro codec.
        start: Timezone-aware start of the window; names the blob path.
        defect_rate: As in ``generate_day``; cross-file duplicates cannot occur.
        collect_log_ids: False leaves ``valid_log_ids`` empty, saving about 150 MB per
            million events when the caller only needs the bytes.
        namespace: Event Hubs namespace, the first path segment.
        eventhub: Event hub name, the second path segment.
        partition: Partition id in the path.

    Returns:
        The file.

    Raises:
        ValueError: For ``events < 1``, a rate outside 0..1, a naive ``start``, or an
            unknown codec.
    """
    _check_codec(codec)
    _check_rate(defect_rate)
    if events < 1:
        raise ValueError(f"events must be >= 1, not {events}")
    rng = random.Random(seed)
    world = _World(rng, users=_users_for(events), partitions=1)
    valid: set[str] | None = set() if collect_log_ids else None
    records = _records(
        world=world,
        rng=rng,
        partition=0,
        log=_PartitionLog(rng.randrange(10_000_000), rng.randrange(1 << 33)),
        start_ms=_epoch_ms(start, "start"),
        window_ms=300_000,
        events=events,
        defects=_Defects(rng, defect_rate, events, _SINGLE_FILE_KINDS) if defect_rate > 0 else None,
        valid=valid,
    )
    data = _avro(records, codec, sync_marker=rng.randbytes(16))
    path = capture_path(namespace, eventhub, partition, start)
    return GeneratedFile(path, data, events, frozenset(valid or ()), "capture")


def clean_events(n: int, *, seed: int = 0, start: dt.datetime | None = None) -> list[Event]:
    """Return ``n`` valid event dicts, as producers send them.

    Valid includes the optional fields' absence (about 1% lack ``ip_address``) and the
    odd private address. Events are enqueued over the 5 minutes from ``start``; each
    ``event_time`` is up to 4 minutes before its enqueue time.

    Args:
        n: Number of events.
        seed: Seed for every random choice.
        start: Timezone-aware start of the window; defaults to 2026-11-21 12:00 UTC.

    Returns:
        The events in enqueue order.

    Raises:
        ValueError: If ``start`` is naive.
    """
    rng = random.Random(seed)
    start_ms = _epoch_ms(start or DEFAULT_START, "start")
    world = _World(rng, users=_users_for(n), partitions=1)
    source = _EventSource(world, rng, 0, events=max(n, 1), window_ms=300_000)
    step = 300_000 / max(n, 1)
    return [source.next_event(start_ms + int(i * step))[0] for i in range(n)]


# --------------------------------------------------------------------------- other formats


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
