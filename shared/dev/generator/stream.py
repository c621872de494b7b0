"""Activity events one at a time, as a live producer sends them to Event Hubs."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from shared.dev.generator.defects import _Defects, _odd_record
from shared.dev.generator.files import _SINGLE_FILE_KINDS, _check_rate, _users_for
from shared.dev.generator.sessions import _EventSource
from shared.dev.generator.timestamps import _epoch_ms
from shared.dev.generator.world import _User, _World


@dataclass(frozen=True, slots=True)
class ProducedEvent:
    """One event as a producer sends it, and what a correct pipeline must make of it.

    Attributes:
        body: The bytes sent: a compact JSON object for a clean event.
        partition_key: The id of the user whose client sent it, so all of a user's events
            share a partition and stay in order. A body with several events (an array or
            NDJSON) is keyed by its first event's user.
        log_ids: log_ids silver must hold because of it: one for a valid event, several
            for an array or NDJSON body, none for an invalid or unreadable one.
        kind: The defect kind it carries (see ``DEFECT_KINDS``), or None for a clean event.
    """

    body: bytes
    partition_key: str
    log_ids: tuple[str, ...]
    kind: str | None


def activity_events(
    count: int,
    *,
    start: dt.datetime,
    interval_ms: float,
    seed: int = 0,
    defect_rate: float = 0.0,
) -> Iterator[ProducedEvent]:
    """Yield ``count`` events, event ``i`` enqueued at ``start + i * interval_ms``.

    The events are those of ``generate_capture_file`` (one partition's interleaved
    sessions; about 40 events per user), each keyed by the user who sent it. With
    ``defect_rate`` > 0, about that fraction carries a defect kind, every single-file kind
    at least once when ``count`` allows; cross-file duplicates cannot occur in one stream.

    The log_ids depend on ``count``, ``interval_ms``, ``seed`` and ``defect_rate`` alone,
    not on ``start``: the same stream sent twice carries the same log_ids, which silver
    keeps once.

    Args:
        count: Events to yield.
        start: Timezone-aware enqueue time of the first event; each ``event_time`` lags
            its enqueue time by the device's latency.
        interval_ms: Milliseconds between two enqueue times, ``1000 / rate``.
        seed: Seed for every random choice.
        defect_rate: Fraction of events carrying a defect kind, 0 to 1.

    Returns:
        The events, lazily, in enqueue order.

    Raises:
        ValueError: For ``count < 0``, ``interval_ms <= 0``, a rate outside 0..1 or a
            naive ``start``; raised by the call, before any event is made.
    """
    _check_rate(defect_rate)
    if count < 0 or not interval_ms > 0:
        raise ValueError(f"count must be >= 0 and interval_ms > 0, not {count} and {interval_ms}")
    return _stream(count, _epoch_ms(start, "start"), interval_ms, seed, defect_rate)


def _user_id(user: _User) -> str:
    return user.user_id


def _stream(
    count: int, start_ms: int, interval_ms: float, seed: int, defect_rate: float
) -> Iterator[ProducedEvent]:
    rng = random.Random(seed)
    world = _World(rng, users=_users_for(count), partitions=1)
    source = _EventSource(world, rng, 0, events=max(count, 1), window_ms=max(1, int(count * interval_ms)))
    defects = _Defects(rng, defect_rate, count, _SINGLE_FILE_KINDS) if defect_rate > 0 else None
    for i in range(count):
        enqueued_ms = start_ms + int(i * interval_ms)
        kind = defects.next_kind() if defects is not None else None
        if kind is None:
            event, user = source.next_event(enqueued_ms)
            body, key, ids = orjson.dumps(event), user.user_id, [event["log_id"]]
        else:
            assert defects is not None
            body, sent_key, ids = _odd_record(kind, source, defects, enqueued_ms, rng, _user_id)
            # Only a cross-file duplicate is sent without a key, and one stream has none.
            assert sent_key is not None
            key = sent_key
        if defects is not None and ids:
            # Odd but valid bodies get re-sent too, as in a Capture file.
            defects.remember(body, ids, key)
        yield ProducedEvent(body, key, tuple(ids), kind)
