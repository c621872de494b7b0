"""The fast body parser gives exactly the straightforward path's frames, body form by body form."""

from __future__ import annotations

import datetime as dt
import io
import random
from collections.abc import Iterator

import orjson
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from shared.contracts import USER_ACTIVITY
from shared.dev import generator
from shared.pipeline import decode, fastparse

CLEAN = {
    "log_id": "7f1c2a9e-0b4d-4c1e-9a55-2f0e6c1d8b3a",
    "user_id": "u-0001",
    "event_time": "2026-11-21T11:59:58.123Z",
    "action": "play",
    "content_id": "c-42",
    "watch_time_sec": 146.85,
    "ip_address": "81.2.69.142",
    "device": "ios",
}
ENQUEUED = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)

# Bodies that stress every branch: each is also surrounded by many plain bodies, so the
# vectorised shapes and the builder fallback both run in the same chunk.
ODD_BODIES: list[bytes | None] = [
    orjson.dumps(CLEAN, option=orjson.OPT_INDENT_2),
    b"  \r\n\t" + orjson.dumps(CLEAN) + b"\n\n ",
    b'{ "log_id" : "a" ,\r\n "user_id":"b"}',
    orjson.dumps(dict(reversed(list(CLEAN.items())))),
    orjson.dumps({k: v for k, v in CLEAN.items() if k != "device"}),
    b"{}",
    b'{"log_id":null,"user_id":true,"event_time":false,"watch_time_sec":null}',
    b'{"log_id":"n1","watch_time_sec":1E3}',
    b'{"log_id":"n2","watch_time_sec":1e-7}',
    b'{"log_id":"n3","watch_time_sec":-0}',
    b'{"log_id":"n4","watch_time_sec":-0.0}',
    b'{"log_id":"n5","watch_time_sec":146.850}',
    b'{"log_id":"n6","watch_time_sec":1.5e300}',
    b'{"log_id":"n7","watch_time_sec":1e400}',
    b'{"log_id":"n8","watch_time_sec":18446744073709551615}',
    b'{"log_id":"n9","watch_time_sec":123456789012345678901234567890}',
    b'{"log_id":"n10","watch_time_sec":0.1,"device":12}',
    b'{"log_id":"n11","watch_time_sec":01}',
    b'{"log_id":"n12","watch_time_sec":1.5x}',
    b'{"log_id":"n13","watch_time_sec":NaN}',
    b'{"log_id":"n14","watch_time_sec":Infinity}',
    b'{"log_id":"e1","user_id":"caf\\u00e9 \\"q\\" \\\\ \\/ \\n"}',
    '{"log_id":"e2","user_id":"café 🎬","device":"\x7f"}'.encode(),
    b'{"log_id":"e3","user_id":"a\x01b"}',
    b'{"log_id":"e4","user_id":"x\\u0000y"}',
    b'{"log_id":"e5","user_id":"{\\"log_id\\":\\"fake\\",","device":"a,\\"b\\":c"}',
    b'{"log_id":"e6","user_id":"has, comma: and { brace }"}',
    b'{"log_id":"x1","extra":1}',
    b'{"log_id":"x2","extra":{"n":[1,2,{"z":null}]},"more":"m"}',
    b'{"log_id":"x3","user_id":{"nested":true}}',
    b'{"log_id":"x4","user_id":[1,"two"]}',
    b'{"log_id":"d1","log_id":"d2"}',
    b'{"log_id":"d3","extra":1,"extra":2}',
    b'{"log_id":"d4","user_id":"a","user_id":null}',
    b'{"log\\u005fid":"k1"}',
    b'{"log_id":"t1",}',
    orjson.dumps([CLEAN, {**CLEAN, "log_id": "arr-2", "extra": True}]),
    b"[]",
    b"[1,2]",
    b"[[{}]]",
    orjson.dumps(CLEAN) + b"\n" + orjson.dumps({**CLEAN, "log_id": "nd-2"}),
    orjson.dumps(CLEAN) + b"\r\n\r\n" + orjson.dumps({**CLEAN, "log_id": "nd-3"}) + b"\n",
    orjson.dumps(CLEAN) + b"\nnot json",
    orjson.dumps(CLEAN) + b"\n42",
    orjson.dumps(CLEAN) + b" " + orjson.dumps(CLEAN),
    orjson.dumps(CLEAN)[:-7],
    b"42",
    b'"play"',
    b"null",
    b"3.5",
    b"true",
    b"",
    b"   ",
    None,
    b'{"log_id":"u1","user_id":"\xff\xfe"}',
    b'{"log_\xc3\x28id":"u2"}',
    b"\xef\xbb\xbf" + orjson.dumps(CLEAN),
    b'{"log_id":"' + b"z" * 5000 + b'"}',
]


def _capture(bodies: list[bytes | None], *, codec: generator.Codec = "deflate") -> bytes:
    records = [
        generator.capture_record(
            body,
            sequence_number=1000 + i,
            offset=96 * i,
            enqueued=ENQUEUED + dt.timedelta(milliseconds=37 * i),
            partition_key=f"u-{i % 7}",
        )
        for i, body in enumerate(bodies)
    ]
    return generator.write_capture(records, codec=codec, sync_interval=4_000)


def _interleaved() -> list[bytes | None]:
    """Odd bodies spread among plain ones, so every chunk mixes both paths."""
    bodies: list[bytes | None] = []
    for i, odd in enumerate(ODD_BODIES):
        for j in range(5):
            bodies.append(
                orjson.dumps({**CLEAN, "log_id": f"plain-{i}-{j}", "watch_time_sec": i * 10 + j / 4})
            )
        bodies.append(odd)
    return bodies


def _frames(data: bytes, name: str, parser: decode.Parser, chunk_rows: int) -> Iterator[pl.DataFrame]:
    return decode.decode(io.BytesIO(data), name, USER_ACTIVITY, chunk_rows=chunk_rows, parser=parser)


def _assert_same(data: bytes, name: str, *, chunk_rows: int = 100_000) -> pl.DataFrame:
    slow = list(_frames(data, name, "straightforward", chunk_rows))
    fast = list(_frames(data, name, "fast", chunk_rows))
    assert [f.height for f in fast] == [f.height for f in slow]
    for a, b in zip(slow, fast, strict=True):
        assert_frame_equal(a, b)
    return decode.concat(fast)


CAPTURE_NAME = "ns/hub/3/2026/11/21/12/00/00.avro"


@pytest.mark.parametrize("codec", ["deflate", "null"])
def test_every_odd_body_parses_as_the_straightforward_path_does(codec: generator.Codec) -> None:
    frame = _assert_same(_capture(_interleaved(), codec=codec), CAPTURE_NAME, chunk_rows=50)
    assert frame.get_column("_malformed").any()
    assert frame.get_column("_rescued_data").is_not_null().any()


def test_a_chunk_of_odd_bodies_only_falls_back_entirely() -> None:
    _assert_same(_capture(ODD_BODIES), CAPTURE_NAME)


def test_generated_day_with_every_defect_kind_decodes_identically() -> None:
    day = list(generator.generate_day(files=5, events_per_file=1_500, defect_rate=0.2, seed=7, partitions=2))
    for made in day:
        if made.kind == "truncated":
            continue
        _assert_same(made.data, made.path, chunk_rows=400)


def test_classic_properties_schema_and_plain_large_file_decode_identically() -> None:
    made = generator.generate_capture_file(events=6_000, seed=3, codec="null", collect_log_ids=False)
    frame = _assert_same(made.data, made.path, chunk_rows=2_500)
    assert frame.height == 6_000
    records = [
        generator.capture_record(
            b, sequence_number=i, offset=i, enqueued=ENQUEUED, properties={"p": None if i % 2 else 1}
        )
        for i, b in enumerate(_interleaved()[:60])
    ]
    _assert_same(generator.write_capture(records, properties_variant="nullable"), CAPTURE_NAME)
    classic = [{**r, "Properties": {"p": 1}} for r in records]
    _assert_same(generator.write_capture(classic, properties_variant="classic"), CAPTURE_NAME)


def test_ndjson_lines_parse_identically() -> None:
    lines = [b for b in _interleaved() if b is not None and b"\n" not in b and b"\r" not in b and b.strip()]
    data = b"\n".join(lines) + b"\n\n   \n" + orjson.dumps(CLEAN) + b"\r\n"
    _assert_same(data, "landing/day.ndjson", chunk_rows=40)


def test_plain_bodies_never_reach_the_builder(monkeypatch: pytest.MonkeyPatch) -> None:
    bodies = [orjson.dumps({**CLEAN, "log_id": f"id-{i}"}) for i in range(200)]
    called: list[int] = []
    real = fastparse.parse_chunk

    def spy(*args: object, **kwargs: object) -> pl.DataFrame:
        fallback = args[4]

        def counting(positions: list[int]) -> pl.DataFrame:
            called.extend(positions)
            return fallback(positions)  # type: ignore[operator, no-any-return]

        return real(*args[:4], counting)  # type: ignore[arg-type]

    monkeypatch.setattr(fastparse, "parse_chunk", spy)
    frame = decode.concat(_frames(_capture(bodies), CAPTURE_NAME, "fast", 100_000))
    assert frame.height == 200
    assert called == []


NUMBER_TOKENS = (
    *("146.85", "146.850", "1E3", "-0", "-0.0", "1e-7", "0.00001", "120", "1.5e300", "1e400"),
    *("123456789012345678901234567890", "-9223372036854775809", "18446744073709551616"),
)


@pytest.mark.parametrize("token", NUMBER_TOKENS)
def test_a_number_keeps_its_exact_text_on_both_paths(token: str) -> None:
    plain = f'{{"log_id":"n","device":{token},"watch_time_sec":{token}}}'.encode()
    rescued = f'{{"log_id":"r","device":"d","extra":{token}}}'.encode()  # an unknown field: the builder
    frame = _assert_same(_capture([plain, rescued]), CAPTURE_NAME)
    assert frame.get_column("device").to_list() == [token, "d"]
    assert frame.get_column("watch_time_sec").to_list() == [token, None]
    assert frame.get_column("_rescued_data").to_list() == [None, f'{{"extra":{token}}}']


def test_randomly_mangled_bodies_parse_identically() -> None:
    rng = random.Random(11)
    alphabet = b'{}[]",:\\ \t\r\n0123456789.eE+-truefalsn\x00\x1f\x7f\xc3\xa9\xff' + b"log_id"
    bodies: list[bytes | None] = []
    for i in range(3_000):
        body = bytearray(orjson.dumps({**CLEAN, "log_id": f"m-{i}", "watch_time_sec": rng.random() * 100}))
        for _ in range(rng.randrange(0, 3)):
            at = rng.randrange(len(body))
            match rng.randrange(3):
                case 0:
                    body.insert(at, rng.choice(alphabet))
                case 1:
                    del body[at]
                case _:
                    body[at] = rng.choice(alphabet)
        bodies.append(bytes(body))
    _assert_same(_capture(bodies), CAPTURE_NAME, chunk_rows=700)
