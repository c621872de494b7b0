"""Input files whose every row is known: valid events, invalid rows, duplicates.

Landing files are NDJSON (``ingest`` reads them as it reads Capture files): each line is
a valid event from ``clean_events`` or one of ``INVALID``, each of which breaks exactly
one rule of the contract, so the quarantine must take it and silver must never see it.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

import orjson

from shared.dev.generator import clean_events
from tests.reliability.audit import Event

START = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)


def _broken(event: Event, **changes: object) -> bytes:
    bad = dict(event)
    for key, value in changes.items():
        if value is _DROP:
            bad.pop(key, None)
        else:
            bad[key] = value
    return orjson.dumps(bad)


_DROP = object()
#: Ways a row can be invalid: each returns the line for an otherwise valid event.
INVALID = {
    "malformed_body": lambda e: orjson.dumps(e)[:-7],
    "not_an_object": lambda e: b'["' + str(e["log_id"]).encode() + b'"]',
    "log_id_required": lambda e: _broken(e, log_id=_DROP),
    "log_id_max_64_chars": lambda e: _broken(e, log_id="x" * 65),
    "log_id_no_control_chars": lambda e: _broken(e, log_id=str(e["log_id"])[:8] + "\x07"),
    "user_id_required": lambda e: _broken(e, user_id="  "),
    "event_time_iso8601_or_epoch_ms": lambda e: _broken(e, event_time="yesterday"),
    "event_time_not_before_2000": lambda e: _broken(e, event_time="1999-12-31T23:59:59Z"),
    "action_allowed": lambda e: _broken(e, action="rewind"),
    "watch_time_sec_0_to_86400": lambda e: _broken(e, watch_time_sec=-1),
    "watch_time_sec_is_number": lambda e: _broken(e, watch_time_sec="ten"),
    "ip_address_valid": lambda e: _broken(e, ip_address="300.1.1.1"),
}


@dataclass
class File:
    """One landing file: its bytes, its valid events in file order, and how many rows it rejects."""

    name: str
    valid: list[Event] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    invalid: int = 0

    @property
    def data(self) -> bytes:
        return b"".join(line + b"\n" for line in self.lines)

    def add(self, event: Event) -> None:
        self.valid.append(event)
        self.lines.append(orjson.dumps(event))

    def reject(self, line: bytes) -> None:
        self.invalid += 1
        self.lines.append(line)


def events(n: int, seed: int, day: int = 0) -> list[Event]:
    """``n`` valid events on day ``day`` after 2026-11-21."""
    return clean_events(n, seed=seed, start=START + dt.timedelta(days=day, hours=seed % 7))


def mixed_file(name: str, n: int, *, seed: int, invalid_rate: float = 0.1, repeats: int = 2) -> File:
    """``n`` valid events, about ``invalid_rate`` invalid rows and ``repeats`` in-file duplicates."""
    rng = random.Random(seed)
    made = File(name)
    pool = events(n, seed)
    kinds = sorted(INVALID)
    for i, event in enumerate(pool):
        made.add(event)
        if rng.random() < invalid_rate:
            made.reject(INVALID[kinds[i % len(kinds)]](events(1, seed * 1000 + i)[0]))
    for event in rng.sample(pool, min(repeats, len(pool))):
        made.add(dict(event))  # a redelivery: the same event again, later in the file
    return made
