"""Fixtures of the reliability suite: an Azurite it may stop, lakes on it or on disk, fast contexts.

The long cases are marked ``slow`` and run only under ``make reliability``
(``TRIBUTARY_LONG=1``); ``make test`` runs the fast regression tests for every bug found.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.adapters.lake import Lake
from shared.adapters.storage import Storage
from shared.app import App, build
from shared.layers.context import Context
from shared.settings import AZURITE_CONNECTION, Settings
from tests.conftest import make_settings
from tests.reliability.emulator import Emulator
from tests.support.fakes import MemoryStates

HERE = Path(__file__).resolve().parent
LONG = os.environ.get("TRIBUTARY_LONG") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if LONG:
        return
    skip = pytest.mark.skip(reason="a long case: `make reliability` runs it")
    for item in items:
        if item.path.is_relative_to(HERE) and "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """Azurite for one module, on ports of its own; a test may stop it (it is up again after)."""
    azurite = Emulator(tmp_path_factory.mktemp("azurite-faults"))
    azurite.start()
    try:
        yield azurite
    finally:
        azurite.close()


@pytest.fixture
def up(emulator: Emulator) -> Iterator[Emulator]:
    """The module's Azurite, running at the start and at the end of the test."""
    emulator.settle()
    yield emulator
    emulator.settle()


def settings_on(connection: str, tmp_path: Path, *, remote: bool = True, **extra: str) -> Settings:
    """Settings with their own lake, landing and quarantine: containers on Azurite, or folders."""
    suffix = uuid.uuid4().hex[:8]
    if remote:
        where = {
            "lake_uri": f"az://lake{suffix}",
            "capture_uri": f"az://capture{suffix}",
            "quarantine_uri": f"az://quarantine{suffix}",
        }
    else:
        where = {
            k: str(tmp_path / suffix / k.split("_")[0]) for k in ("lake_uri", "capture_uri", "quarantine_uri")
        }
    return make_settings(connection, **where, OPERATIONS_TABLE="o" + suffix, **extra)


def app_on(emulator: Emulator, tmp_path: Path, *, remote: bool = True, **extra: str) -> App:
    return build(settings_on(emulator.connection_string, tmp_path, remote=remote, **extra))


@pytest.fixture
def memory_ctx(tmp_path: Path) -> Context:
    """No emulator: a local lake, local files, batch state in memory (``MemoryStates``)."""
    settings = Settings.from_env(
        {
            "AzureWebJobsStorage": AZURITE_CONNECTION,
            "LAKE_URI": str(tmp_path / "lake"),
            "CAPTURE_URI": str(tmp_path / "capture"),
            "QUARANTINE_URI": str(tmp_path / "quarantine"),
        }
    )
    return Context(settings, Storage(settings.lake_storage), MemoryStates(), Lake(settings.lake_uri))
