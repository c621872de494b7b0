"""Whole landing files: a day of Capture windows, one large Capture file, clean events."""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from shared.dev.generator.capture import Codec, _avro, _check_codec, _truncate, capture_path
from shared.dev.generator.defects import DEFECT_KINDS, _Defects, _odd_record
from shared.dev.generator.sessions import Event, _EventSource
from shared.dev.generator.timestamps import _dotnet_time, _epoch_ms
from shared.dev.generator.world import _World

FileKind = Literal["capture", "empty", "truncated"]

DEFAULT_DAY: Final = dt.date(2026, 11, 21)
DEFAULT_START: Final = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)


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


def _users_for(events: int) -> int:
    # About 40 events per user per day: 200k events is a 5,000-user service.
    return max(50, min(250_000, events // 40))


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
