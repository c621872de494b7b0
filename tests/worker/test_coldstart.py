"""Cold start: loading the app in a fresh worker imports none of the data stack.

Every instance loads every function. Event Grid intake, the orchestrator and the HTTP
endpoints must not pay for polars, deltalake, pyarrow or numpy; the activities and the
timer import them when they run.
"""

from __future__ import annotations

from bench.coldstart import measure_once
from tests.worker.test_load import ALL_FUNCTIONS

DATA_STACK = {"polars", "deltalake", "pyarrow", "numpy"}


def test_loading_the_app_in_the_worker_imports_no_data_stack() -> None:
    cold = measure_once()
    assert cold["functions"] == len(ALL_FUNCTIONS)
    assert DATA_STACK.isdisjoint(cold["heavy_modules"]), cold
