"""Each expectation of the user-activity contract, on both sides of its boundary."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from shared.contracts import USER_ACTIVITY
from shared.pipeline.decode import parsed_schema
from shared.pipeline.validate import MALFORMED_BODY, validate

ENQUEUED = "2026-11-21T12:00:00"
GOOD: dict[str, Any] = {
    "log_id": "0f9c1c52-6a1e-4a53-9a33-5b7f5a3f4c11",
    "user_id": "u-1",
    "event_time": "2026-11-21T11:59:00Z",
    "action": "play",
    "content_id": "c-000001",
    "watch_time_sec": "12.5",
    "ip_address": "81.2.69.142",
    "device": "web",
}


def failures(**changes: Any) -> list[str]:
    """The expectations one row fails, after applying ``changes`` to a good row."""
    row = {**GOOD, **changes}
    schema = parsed_schema(USER_ACTIVITY)
    record: dict[str, Any] = {name: None for name in schema}
    record.update({k: row.get(k) for k in USER_ACTIVITY.field_names})
    record.update(_raw="{}", _malformed=False, _row=0, _sequence_number=0, _offset="0")
    frame = pl.DataFrame(
        [record],
        schema={k: v for k, v in schema.items() if k != "_enqueued_time"} | {"_enqueued_time": pl.String},
    ).with_columns(pl.col("_enqueued_time").fill_null(ENQUEUED).str.to_datetime("%Y-%m-%dT%H:%M:%S"))
    result = validate(frame.select(list(schema)), USER_ACTIVITY)
    if result.valid.height:
        return []
    return list(result.quarantined.get_column("failed_expectations")[0])


def test_good_row_passes() -> None:
    assert failures() == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"log_id": None}, ["log_id_required"]),
        ({"log_id": ""}, ["log_id_required"]),
        ({"log_id": "   "}, ["log_id_required"]),
        ({"log_id": "x" * 65}, ["log_id_max_64_chars"]),
        ({"log_id": "a\tb"}, ["log_id_no_control_chars"]),
        ({"log_id": "a\x7fb"}, ["log_id_no_control_chars"]),
        ({"user_id": None}, ["user_id_required"]),
        ({"user_id": ""}, ["user_id_required"]),
        ({"event_time": None}, ["event_time_required"]),
        ({"event_time": "yesterday"}, ["event_time_iso8601_or_epoch_ms"]),
        ({"event_time": "2026-11-21T11:59:00"}, ["event_time_iso8601_or_epoch_ms"]),
        ({"event_time": "1999-12-31T23:59:59.999Z"}, ["event_time_not_before_2000"]),
        ({"event_time": "2026-11-22T12:00:00.001Z"}, ["event_time_within_1_day_of_enqueued"]),
        ({"event_time": "2026-11-22T13:00:00.001+01:00"}, ["event_time_within_1_day_of_enqueued"]),
        ({"action": "rewind"}, ["action_allowed"]),
        ({"action": None}, ["action_allowed"]),
        ({"action": "Play"}, ["action_allowed"]),
        ({"content_id": None}, ["content_id_required"]),
        ({"watch_time_sec": None}, ["watch_time_sec_is_number"]),
        ({"watch_time_sec": "abc"}, ["watch_time_sec_is_number"]),
        ({"watch_time_sec": "-0.001"}, ["watch_time_sec_0_to_86400"]),
        ({"watch_time_sec": "86400.001"}, ["watch_time_sec_0_to_86400"]),
        ({"ip_address": "999.1.1.1"}, ["ip_address_valid"]),
        ({"ip_address": "1.2.3"}, ["ip_address_valid"]),
        ({"ip_address": "2001:db8::g"}, ["ip_address_valid"]),
        ({"ip_address": "1:2:3:4:5:6:7:8:9"}, ["ip_address_valid"]),
        ({"log_id": None, "action": "rewind"}, ["log_id_required", "action_allowed"]),
    ],
)
def test_violation_fails_exactly_its_expectations(changes: dict[str, Any], expected: list[str]) -> None:
    assert failures(**changes) == expected


@pytest.mark.parametrize(
    "changes",
    [
        {"log_id": "x" * 64},
        {"log_id": "a b-é"},
        {"event_time": "2000-01-01T00:00:00Z"},
        {"event_time": "2026-11-22T12:00:00Z"},  # exactly one day after enqueued
        {"event_time": "2026-11-22T13:00:00+01:00"},
        {"event_time": "2026-11-21T11:59:00.123456+05:30"},
        {"event_time": "1763726340000"},  # epoch ms
        {"watch_time_sec": "0"},
        {"watch_time_sec": "86400"},
        {"watch_time_sec": "1e3"},
        {"ip_address": None},
        {"ip_address": "0.0.0.0"},
        {"ip_address": "255.255.255.255"},
        {"ip_address": "::"},
        {"ip_address": "::1"},
        {"ip_address": "2001:db8::1"},
        {"ip_address": "2001:0db8:0000:0000:0000:ff00:0042:8329"},
        {"ip_address": "::ffff:192.0.2.128"},
        {"ip_address": "64:ff9b::192.0.2.33"},
        {"device": None},
        {"action": "complete"},
    ],
)
def test_value_on_the_valid_side_passes(changes: dict[str, Any]) -> None:
    assert failures(**changes) == []


def test_ip_regex_agrees_with_python_ipaddress() -> None:
    import ipaddress
    import random

    from shared.contracts.base import ip_address_regex

    rng = random.Random(3)
    candidates = ["1.2.3.4", "01.2.3.4", "1.2.3.04", "::", "1::", "::1:2:3:4:5:6:7", "1:2:3:4:5:6:7::"]
    for _ in range(300):
        addr = ipaddress.IPv6Address(rng.getrandbits(128))
        candidates += [str(addr), addr.exploded, str(ipaddress.IPv4Address(rng.getrandbits(32)))]
    pattern = pl.Series(candidates).str.contains(ip_address_regex())
    for text, matched in zip(candidates, pattern, strict=True):
        try:
            ipaddress.ip_address(text)
            valid = True
        except ValueError:
            valid = False
        assert matched == valid, text


def test_malformed_body_is_its_own_reason() -> None:
    schema = parsed_schema(USER_ACTIVITY)
    record: dict[str, Any] = {name: None for name in schema}
    record.update(_raw="{not json", _malformed=True, _row=0)
    frame = pl.DataFrame([record], schema=schema)
    result = validate(frame, USER_ACTIVITY)
    assert result.valid.height == 0
    assert result.quarantined.get_column("failed_expectations").to_list() == [[MALFORMED_BODY]]
    assert result.quarantined.get_column("raw_payload").to_list() == ["{not json"]
