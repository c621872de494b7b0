"""Properties of the decoder on mangled input (hypothesis): whatever is done to a valid
Capture file or to its bodies, decoding never fails but by quarantining the file, both
parsers agree, and every record the mangling did not touch lands with its values."""

from __future__ import annotations

import io
import json
from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from shared.contracts import USER_ACTIVITY
from shared.errors import QuarantinedFile
from shared.pipeline import decode
from tests import crafted as c

PARSERS = ("fast", "straightforward")
RECORDS = [c.record(i) for i in range(8)]
FIELDS = ("log_id", "user_id", "event_time", "action", "content_id", "watch_time_sec", "ip_address", "device")
CHECKS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _outcomes(data: bytes) -> pl.DataFrame | None:
    """The frame both parsers decode ``data`` to (they must agree, but for
    ``crafted.SCAN_ONLY``), or None if the fast parser quarantines it."""
    results: list[pl.DataFrame | None] = []
    scan_only = False
    for parser in PARSERS:
        try:
            chunks = decode.decode(io.BytesIO(data), c.NAME, USER_ACTIVITY, chunk_rows=3, parser=parser)
            frames = list(chunks)
            results.append(pl.concat(frames) if frames else None)
        except QuarantinedFile as exc:
            results.append(None)
            scan_only |= parser == "fast" and c.SCAN_ONLY in exc.reason
    fast, straightforward = results
    assert (fast is None) == (straightforward is None) or scan_only, (fast, straightforward)
    if fast is not None and straightforward is not None:
        assert_frame_equal(fast, straightforward)
    return fast


def _expected(i: int) -> dict[str, Any]:
    event = json.loads(c.event(i))
    return {name: None if event.get(name) is None else str(event[name]) for name in FIELDS}


Mutation = tuple[int, int, int]  # (position, operation, byte)
mutations = st.lists(
    st.tuples(st.integers(0, 10**6), st.integers(0, 3), st.integers(0, 255)), min_size=1, max_size=6
)


def _mangle(data: bytes, changes: list[Mutation]) -> bytes:
    out = bytearray(data)
    for position, operation, byte in changes:
        at = position % (len(out) + 1)
        if operation == 0 and at < len(out):
            out[at] ^= 1 << (byte % 8)
        elif operation == 1:
            out.insert(at, byte)
        elif operation == 2 and at < len(out):
            del out[at]
        elif at < len(out):
            out[at : at + 9] = c.long(byte * 0x0102030405060708 - 2**62)  # a varint that may lie
    return bytes(out)


@CHECKS
@given(target=st.integers(0, len(RECORDS) - 1), changes=mutations, split=st.integers(1, len(RECORDS) - 1))
def test_a_mangled_record_costs_at_most_itself(target: int, changes: list[Mutation], split: int) -> None:
    """One record's bytes mangled, the framing around it honest: either the file is
    quarantined, or every other record lands exactly as written."""
    records = [_mangle(r, changes) if i == target else r for i, r in enumerate(RECORDS)]
    frame = _outcomes(c.container([c.block(records[:split]), c.block(records[split:])]))
    if frame is None:
        return
    assert frame.get_column("_row").n_unique() == len(RECORDS)  # no record lost, none invented
    for i in range(len(RECORDS)):
        if i == target:
            continue
        (row,) = frame.filter(pl.col("_row") == i).select(FIELDS).iter_rows(named=True)
        assert row == _expected(i)


@CHECKS
@given(changes=mutations, codec=st.sampled_from(["null", "deflate"]))
def test_a_mangled_file_is_decoded_or_quarantined_never_worse(changes: list[Mutation], codec: str) -> None:
    """Anything at all mangled, framing and header included."""
    honest = c.container([c.block(RECORDS[:5], codec=codec), c.block(RECORDS[5:], codec=codec)], codec)  # type: ignore[arg-type]
    frame = _outcomes(_mangle(honest, changes))
    try:
        records = decode.probe(io.BytesIO(_mangle(honest, changes)), c.NAME).records
    except QuarantinedFile:
        assert frame is None  # what the probe refuses, decoding refuses
        return
    if frame is not None:
        assert frame.get_column("_row").n_unique() == records


# -- bodies ------------------------------------------------------------------------------------
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # any size: beyond 64 bits too
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
events = st.fixed_dictionaries(
    {}, optional={name: values for name in FIELDS} | {"extra": values, "more": values}
)


def _body(event: dict[str, Any], form: int) -> bytes:
    if form == 0:
        return json.dumps(event, ensure_ascii=False).encode()
    if form == 1:
        return json.dumps(event, indent=2).encode()
    return (json.dumps(event) + "\n" + json.dumps(event) + "\n").encode()  # NDJSON: two events


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@CHECKS
@given(batch=st.lists(st.tuples(events, st.integers(0, 2)), min_size=1, max_size=6))
def test_every_valid_event_keeps_its_values_exactly(batch: list[tuple[dict[str, Any], int]]) -> None:
    """Strings as they are, numbers as their digits (however many), the rest as its JSON,
    unknown fields in ``_rescued_data``; fast and straightforward alike."""
    bodies = [_body(event, form) for event, form in batch]
    frame = _outcomes(c.container([c.block([c.record(i, body=b) for i, b in enumerate(bodies)])]))
    assert frame is not None
    expected = [event for event, form in batch for _ in range(2 if form == 2 else 1)]
    assert frame.height == len(expected)
    for row, event in zip(frame.iter_rows(named=True), expected, strict=True):
        assert not row["_malformed"]
        for name in FIELDS:
            got, want = row[name], event.get(name)
            if isinstance(want, dict | list):
                assert json.loads(got) == want
            else:
                assert got == _text(want), name
        extras = {k: v for k, v in event.items() if k not in FIELDS}
        assert (json.loads(row["_rescued_data"]) if row["_rescued_data"] else {}) == extras


@CHECKS
@given(batch=st.lists(st.tuples(events, st.integers(0, 2)), min_size=1, max_size=4), changes=mutations)
def test_a_mangled_body_is_one_row_or_malformed_and_the_rest_land(
    batch: list[tuple[dict[str, Any], int]], changes: list[Mutation]
) -> None:
    bodies = [_body(event, form) for event, form in batch]
    bodies[0] = _mangle(bodies[0], changes)
    frame = _outcomes(c.container([c.block([c.record(i, body=b) for i, b in enumerate(bodies)])]))
    assert frame is not None  # a body never quarantines the file
    assert frame.get_column("_row").unique().to_list() == list(range(len(bodies)))
