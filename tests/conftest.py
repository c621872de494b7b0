"""Shared fixtures: a real Azurite for the whole session, on free ports."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.batches import RetryPolicy
from shared.dev import azurite
from shared.settings import Settings
from tests.support.durable import FakeDurable, serve_durable

REAL_WORLD = Path(__file__).resolve().parent.parent.parent / "shared" / "real-world"
#: The orchestrator's retry rules with waits a test can afford.
FAST_RETRY = RetryPolicy(first_seconds=0.01, attempts=3, coefficient=2.0, max_seconds=0.05)


@pytest.fixture(scope="session")
def azurite_connection(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Connection string of an Azurite started for this test session."""
    blob, queue, table = azurite.free_ports(3)
    ports = azurite.Ports(blob, queue, table)
    process = azurite.start(tmp_path_factory.mktemp("azurite"), ports)
    try:
        yield ports.connection_string()
    finally:
        azurite.stop(process)


def make_settings(
    connection: str, *, lake_uri: str, capture_uri: str, quarantine_uri: str, **extra: str
) -> Settings:
    env = {
        "AzureWebJobsStorage": connection,
        "LAKE_URI": lake_uri,
        "CAPTURE_URI": capture_uri,
        "QUARANTINE_URI": quarantine_uri,
        "BATCH_STATE_TABLE": "b" + uuid.uuid4().hex[:12],
        **extra,
    }
    return Settings.from_env(env)


@pytest.fixture
def local_settings(azurite_connection: str, tmp_path: Path) -> Settings:
    """Lake, landing and quarantine in local folders; batch state in Azurite."""
    return make_settings(
        azurite_connection,
        lake_uri=str(tmp_path / "lake"),
        capture_uri=str(tmp_path / "capture"),
        quarantine_uri=str(tmp_path / "quarantine"),
    )


@pytest.fixture
def azure_settings(azurite_connection: str) -> Settings:
    """Lake, landing and quarantine as az:// containers on Azurite (unique per test)."""
    suffix = uuid.uuid4().hex[:8]
    return make_settings(
        azurite_connection,
        lake_uri=f"az://lake{suffix}",
        capture_uri=f"az://capture{suffix}",
        quarantine_uri=f"az://quarantine{suffix}",
    )


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for the module, as the worker has: the SDK's aiohttp session is per loop."""
    from azure.durable_functions.models.utils import http_utils

    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.run_until_complete(http_utils._close_session())
    event_loop.close()


@pytest.fixture
def durable() -> Iterator[FakeDurable]:
    """The Durable extension's client RPC, served by the stand-in (tests/support/durable.py)."""
    with serve_durable() as fake:
        yield fake


@pytest.fixture(scope="session")
def real_world() -> Path:
    """The third-party samples beside the checkout; tests skip cleanly without them."""
    if not REAL_WORLD.is_dir():
        pytest.skip("../shared/real-world is not present")
    return REAL_WORLD
