"""What a batch costs: GB-seconds and Spark usage in batch state, priced at the listed rates."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from databricks.sdk.service.jobs import Run

from bench import report
from shared import costs
from shared.adapters.databricks import run_seconds
from shared.adapters.state import _entity, _from_entity
from shared.batches import BatchState, Counts, LifeCycle, Result, RunStatus, State
from shared.costs import SparkUsage


def batch(**changes: Any) -> BatchState:
    return replace(BatchState("c" * 32, "user_activity", "az://capture/x.avro", 10, "etag"), **changes)


def test_gb_seconds_are_the_duration_times_the_memory_in_gb() -> None:
    assert costs.gb_seconds(2.5, 2048) == 5.0
    assert costs.gb_seconds(1.0, 512) == 0.5
    assert costs.gb_seconds(0.123, 4096) == pytest.approx(0.492)


def test_each_step_merges_its_gb_seconds_key_by_key() -> None:
    validated = batch().moved(State.VALIDATED, "t1", gb_seconds={"validate": 0.5})
    bronze = validated.moved(State.BRONZE_DONE, "t2", gb_seconds={"bronze": 4.0})
    assert bronze.gb_seconds == {"validate": 0.5, "bronze": 4.0}
    assert bronze.moved(State.BRONZE_DONE, "t3", gb_seconds={"bronze": 3.0}).gb_seconds["bronze"] == 3.0


def test_an_in_function_batch_costs_its_gb_seconds_and_one_execution_per_step() -> None:
    done = batch(gb_seconds={"validate": 0.1, "bronze": 4.4, "silver": 2.9, "gold": 0.4})
    cost = costs.batch_cost(done)
    assert cost.functions_usd == pytest.approx(7.8 * 0.000026 + 4 * 0.40 / 1e6)
    assert cost.databricks_usd == 0
    assert cost.total_usd == cost.functions_usd


def test_a_databricks_batch_costs_its_runs_dbus_and_vms_plus_its_in_function_steps() -> None:
    usage = {
        "11": SparkUsage.of(1800, dbu_per_hour=1.5, nodes=2),  # a failed run: it cost all the same
        "12": SparkUsage.of(3600, dbu_per_hour=1.5, nodes=2),
    }
    assert usage["12"] == SparkUsage(seconds=3600, dbu_hours=1.5, vm_hours=2.0)
    done = batch(gb_seconds={"validate": 0.2, "bronze": 0.2, "silver": 0.2, "gold": 0.2}, spark_usage=usage)
    cost = costs.batch_cost(done)
    assert cost.databricks_usd == pytest.approx(2.25 * 0.30 + 3.0 * 0.293)
    assert cost.functions_usd == pytest.approx(0.8 * 0.000026 + 4 * 0.40 / 1e6)
    assert costs.batch_cost(done, vm_usd_per_hour=1.0).databricks_usd == pytest.approx(2.25 * 0.30 + 3.0)


def test_serverless_runs_use_no_vm_hours() -> None:
    assert SparkUsage.of(720, dbu_per_hour=4.0, nodes=0) == SparkUsage(720, 0.8, 0.0)


def test_the_smallest_cluster_is_two_ds3_v2_nodes_at_premium_jobs_rates() -> None:
    # one hour: 2 nodes x 0.75 DBU x $0.30 + 2 VMs x $0.293
    assert costs.smallest_cluster_usd(3600) == pytest.approx(2 * 0.75 * 0.30 + 2 * 0.293)


def test_cost_per_million_events_comes_from_the_counts() -> None:
    done = batch(gb_seconds={"bronze": 10.0}, counts=Counts(records=2_000, rows_in=500_000))
    assert costs.batch_per_million_events(done) == pytest.approx(costs.batch_cost(done).total_usd * 2)
    assert costs.batch_per_million_events(batch(counts=Counts(records=1_000_000))) == 0
    assert costs.batch_per_million_events(batch()) is None
    assert costs.per_million_events(1.0, 0) is None


def test_gb_seconds_and_spark_usage_round_trip_through_the_table_entity() -> None:
    recorded = batch(
        gb_seconds={"validate": 0.25, "bronze": 8.125},
        spark_usage={"455644833": SparkUsage(seconds=412.5, dbu_hours=0.171875, vm_hours=0.229167)},
    )
    entity = _entity(recorded)
    assert json.loads(entity["gb_seconds"]) == {"bronze": 8.125, "validate": 0.25}
    back = _from_entity(entity)
    assert back.gb_seconds == recorded.gb_seconds
    assert back.spark_usage == recorded.spark_usage
    assert costs.batch_cost(back) == costs.batch_cost(recorded)
    assert back.to_dict()["spark_usage"] == {"455644833": recorded.spark_usage["455644833"].to_dict()}


def test_an_entity_written_before_costs_were_recorded_loads_with_none() -> None:
    entity = _entity(batch(durations={"validate": 0.5}))
    for name in ("gb_seconds", "spark_usage"):
        del entity[name]
    old = _from_entity(entity)
    assert (old.durations, old.gb_seconds, old.spark_usage) == ({"validate": 0.5}, {}, {})


def test_an_ended_runs_duration_round_trips_through_the_poll_result() -> None:
    status = RunStatus(7, LifeCycle.TERMINATED, Result.SUCCESS, "", "https://w/run/7", seconds=61.5)
    assert RunStatus.from_dict(status.to_dict()) == status
    running = RunStatus.from_dict({"run_id": 7, "life_cycle": "RUNNING"})
    assert running.seconds is None


def test_a_multitask_runs_duration_is_its_run_duration(real_world: Path) -> None:
    sample = json.loads((real_world / "databricks" / "docs_jobs21_runs_get_response_sample.json").read_text())
    # The reference's runs/get sample: a multitask run, whose setup/execution/cleanup are 0.
    assert run_seconds(Run.from_dict(sample)) == sample["run_duration"] / 1000


def test_without_run_duration_a_run_lasts_from_its_start_to_its_end() -> None:
    assert run_seconds(Run(start_time=1_000, end_time=61_500)) == 60.5
    assert run_seconds(Run(setup_duration=2_000, execution_duration=8_000, cleanup_duration=500)) == 10.5
    assert run_seconds(Run(start_time=1_000, end_time=0)) is None


def test_the_bench_prices_both_routes_from_the_headline_case() -> None:
    steps = {"register": 0.4, "validate": 0.05, "bronze": 2.2, "silver": 1.5, "gold": 0.25}
    results = {
        "cases": {
            "speedup": {"input": "events-1m"},
            "route": {
                "events-1m": {
                    "rows_in": 1_000_000,
                    "instance_memory_mb": 2048,
                    "steps": {k: {"seconds": v, "peak_rss_mb": 1.0} for k, v in steps.items()},
                }
            },
            "spark": {"events-1m": {"seconds": 90.0, "rows_in": 1_000_000}, "ratio_to_ingest": 20.0},
        }
    }
    spent = report.cost(results)
    in_function = spent["in_function"]
    # register runs in the Event Grid trigger, not a layer step
    assert in_function["gb_seconds"] == pytest.approx(4.0 * 2)
    assert in_function["usd_per_million_events"] == pytest.approx(8.0 * 0.000026 + 4 * 0.40 / 1e6)
    assert spent["databricks"]["usd_per_million_events"] == pytest.approx(
        90 / 3600 * (2 * 0.75 * 0.30 + 2 * 0.293), abs=1e-6
    )
    assert "stand-in" in spent["databricks"]["seconds_from"]
    rows = report.cost_table(spent)
    assert rows[3].startswith("| in-function | events-1m | 4.0 |")
    assert rows[4].startswith("| databricks | events-1m | 90.0 |")
