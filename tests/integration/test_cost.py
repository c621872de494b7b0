"""What a batch cost, recorded in batch state: a real batch through the runner, read back from
the state table in Azurite, and shown by `python -m shared batches`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from azure.data.tables import TableClient, UpdateMode

from shared import costs
from shared.app import build
from shared.batches import LAYERS, State
from shared.dev.generator import generate_capture_file
from shared.settings import Settings
from tests.conftest import make_settings

pytestmark = pytest.mark.azurite
ROOT = Path(__file__).resolve().parents[2]
#: Not the default (2,048), so a step that ignored the setting would be caught.
MEMORY_MB = 4096


@pytest.fixture
def settings(azurite_connection: str, tmp_path: Path) -> Settings:
    return make_settings(
        azurite_connection,
        lake_uri=str(tmp_path / "lake"),
        capture_uri=str(tmp_path / "capture"),
        quarantine_uri=str(tmp_path / "quarantine"),
        INSTANCE_MEMORY_MB=str(MEMORY_MB),
    )


def land(settings: Settings) -> str:
    landed = generate_capture_file(events=500, seed=31, defect_rate=0.05)
    path = Path(settings.capture_uri, landed.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(landed.data)
    return str(path)


def stored(connection: str, settings: Settings, batch_id: str) -> dict[str, object]:
    """The batch's entity as the state table holds it, read past the adapter."""
    with TableClient.from_connection_string(connection, settings.state_table) as table:
        (entity,) = table.query_entities("RowKey eq @id", parameters={"id": batch_id})
        return dict(entity)


def test_each_step_records_its_duration_times_the_instance_memory_and_a_rerun_changes_none(
    settings: Settings, azurite_connection: str
) -> None:
    app = build(settings)
    source = land(settings)
    first = app.runner.run(app.storage.info(source)).batch
    assert first is not None and first.state is State.GOLD_DONE

    entity = stored(azurite_connection, settings, first.batch_id)
    durations = json.loads(str(entity["durations"]))
    recorded = json.loads(str(entity["gb_seconds"]))
    assert set(recorded) == set(durations) == {layer.label for layer in LAYERS}
    for label, seconds in durations.items():
        assert recorded[label] == pytest.approx(seconds * MEMORY_MB / 1024, abs=1e-6), label
    assert app.states.get(first.dataset, first.batch_id).gb_seconds == recorded  # type: ignore[union-attr]

    # The cost is what the recorded GB-seconds and four executions come to at the listed rates.
    cost = costs.batch_cost(first)
    assert cost.databricks_usd == 0
    assert cost.functions_usd == pytest.approx(
        sum(recorded.values()) * costs.FLEX_USD_PER_GB_SECOND
        + 4 * costs.FLEX_USD_PER_MILLION_EXECUTIONS / 1e6
    )

    again = build(settings).runner.run(app.storage.info(source)).batch
    assert again is not None and again.state is State.GOLD_DONE
    after = stored(azurite_connection, settings, first.batch_id)
    assert json.loads(str(after["gb_seconds"])) == recorded
    assert json.loads(str(after["durations"])) == durations


def test_a_record_written_before_costs_were_recorded_still_loads(
    settings: Settings, azurite_connection: str
) -> None:
    app = build(settings)
    batch = app.runner.run(app.storage.info(land(settings))).batch
    assert batch is not None
    entity = stored(azurite_connection, settings, batch.batch_id)
    for name in ("gb_seconds", "spark_usage"):
        del entity[name]
    with TableClient.from_connection_string(azurite_connection, settings.state_table) as table:
        table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    old = app.states.get(batch.dataset, batch.batch_id)
    assert old is not None and old.state is State.GOLD_DONE
    assert (dict(old.gb_seconds), dict(old.spark_usage)) == ({}, {})
    assert old.durations == batch.durations
    assert costs.batch_cost(old).total_usd == 0


def test_batches_shows_each_batchs_gb_seconds_and_cost(settings: Settings, azurite_connection: str) -> None:
    app = build(settings)
    batch = app.runner.run(app.storage.info(land(settings))).batch
    assert batch is not None
    env = {
        **os.environ,
        "AzureWebJobsStorage": azurite_connection,
        "LAKE_URI": settings.lake_uri,
        "BATCH_STATE_TABLE": settings.state_table,
    }

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "shared", "batches", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout

    (record,) = json.loads(cli("--json"))
    assert record["gb_seconds"] == pytest.approx(dict(batch.gb_seconds))
    assert record["cost_usd"] == pytest.approx(costs.batch_cost(batch).total_usd)
    text = cli()
    assert "gb_s" in text and "usd" in text
    assert f"{costs.batch_cost(batch).total_usd:.6f}" in text
    assert f"{sum(batch.gb_seconds.values()):.2f} GB-s" in text
