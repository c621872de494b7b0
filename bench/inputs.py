"""Benchmark inputs, generated reproducibly into ``bench/data/`` and reused while unchanged.

Every input is a function of its name: the generator is deterministic for a seed, so a
cached file is regenerated only when it is missing. Sizes given in MB are reached by
calibrating events per byte on a small sample of the same shape.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from shared.dev import generator

DATA = Path(__file__).resolve().parent / "data"
#: Real Capture bodies carry every oddity; 1% of records in benchmark files carry one.
DEFECT_RATE = 0.01
SEED = 20261121


@dataclass(frozen=True, slots=True)
class Input:
    """One generated Capture file."""

    name: str
    events: int
    seed: int = SEED
    defect_rate: float = DEFECT_RATE

    @property
    def path(self) -> Path:
        return DATA / f"{self.name}.avro"


def by_events(name: str, events: int) -> Input:
    return Input(name, events)


def by_size(name: str, megabytes: float) -> Input:
    """An input of about ``megabytes`` MB (10^6 bytes)."""
    return Input(name, max(1000, math.ceil(megabytes * 1e6 / bytes_per_event())))


def bytes_per_event() -> float:
    meta = DATA / "calibration.json"
    if meta.exists():
        return float(json.loads(meta.read_text())["bytes_per_event"])
    sample = generator.generate_capture_file(
        events=50_000, seed=SEED, defect_rate=DEFECT_RATE, collect_log_ids=False
    )
    value = len(sample.data) / 50_000
    DATA.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({"bytes_per_event": value}))
    return value


def ensure(spec: Input) -> Path:
    """The input's file, generated on first use."""
    path = spec.path
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists() and json.loads(meta.read_text()) == asdict(spec):
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    made = generator.generate_capture_file(
        events=spec.events, seed=spec.seed, defect_rate=spec.defect_rate, collect_log_ids=False
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(made.data)
    tmp.replace(path)
    meta.write_text(json.dumps(asdict(spec)))
    return path


def ensure_series(name: str, files: int, events_per_file: int, *, seed: int = SEED) -> list[Path]:
    """``files`` Capture windows of one day on one partition, in time order (for MERGE growth).

    Each file is a 5-minute window, so all of them land in the same silver date
    partition: the case date pruning alone cannot keep flat.
    """
    folder = DATA / f"{name}-{files}x{events_per_file}-s{seed}"
    done = folder / "done"
    paths = [folder / f"{i:04d}.avro" for i in range(files)]
    if done.exists():
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    day = generator.generate_day(
        files=files,
        events_per_file=events_per_file,
        seed=seed,
        partitions=1,
        day=dt.date(2026, 11, 21),
    )
    for path, made in zip(paths, day, strict=True):
        path.write_bytes(made.data)
    done.write_text("ok")
    return paths
