"""A large file through the Databricks route as the runner (and the orchestrator) takes it.

The runner submits the batch's Spark run to the local Jobs API stand-in, which runs the
real job with local PySpark; the layers' steps then record the run from its commits. The
lake, the file and batch state are the real thing (local folders and Azurite).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from shared import costs
from shared.adapters.databricks import DatabricksJobs
from shared.app import App, build
from shared.batches import Route, State
from shared.contracts import USER_ACTIVITY
from shared.dev.generator import generate_capture_file
from shared.dev.jobs_api import JobsApi
from shared.pipeline import schemas
from shared.services.runner import Runner
from shared.settings import Settings
from tests.conftest import FAST_RETRY, make_settings

pytestmark = [pytest.mark.spark, pytest.mark.azurite, pytest.mark.slow]
TOKEN = "dapi-route-test"


@pytest.fixture
def jobs_api(tmp_path: Path) -> Iterator[JobsApi]:
    server = JobsApi(token=TOKEN, start_seconds=0.1, logs=tmp_path / "jobs").start()
    yield server
    server.stop()


def land(settings: Settings, events: int, seed: int) -> str:
    landed = generate_capture_file(events=events, seed=seed, defect_rate=0.05)
    path = Path(settings.capture_uri, landed.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(landed.data)
    return str(path)


def routed(settings: Settings, api: JobsApi | None) -> App:
    """The app with every file over 1 byte sent to Databricks (the stand-in, if given)."""
    databricks = settings.databricks
    if api is not None:
        databricks = replace(databricks, host=api.url, token=TOKEN, poll_seconds=1)
    return build(replace(settings, large_file_bytes=1, databricks=databricks))


def business(app: App, name: str) -> pl.DataFrame:
    frame = app.context.tables(USER_ACTIVITY.dataset).by_short_name()[name].snapshot().scan().collect()
    columns = (
        schemas.business_columns(USER_ACTIVITY)
        if name == "silver"
        else [c for c in frame.columns if not c.startswith("_")]
    )
    return frame.select(columns).sort(columns)


def test_a_large_file_lands_on_databricks_as_it_would_in_the_function(
    jobs_api: JobsApi, azurite_connection: str, tmp_path: Path
) -> None:
    def settings_for(lake: str) -> Settings:
        return make_settings(
            azurite_connection,
            lake_uri=str(tmp_path / lake),
            capture_uri=str(tmp_path / "capture"),
            quarantine_uri=str(tmp_path / "q"),
        )

    spark_settings = settings_for("spark-lake")
    source = land(spark_settings, events=2_000, seed=21)
    spark = routed(spark_settings, jobs_api)
    ran = Runner(spark.context, retry=FAST_RETRY, databricks=spark.databricks).run(spark.storage.info(source))
    batch = ran.batch
    assert batch is not None and batch.state is State.GOLD_DONE, (
        ran.error,
        jobs_api.run_log(455_644_833)[-2000:],
    )
    assert batch.route is Route.DATABRICKS
    assert not batch.counts.unbalanced() and batch.counts.rows_in
    assert set(batch.runs) == {"bronze", "silver", "gold"} and len(set(batch.runs.values())) == 1
    assert all(v is not None for v in batch.versions.values())

    polars = build(settings_for("polars-lake"))
    done = Runner(polars.context, retry=FAST_RETRY).run(polars.storage.info(source)).batch
    assert done is not None and done.state is State.GOLD_DONE
    assert done.counts.to_dict() | {"records": None} == batch.counts.to_dict() | {"records": None}
    for name in ("silver", *(f"gold.{t.name}" for t in USER_ACTIVITY.gold)):
        assert_frame_equal(business(spark, name), business(polars, name), check_exact=False, rel_tol=1e-9)


def test_without_a_workspace_the_batch_fails_saying_what_to_set_and_replays_once_set(
    jobs_api: JobsApi, local_settings: Settings
) -> None:
    source = land(local_settings, events=200, seed=22)
    unset = routed(local_settings, None)
    ran = Runner(unset.context, retry=FAST_RETRY, databricks=unset.databricks).run(unset.storage.info(source))
    assert ran.batch is not None and ran.batch.state is State.FAILED
    assert "DATABRICKS_HOST" in (ran.batch.error or "")
    silver = unset.context.tables(USER_ACTIVITY.dataset).silver
    assert not silver.exists() or silver.snapshot().rows() == 0  # nothing ran in the Function instead
    configured = routed(local_settings, jobs_api)
    again = Runner(configured.context, retry=FAST_RETRY, databricks=configured.databricks).run(
        configured.storage.info(source)
    )
    assert again.batch is not None and again.batch.state is State.GOLD_DONE, again.error


def test_a_spark_run_records_what_it_used_when_it_ends_and_a_rerun_changes_nothing(
    jobs_api: JobsApi, local_settings: Settings
) -> None:
    source = land(local_settings, events=300, seed=23)
    app = routed(local_settings, jobs_api)
    ran = Runner(app.context, retry=FAST_RETRY, databricks=app.databricks).run(app.storage.info(source))
    batch = ran.batch
    assert batch is not None and batch.state is State.GOLD_DONE, ran.error

    run_id = batch.runs["bronze"]
    run = DatabricksJobs(app.settings.databricks).client.jobs.get_run(run_id)
    assert run.run_duration
    settings = app.settings.databricks
    hours = run.run_duration / 1000 / 3600
    (usage,) = batch.spark_usage.values()
    assert list(batch.spark_usage) == [str(run_id)]
    assert usage.seconds == pytest.approx(run.run_duration / 1000)
    assert usage.dbu_hours == pytest.approx(hours * settings.dbu_per_hour, abs=1e-6)
    assert usage.vm_hours == pytest.approx(hours * (settings.workers + 1), abs=1e-6)
    # the layers' steps that recorded the run ran in-function, and count too
    assert set(batch.gb_seconds) == {"validate", "bronze", "silver", "gold"}
    cost = costs.batch_cost(batch)
    assert cost.databricks_usd == pytest.approx(usage.dbu_hours * 0.30 + usage.vm_hours * 0.293)

    again = Runner(app.context, retry=FAST_RETRY, databricks=app.databricks).run(app.storage.info(source))
    assert again.batch is not None and again.batch.spark_usage == batch.spark_usage
    assert again.batch.gb_seconds == batch.gb_seconds
