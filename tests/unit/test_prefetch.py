"""The producer thread behind bronze and silver streams."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from shared.pipeline.prefetch import prefetch


def test_items_arrive_in_order() -> None:
    assert list(prefetch(iter(range(100)), depth=2)) == list(range(100))


def test_a_producer_error_is_raised_where_it_happened() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("avro: truncated in block 3")

    seen = []
    with pytest.raises(ValueError, match="truncated in block 3"):
        for item in prefetch(items()):
            seen.append(item)
    assert seen == [1, 2]


def test_closing_early_stops_the_producer() -> None:
    produced = []

    def items() -> Iterator[int]:
        for i in range(10_000):
            produced.append(i)
            yield i

    stream = prefetch(items(), depth=1)
    assert next(stream) == 0
    stream.close()
    assert len(produced) < 10
    assert not [t for t in threading.enumerate() if t.name == "prefetch" and t.is_alive()]
