"""Driving batches the way the orchestrator does, and landing the files tests make."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from shared import layers
from shared.adapters.lake import Table
from shared.adapters.storage import Storage
from shared.batches import LAYERS, BatchRef, BatchState, Layer
from shared.errors import TransientError
from shared.layers.context import Context
from shared.services.intake import register
from shared.settings import Settings
from shared.uris import join
from tests.reliability.inputs import File

ROOT = Path(__file__).resolve().parents[2]


def land(ctx: Context, file: File) -> BatchState:
    """Write the file under CAPTURE_URI and register its batch."""
    uri = join(ctx.settings.capture_uri, file.name)
    assert isinstance(ctx.files, Storage)
    ctx.files.write(uri, file.data)
    return register(ctx.settings, ctx.states, ctx.files.info(uri))


def stored(ctx: Context, ref: BatchRef) -> BatchState:
    batch = ctx.states.get(ref.dataset, ref.batch_id)
    assert batch is not None
    return batch


def run_layer(ctx: Context, layer: Layer, ref: BatchRef, attempts: int = 5) -> BatchState:
    """One layer with retries on transient errors (no waiting): what Durable's retry does."""
    for attempt in range(attempts):
        try:
            layers.run(ctx, layer, ref)
            break
        except TransientError:
            if attempt == attempts - 1:
                raise
    return stored(ctx, ref)


def run_all(ctx: Context, ref: BatchRef) -> BatchState:
    for layer in LAYERS:
        if run_layer(ctx, layer, ref).state.stops:
            break
    return stored(ctx, ref)


@contextmanager
def lands_after_open(
    monkeypatch: pytest.MonkeyPatch, table: str, nth: int, winner: Callable[[], object]
) -> Iterator[list[int]]:
    """Run ``winner`` right after the ``nth`` time anyone else opens ``table``.

    The opener keeps the snapshot it read *before* the winner landed: the interleaving a
    second process sees when the first commits between two of its looks at the table.
    Yields the running count of opens.
    """
    real = Table._open
    opens = [0]
    busy = [False]

    def opened(self: Table) -> object:
        dt = real(self)
        if not busy[0] and self.spec.name == table:
            opens[0] += 1
            if opens[0] == nth:
                busy[0] = True
                try:
                    winner()
                finally:
                    busy[0] = False
        return dt

    monkeypatch.setattr(Table, "_open", opened)
    yield opens


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that points ``python -m shared`` at these settings."""
    env = {
        **os.environ,
        "AzureWebJobsStorage": settings.host_storage.connection_string,
        "LAKE_URI": settings.lake_uri,
        "CAPTURE_URI": settings.capture_uri,
        "QUARANTINE_URI": settings.quarantine_uri,
        "BATCH_STATE_TABLE": settings.state_table,
        "OPERATIONS_TABLE": settings.operations_table,
        **extra,
    }
    env.pop("LAKE_STORAGE", None)
    return env


def cli(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """``python -m shared ARGS`` started in the background, output captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "shared", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
