"""The loops built ahead of time answer exactly as numba's, are found only for their own
source, and refuse arguments they were not built for."""

from __future__ import annotations

import importlib.util
import io
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from shared.contracts import USER_ACTIVITY
from shared.dev import generator
from shared.pipeline import aot, decode, geo, kernels


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The ahead-of-time module: ``make kernels``' build when current, else one built here."""
    path = aot.built()
    if path is None:
        if shutil.which("cc") is None and shutil.which("gcc") is None:
            pytest.skip("no C compiler to build the loops ahead of time")
        path = aot.build(tmp_path_factory.mktemp("loops"))
    spec = importlib.util.spec_from_file_location(kernels.module_name(), path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def use(monkeypatch: pytest.MonkeyPatch, built: ModuleType) -> Iterator[Callable[[bool], None]]:
    """Switch ``kernels`` between the built loops (True) and numba's (False)."""

    def switch(ahead: bool) -> None:
        table = kernels.built_loops(built) if ahead else kernels.numba_loops()
        monkeypatch.setattr(kernels, "_loaded", lambda: (ahead, table))

    yield switch


def _decoded(data: bytes, name: str) -> pl.DataFrame:
    return pl.concat(decode.decode(io.BytesIO(data), name, USER_ACTIVITY, chunk_rows=700, parser="fast"))


def _outcome(made: generator.GeneratedFile) -> pl.DataFrame | str:
    try:
        return _decoded(made.data, made.path)
    except Exception as exc:  # a truncated file fails, and must fail the same way
        return f"{type(exc).__name__}: {exc}"


def test_built_loops_decode_every_defect_kind_as_numba_does(use: Callable[[bool], None]) -> None:
    day = generator.generate_day(files=4, events_per_file=2_000, defect_rate=0.2, seed=11)
    kinds = set()
    for made in day:
        kinds.add(made.kind)
        use(True)
        ahead = _outcome(made)
        use(False)
        numba = _outcome(made)
        if isinstance(ahead, str) or isinstance(numba, str):
            assert ahead == numba
        else:
            assert_frame_equal(ahead, numba)
    assert "capture" in kinds


def test_built_loops_place_addresses_as_numba_does(use: Callable[[bool], None]) -> None:
    events = generator.clean_events(3_000, seed=3)
    ips = [e.get("ip_address") for e in events] + ["1::", "::ffff:1.2.3.4", "010.1.1.1", "nope", "", None]
    frame = pl.DataFrame({"ip_address": ips}, schema={"ip_address": pl.String})
    use(True)
    ahead = geo.enrich(frame)
    use(False)
    assert_frame_equal(ahead, geo.enrich(frame))
    assert ahead.get_column("country").n_unique() > 5


def test_a_wrong_argument_is_refused_before_the_built_code(built: ModuleType) -> None:
    slots = kernels._checked("address_slots", built.address_slots)
    data, offsets, valid = np.frombuffer(b"1.2.3.4", np.uint8), np.array([0, 7]), np.ones(1, np.bool_)
    v4, v6 = np.array([[0], [2**32 - 1]]), np.zeros((4, 1), np.int64)
    slot, out = np.full(1, 7, np.int32), np.empty(1, np.int32)
    slots(data, offsets, valid, v4, slot, v6, slot, out)
    assert out[0] == 7
    with pytest.raises(TypeError, match="argument 1: wants a C-contiguous int64"):
        slots(data, offsets.astype(np.int32), valid, v4, slot, v6, slot, out)
    with pytest.raises(TypeError, match="argument 3"):
        slots(data, offsets, valid, np.zeros((2, 4), np.int64)[:, ::2], slot, v6, slot, out)
    with pytest.raises(TypeError, match="argument 7"):
        slots(data, offsets, valid, v4, slot, v6, slot, np.frombuffer(bytes(4), np.int32))
    with pytest.raises(TypeError, match="takes 8 arguments"):
        slots(data, offsets)


def test_the_build_is_named_for_its_source_and_signatures(monkeypatch: pytest.MonkeyPatch) -> None:
    name = kernels.module_name()
    assert name == kernels.module_name()
    changed: dict[str, Any] = {**kernels.SIGNATURES, "gather": ("void", (("uint8", 1),))}
    monkeypatch.setattr(kernels, "SIGNATURES", changed)
    assert kernels.module_name() != name


def test_without_a_current_build_numba_compiles_the_loops(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(kernels, "module_name", lambda: "_loops_from_another_source")
    kernels._loaded.cache_clear()
    try:
        assert not kernels.ahead_of_time()
        assert aot.built(tmp_path) is None
        made = generator.generate_capture_file(events=500, seed=2)
        assert _decoded(made.data, made.path).height == 500
    finally:
        kernels._loaded.cache_clear()


def test_the_built_loops_release_the_gil(built: ModuleType) -> None:
    """Bronze decodes in one thread while another validates and writes: a built loop must
    let other threads run, as numba's ``nogil=True`` does."""
    nets = geo._networks()
    text = b"2a02:1216::5"
    n = 2_000_000
    data = np.frombuffer(text * n, np.uint8)
    offsets = np.arange(n + 1, dtype=np.int64) * len(text)
    args = (
        data,
        offsets,
        np.ones(n, np.bool_),
        nets.v4,
        nets.v4_slot,
        nets.v6,
        nets.v6_slot,
        np.empty(n, np.int32),
    )
    address_slots = kernels.built_loops(built)["address_slots"]
    ticks, stop = [0], threading.Event()

    def spin() -> None:
        while not stop.is_set():
            ticks[0] += 1

    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        time.sleep(0.05)
        start, at = ticks[0], time.perf_counter()
        time.sleep(0.1)
        free = (ticks[0] - start) / (time.perf_counter() - at)  # ticks a second, nothing else running
        start, at = ticks[0], time.perf_counter()
        address_slots(*args)
        during = (ticks[0] - start) / (time.perf_counter() - at)
    finally:
        stop.set()
        spinner.join()
        sys.setswitchinterval(switch)
    assert during > 0.2 * free, (during, free)
