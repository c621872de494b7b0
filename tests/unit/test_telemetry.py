"""The telemetry names and settings, without the exporter (tests/worker/test_telemetry.py runs it)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from shared import telemetry
from shared.batches import BatchState, Counts, Layer, Route, State
from shared.costs import SparkUsage
from shared.settings import PROCESS_ENVIRONMENT
from shared.telemetry_names import BATCH_EVENT, DIMENSIONS, LAYER_EVENT

ROOT = Path(__file__).resolve().parents[2]


def batch(**changes: Any) -> BatchState:
    base = BatchState("b" * 32, "user_activity", "az://capture/x.avro", 10, "etag", landed_at="2026-11-21Z")
    return replace(base, **changes)


def test_the_record_dimensions_are_a_subset_of_the_event_dimensions_the_queries_use() -> None:
    assert set(telemetry.BATCH_DIMENSIONS) <= set(telemetry.EVENT_DIMENSIONS) <= set(DIMENSIONS)
    assert set(telemetry.EVENT_DIMENSIONS) == set(DIMENSIONS)


def test_a_reference_alone_still_carries_every_record_dimension() -> None:
    dims = telemetry.about(batch().ref, Layer.SILVER)
    assert set(dims) == set(telemetry.BATCH_DIMENSIONS)
    assert (dims["batch_id"], dims["dataset"], dims["state"]) == ("b" * 32, "user_activity", "")


def test_a_failed_batch_is_logged_as_an_error_event_with_its_redacted_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failed = batch(
        state=State.FAILED,
        route=Route.IN_FUNCTION,
        counts=Counts(
            rows_in=3, rows_valid=2, rows_quarantined=1, quarantined_by_expectation={"b": 1, "a": 0}
        ),
        durations={"validate": 0.5, "bronze": 1.25},
        error="bronze: StoreUnavailable: https://x.blob.core.windows.net/c/f?sv=1&sig=abc%3D&se=2",
    )
    with caplog.at_level(logging.INFO, logger="shared.telemetry"):
        telemetry.batch_finished(failed, Layer.BRONZE)
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    attrs = vars(record)
    assert attrs[telemetry.EVENT_NAME_ATTRIBUTE] == BATCH_EVENT
    assert (attrs["state"], attrs["layer"], attrs["duration_ms"]) == ("FAILED", "bronze", 1750)
    assert json.loads(attrs["quarantined_by_expectation"]) == {"a": 0, "b": 1}
    assert "sig=***" in attrs["error"] and "abc" not in attrs["error"]


def test_a_layer_that_ends_the_batch_reports_both_events(caplog: pytest.LogCaptureFixture) -> None:
    done = batch(state=State.QUARANTINED, durations={"validate": 0.002}, error="avro: not a known format")
    with caplog.at_level(logging.INFO, logger="shared.telemetry"):
        telemetry.layer_completed(done, Layer.VALIDATE)
    names = [vars(r)[telemetry.EVENT_NAME_ATTRIBUTE] for r in caplog.records]
    assert names == [LAYER_EVENT, BATCH_EVENT]
    assert vars(caplog.records[0])["duration_ms"] == 2


def test_the_events_carry_the_gb_seconds_and_cost_batch_state_recorded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    done = batch(
        state=State.GOLD_DONE,
        durations={"validate": 0.5, "bronze": 2.0, "silver": 1.5, "gold": 0.25},
        gb_seconds={"validate": 1.0, "bronze": 4.0, "silver": 3.0, "gold": 0.5},
        spark_usage={"7": SparkUsage(seconds=600.0, dbu_hours=0.25, vm_hours=0.5)},
    )
    with caplog.at_level(logging.INFO, logger="shared.telemetry"):
        telemetry.layer_completed(done, Layer.GOLD)
    step, finished = (vars(r) for r in caplog.records)
    # gold alone: 0.5 GB-s and one execution
    assert step["gb_seconds"] == 0.5
    assert step["cost_usd"] == pytest.approx(0.5 * 0.000026 + 0.40 / 1e6)
    # the batch: 8.5 GB-s over 4 executions, and its Spark run's DBUs and VMs
    assert finished["gb_seconds"] == 8.5
    assert finished["cost_usd"] == pytest.approx(8.5 * 0.000026 + 4 * 0.40 / 1e6 + 0.25 * 0.30 + 0.5 * 0.293)


@pytest.mark.parametrize(
    "text",
    [
        "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net",
        "GET https://a.blob.core.windows.net/c/b?sv=2024&sig=s3cr3t%2B&sp=r",
        "POST /runtime/webhooks/durabletask/instances?code=hostkey==",
    ],
)
def test_redact_masks_keys_signatures_and_function_keys(text: str) -> None:
    masked = telemetry.redact(text)
    assert "***" in masked
    assert not any(s in masked for s in ("c2VjcmV0", "s3cr3t", "hostkey"))


def test_host_json_exports_opentelemetry_and_traces_orchestrations() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["telemetryMode"] == "OpenTelemetry"
    tracing = host["extensions"]["durableTask"]["tracing"]
    # TraceOptions.DistributedTracingEnabled and .Version (DurableDistributedTracingVersion.V2)
    assert (tracing["distributedTracingEnabled"], tracing["version"]) == (True, "V2")


def test_the_worker_exporter_collects_the_pipeline_loggers_and_keeps_every_span() -> None:
    assert PROCESS_ENVIRONMENT["PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME"] == telemetry.__name__.split(".")[0]
    assert (PROCESS_ENVIRONMENT["OTEL_TRACES_SAMPLER"], PROCESS_ENVIRONMENT["OTEL_TRACES_SAMPLER_ARG"]) == (
        "microsoft.fixed_percentage",
        "1.0",
    )
