"""Telemetry as Application Insights receives it: the real worker, the real Azure Monitor exporter.

The worker runs with ``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true``, so it calls
``configure_azure_monitor`` itself, as in Azure; its connection string points the exporter at
the ingestion stand-in (``tests/support/ingestion.py``), which keeps every envelope and every
request body. Batches are played through the orchestrator and the activities against Azurite
(as in ``test_batch.py``): one to gold, one whose file disappears, one unreadable file, one
that runs out of retries, an Event Grid delivery and an empty Capture window. The settings
carry secrets (the storage account key, a Databricks token), and none may leave the process.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shared.app import App
from shared.batches import FAIL_ACTIVITY, Layer, batch_id_for
from shared.dev.events import blob_created_event
from shared.events import EVENT_FUNCTION
from shared.settings import AZURITE_KEY, Settings
from shared.telemetry import BATCH_DIMENSIONS, EVENT_DIMENSIONS
from shared.telemetry_names import BATCH_EVENT, LAYER_EVENT
from shared.uris import join
from tests.support.durable import FakeDurable
from tests.support.ingestion import Ingestion, events, serve_ingestion
from tests.worker.harness import Worker, activity_data, json_data, pb, string_data
from tests.worker.test_batch import Extension, register
from tests.worker.test_events import landed_event

pytestmark = pytest.mark.azurite

DATABRICKS_TOKEN = "dapi5ec7e7-not-for-telemetry"
#: The host's traceparent for an invocation whose trace its sampler dropped (flags 00).
UNSAMPLED_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
UNSAMPLED_PARENT = f"00-{UNSAMPLED_TRACE}-00f067aa0ba902b7-00"


@pytest.fixture(scope="module")
def ingestion() -> Iterator[Ingestion]:
    with serve_ingestion() as served:
        yield served


@pytest.fixture(scope="module")
def telemetry_worker(
    worker_env: dict[str, str | None],
    azurite_connection: str,
    ingestion: Ingestion,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Worker]:
    """The worker as Azure runs it with telemetry on, exporting to the stand-in."""
    env = {
        **worker_env,
        "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion.connection_string(),
        # Statsbeat and the SDK's settings service would call Azure: nothing here may leave the machine.
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
        # The exporter's retry storage lives under the temp folder: this run's own.
        "TMPDIR": str(tmp_path_factory.mktemp("exporter")),
        # Secrets in settings: an account key in both storage settings, a Databricks token.
        "LAKE_STORAGE": azurite_connection,
        "DATABRICKS_TOKEN": DATABRICKS_TOKEN,
    }
    worker = Worker(env=env).start().load()
    try:
        assert worker.init_response.result.status == pb.StatusResult.Success, worker.init_response.result
        yield worker
    finally:
        worker.close()


def played(worker: Worker, ops: App, ref: dict[str, Any]) -> dict[str, Any]:
    """Play one batch's orchestration to its end; returns its record as batch state holds it."""
    Extension(worker, ref).run()
    recorded = ops.states.get(ref["dataset"], ref["batch_id"])
    assert recorded is not None
    return recorded.to_dict()


@pytest.fixture(scope="module")
def to_gold(telemetry_worker: Worker, ops: App, worker_settings: Settings) -> dict[str, Any]:
    return played(telemetry_worker, ops, register(ops, worker_settings, "capture", "telemetry-gold"))


@pytest.fixture(scope="module")
def source_gone(telemetry_worker: Worker, ops: App, worker_settings: Settings) -> dict[str, Any]:
    """A batch whose file was deleted after it was registered: validate fails permanently."""
    ref = register(ops, worker_settings, "capture", "telemetry-gone")
    ops.storage.delete(ref["source"])
    return played(telemetry_worker, ops, ref)


@pytest.fixture(scope="module")
def unreadable(telemetry_worker: Worker, ops: App, worker_settings: Settings) -> dict[str, Any]:
    return played(telemetry_worker, ops, register(ops, worker_settings, "truncated", "telemetry-truncated"))


@pytest.fixture(scope="module")
def retried_out(telemetry_worker: Worker, ops: App, worker_settings: Settings) -> dict[str, Any]:
    """Validated, then bronze ran out of retries: the extension calls ``fail_batch``. Both
    invocations come from a host trace its sampler dropped."""
    ref = register(ops, worker_settings, "capture", "telemetry-retried")
    for name, payload in (
        (Layer.VALIDATE.activity, ref),
        (FAIL_ACTIVITY, {"batch": ref, "error": "bronze failed after 5 attempts: StoreUnavailable: down"}),
    ):
        argument = "failure" if name == FAIL_ACTIVITY else "batch"
        outcome = telemetry_worker.invoke(
            name, {argument: activity_data(payload)}, trace_parent=UNSAMPLED_PARENT
        )
        assert outcome.status == "Success", outcome
    recorded = ops.states.get(ref["dataset"], ref["batch_id"])
    assert recorded is not None and recorded.state == "FAILED"
    return recorded.to_dict()


@pytest.fixture(scope="module")
def delivered(
    telemetry_worker: Worker, ops: App, worker_settings: Settings, durable: FakeDurable
) -> dict[str, str]:
    """An Event Grid delivery that starts a batch, and one for an empty Capture window."""
    landed_uri, landed = landed_event(ops, worker_settings, seed=4242)
    empty_uri = join(worker_settings.capture_uri, f"telemetry-empty/{uuid.uuid4().hex}.avro")
    ops.storage.write(empty_uri, b"")
    empty = blob_created_event(ops.storage, empty_uri, 0, ops.storage.info(empty_uri).etag)
    ids = {}
    for kind, uri, event in (("started", landed_uri, landed), ("empty", empty_uri, empty)):
        outcome = telemetry_worker.invoke(
            EVENT_FUNCTION, {"event": json_data(event), "client": string_data(durable.binding())}
        )
        assert outcome.status == "Success", outcome
        ids[kind] = batch_id_for(worker_settings.lake_uri, uri, ops.storage.info(uri).etag)
    return ids


def batch_events(ingestion: Ingestion, name: str, batch_id: str, *, count: int) -> list[dict[str, Any]]:
    """The ``name`` events of one batch, once ``count`` of them arrived (the exporter sends in batches)."""

    def found(seen: Ingestion) -> list[dict[str, Any]]:
        mine = events_of(seen, name, batch_id)
        return mine if len(mine) >= count else []

    return ingestion.wait_for(found)


def events_of(ingestion: Ingestion, name: str, batch_id: str) -> list[dict[str, Any]]:
    """The ``name`` events of one batch received so far."""
    return [e for e in events(ingestion, name) if e["data"]["baseData"]["properties"]["batch_id"] == batch_id]


def dimensions(envelope: dict[str, Any]) -> dict[str, str]:
    return dict(envelope["data"]["baseData"]["properties"])


# -- the events --------------------------------------------------------------------------------------
def test_each_layer_reports_one_event_with_every_dimension(
    ingestion: Ingestion, to_gold: dict[str, Any]
) -> None:
    layer_events = batch_events(ingestion, LAYER_EVENT, to_gold["batch_id"], count=4)
    assert [dimensions(e)["layer"] for e in layer_events] == ["validate", "bronze", "silver", "gold"]
    assert [dimensions(e)["state"] for e in layer_events] == [
        "VALIDATED",
        "BRONZE_DONE",
        "SILVER_DONE",
        "GOLD_DONE",
    ]
    counts = to_gold["counts"]
    for envelope in layer_events:
        seen = dimensions(envelope)
        assert set(EVENT_DIMENSIONS) <= set(seen), set(EVENT_DIMENSIONS) - set(seen)
        assert (seen["dataset"], seen["route"], seen["landed_at"]) == (
            "user_activity",
            "in_function",
            to_gold["landed_at"],
        )
        assert int(seen["duration_ms"]) == round(to_gold["durations"][seen["layer"]] * 1000)
        assert seen["error"] == ""
    gold = dimensions(layer_events[-1])
    for name in ("rows_in", "rows_valid", "rows_quarantined", "duplicates_dropped", "silver_inserted"):
        assert int(gold[name]) == counts[name]
    assert int(gold["rows_in"]) == int(gold["rows_valid"]) + int(gold["rows_quarantined"])
    assert json.loads(gold["quarantined_by_expectation"]) == counts["quarantined_by_expectation"]
    # Validate only counts records: the row counts it has not reached are there, and empty.
    assert dimensions(layer_events[0])["rows_in"] == ""


def test_a_batch_that_reaches_gold_finishes_once(ingestion: Ingestion, to_gold: dict[str, Any]) -> None:
    batch_events(ingestion, LAYER_EVENT, to_gold["batch_id"], count=4)
    (finished,) = batch_events(ingestion, BATCH_EVENT, to_gold["batch_id"], count=1)
    seen = dimensions(finished)
    assert set(EVENT_DIMENSIONS) <= set(seen)
    assert (seen["state"], seen["layer"], seen["landed_at"]) == ("GOLD_DONE", "gold", to_gold["landed_at"])
    assert int(seen["duration_ms"]) == round(sum(to_gold["durations"].values()) * 1000)
    assert int(seen["silver_inserted"]) == to_gold["counts"]["silver_inserted"]


def test_a_failing_batch_reports_failed_with_the_layer_and_the_error(
    ingestion: Ingestion, source_gone: dict[str, Any]
) -> None:
    assert source_gone["state"] == "FAILED"
    (finished,) = batch_events(ingestion, BATCH_EVENT, source_gone["batch_id"], count=1)
    seen = dimensions(finished)
    assert (seen["state"], seen["layer"]) == ("FAILED", "validate")
    assert seen["error"] == source_gone["error"] and "SourceGone" in seen["error"]
    assert events_of(ingestion, LAYER_EVENT, source_gone["batch_id"]) == []


def test_a_batch_that_ran_out_of_retries_fails_in_the_layer_it_was_to_run(
    ingestion: Ingestion, retried_out: dict[str, Any]
) -> None:
    (finished,) = batch_events(ingestion, BATCH_EVENT, retried_out["batch_id"], count=1)
    seen = dimensions(finished)
    assert (seen["state"], seen["layer"]) == ("FAILED", "bronze")
    assert "StoreUnavailable" in seen["error"]
    assert seen["route"] == "in_function"


def test_an_unreadable_file_is_reported_quarantined_with_its_reason(
    ingestion: Ingestion, unreadable: dict[str, Any]
) -> None:
    assert unreadable["state"] == "QUARANTINED"
    (validated,) = batch_events(ingestion, LAYER_EVENT, unreadable["batch_id"], count=1)
    (finished,) = batch_events(ingestion, BATCH_EVENT, unreadable["batch_id"], count=1)
    for envelope in (validated, finished):
        seen = dimensions(envelope)
        assert (seen["state"], seen["layer"]) == ("QUARANTINED", "validate")
        assert seen["error"] == unreadable["error"] and seen["error"].startswith("avro: ")


def test_intake_reports_the_batches_it_starts_and_the_empty_windows_it_ends(
    ingestion: Ingestion, delivered: dict[str, str]
) -> None:
    (empty,) = batch_events(ingestion, BATCH_EVENT, delivered["empty"], count=1)
    assert (dimensions(empty)["state"], dimensions(empty)["layer"]) == ("EMPTY", "")

    def started(seen: Ingestion) -> list[dict[str, Any]]:
        return [
            e
            for e in seen.items("MessageData")
            if e["data"]["baseData"]["properties"].get("batch_id") == delivered["started"]
            and "started for" in e["data"]["baseData"]["message"]
        ]

    (record,) = ingestion.wait_for(started)
    seen = dimensions(record)
    assert (seen["state"], seen["dataset"], seen["layer"]) == ("RECEIVED", "user_activity", "")
    assert set(BATCH_DIMENSIONS) <= set(seen)


def test_every_log_record_about_a_batch_carries_its_dimensions(
    ingestion: Ingestion,
    to_gold: dict[str, Any],
    source_gone: dict[str, Any],
    unreadable: dict[str, Any],
    delivered: dict[str, str],
) -> None:
    ids = {to_gold["batch_id"], source_gone["batch_id"], unreadable["batch_id"], *delivered.values()}
    batch_events(ingestion, BATCH_EVENT, unreadable["batch_id"], count=1)

    def about_batches(seen: Ingestion) -> list[dict[str, Any]]:
        records = seen.items("MessageData") + seen.items("ExceptionData")
        return [r for r in records if any(i in json.dumps(r["data"]["baseData"]) for i in ids)]

    records = ingestion.wait_for(about_batches)
    messages = {r["data"]["baseData"].get("message", "") for r in records}
    assert any("failed permanently" in m for m in messages), messages  # the step's ERROR line
    assert any(m.startswith("quarantined ") for m in messages), messages
    for record in records:
        seen = dimensions(record)
        assert set(BATCH_DIMENSIONS) <= set(seen), record
        assert seen["batch_id"] in ids and seen["batch_id"] in json.dumps(record["data"]["baseData"])


# -- sampling and correlation ------------------------------------------------------------------
def test_a_trace_the_host_did_not_sample_keeps_its_events_and_every_span(
    ingestion: Ingestion, retried_out: dict[str, Any]
) -> None:
    (validated,) = batch_events(ingestion, LAYER_EVENT, retried_out["batch_id"], count=1)
    (failed,) = batch_events(ingestion, BATCH_EVENT, retried_out["batch_id"], count=1)
    # The records join the host's operation: the activities run in the invocation's trace.
    assert {validated["tags"]["ai.operation.id"], failed["tags"]["ai.operation.id"]} == {UNSAMPLED_TRACE}

    def spans(seen: Ingestion) -> list[dict[str, Any]]:
        return [
            e for e in seen.items("RemoteDependencyData") if e["tags"]["ai.operation.id"] == UNSAMPLED_TRACE
        ]

    dependencies = ingestion.wait_for(spans)
    assert any(d["data"]["baseData"]["name"] == "BlobClient.download_blob" for d in dependencies)
    # OTEL_TRACES_SAMPLER=microsoft.fixed_percentage at 1.0: every span kept, each says so.
    assert {d.get("sampleRate") for d in dependencies} == {100.0}


def test_only_the_pipelines_own_loggers_are_collected(ingestion: Ingestion, to_gold: dict[str, Any]) -> None:
    batch_events(ingestion, BATCH_EVENT, to_gold["batch_id"], count=1)
    records = ingestion.items("MessageData")
    collected = {r["data"]["baseData"]["properties"].get("logger_name", "") for r in records}
    # Not the worker's own lines, nor the exporter's "Transmission succeeded", one more per export.
    assert collected and all(name == "shared" or name.startswith("shared.") for name in collected), collected


# -- secrets ---------------------------------------------------------------------------------------
def test_the_exporter_never_sends_a_key_a_signature_or_a_token(
    ingestion: Ingestion,
    to_gold: dict[str, Any],
    source_gone: dict[str, Any],
    unreadable: dict[str, Any],
    retried_out: dict[str, Any],
    delivered: dict[str, str],
) -> None:
    for batch in (to_gold, source_gone, unreadable, retried_out):
        batch_events(ingestion, BATCH_EVENT, batch["batch_id"], count=1)
    # Wait for the spans of the last invocations too: they are exported every 5 seconds.
    ingestion.wait_for(
        lambda seen: [e for e in seen.items("RemoteDependencyData") if "telemetry-empty" in str(e)]
    )
    with ingestion.lock:
        sent = b"\n".join(ingestion.bodies).decode()
    assert to_gold["batch_id"] in sent and "RemoteDependencyData" in sent  # the run did report
    for secret in (AZURITE_KEY, "AccountKey=", "sig=", "SharedAccessSignature", DATABRICKS_TOKEN, "code=k"):
        assert secret not in sent, secret
