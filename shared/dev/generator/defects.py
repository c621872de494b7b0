"""The record-level defects the pipeline must survive, and how a record comes to carry one."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

import orjson

from shared.dev.generator.sessions import Event, _EventSource
from shared.dev.generator.timestamps import _iso_offset, _iso_z
from shared.dev.generator.world import _User

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


def _sent_key(user: _User) -> str | None:
    """The partition key a user's client sends: most key by user id, some send none."""
    return user.partition_key


def _odd_record(
    kind: str,
    source: _EventSource,
    defects: _Defects,
    enqueued_ms: int,
    rng: random.Random,
    key_of: Callable[[_User], str | None] = _sent_key,
) -> tuple[bytes, str | None, list[str]]:
    """Body, partition key and valid log_ids of a record carrying a defect ``kind``.

    ``key_of`` gives the key a user's records are sent with; a re-sent duplicate keeps the
    key it was remembered with.
    """
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
        return body, key_of(batch[0][1]), [event["log_id"] for event in events]
    event, user = source.next_event(enqueued_ms)
    event_id: str = event["log_id"]
    body = _defective_body(kind, event, enqueued_ms, rng)
    return body, key_of(user), [event_id] if kind in VALID_KINDS else []
