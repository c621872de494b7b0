"""One worker with the app loaded, for the whole session, pointed at Azurite and the Durable stand-in."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from shared.app import App, build
from shared.settings import PROCESS_ENVIRONMENT, Settings
from tests.support.durable import FakeDurable, serve_durable
from tests.worker.harness import Worker, pb


@pytest.fixture(scope="session")
def worker_env(azurite_connection: str) -> dict[str, str | None]:
    """The app settings the worker process runs with: Azurite, containers of its own."""
    suffix = uuid.uuid4().hex[:8]
    return {
        **PROCESS_ENVIRONMENT,
        "AzureWebJobsStorage": azurite_connection,
        "LAKE_STORAGE": None,
        "LAKE_URI": f"az://wlake{suffix}",
        "CAPTURE_URI": f"az://wcapture{suffix}",
        "QUARANTINE_URI": f"az://wquarantine{suffix}",
        "BATCH_STATE_TABLE": f"wbatches{suffix}",
        "OPERATIONS_TABLE": f"wops{suffix}",
        "MAINTENANCE_SCHEDULE": "0 30 2 * * *",
    }


@pytest.fixture(scope="session")
def worker_settings(worker_env: dict[str, str | None]) -> Settings:
    """The same settings, read the way the app reads them."""
    return Settings.from_env({k: v for k, v in worker_env.items() if v is not None})


@pytest.fixture(scope="session")
def ops(worker_settings: Settings) -> App:
    """This process's view of the worker's batch state and storage (to land files, read state)."""
    return build(worker_settings)


@pytest.fixture(scope="session")
def durable() -> Iterator[FakeDurable]:
    with serve_durable() as fake:
        yield fake


@pytest.fixture(scope="session")
def app_worker(worker_env: dict[str, str | None]) -> Iterator[Worker]:
    """The real worker library with function_app loaded (init, metadata, every load)."""
    worker = Worker(env=worker_env).start().load()
    try:
        assert worker.init_response.result.status == pb.StatusResult.Success, worker.init_response.result
        yield worker
    finally:
        worker.close()
