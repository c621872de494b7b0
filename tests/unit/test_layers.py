"""Each layer, and the wrapper they run in, against in-memory batch state and a local lake.

No Azure and no emulator: the lake is the real delta-rs on a temporary folder, the files
are local, and batch state is ``tests.support.fakes.MemoryStates``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from shared import layers
from shared.adapters.lake import Lake
from shared.adapters.storage import Storage
from shared.batches import BatchState, Layer, Route, State
from shared.contracts import USER_ACTIVITY
from shared.dev.generator import clean_events, generate_capture_file, to_ndjson
from shared.errors import PermanentError
from shared.layers.context import Context
from shared.pipeline import gold
from shared.services.intake import register
from shared.settings import AZURITE_CONNECTION, Settings
from tests.support.fakes import MemoryStates

START = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    settings = Settings.from_env(
        {
            "AzureWebJobsStorage": AZURITE_CONNECTION,
            "LAKE_URI": str(tmp_path / "lake"),
            "CAPTURE_URI": str(tmp_path / "capture"),
            "QUARANTINE_URI": str(tmp_path / "quarantine"),
            "LARGE_FILE_BYTES": "100000",
        }
    )
    # Local paths only: the storage adapter never reaches for the account.
    return Context(settings, Storage(settings.lake_storage), MemoryStates(), Lake(settings.lake_uri))


def land(ctx: Context, name: str, data: bytes) -> BatchState:
    path = Path(ctx.settings.capture_uri, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return register(ctx.settings, ctx.states, ctx.files.info(str(path)))


def run_all(ctx: Context, batch: BatchState) -> BatchState:
    for layer in Layer:
        if layers.run(ctx, layer, batch.ref).state.stops:
            break
    stored = ctx.states.get(batch.dataset, batch.batch_id)
    assert stored is not None
    return stored


def frame(ctx: Context, name: str) -> pl.DataFrame:
    return ctx.tables(USER_ACTIVITY.dataset).by_short_name()[name].snapshot().scan().collect()


# -- validate -------------------------------------------------------------------------------
def test_validate_counts_records_and_routes_by_size(ctx: Context) -> None:
    small = land(ctx, "small.ndjson", to_ndjson(clean_events(5, start=START)))
    large = land(ctx, "large.ndjson", to_ndjson(clean_events(2000, seed=1, start=START)))
    assert layers.run(ctx, Layer.VALIDATE, small.ref).route is Route.IN_FUNCTION
    result = layers.run(ctx, Layer.VALIDATE, large.ref)
    assert (result.state, result.route, result.counts.records) == (State.VALIDATED, Route.DATABRICKS, 2000)


def test_validate_ends_an_empty_file_empty_and_an_unreadable_one_quarantined(ctx: Context) -> None:
    empty = land(ctx, "ns/hub/0/2026/11/21/00/00/00.avro", b"")
    broken = land(ctx, "ns/hub/1/2026/11/21/00/00/00.avro", b"Obj\x01 not avro at all")
    assert layers.run(ctx, Layer.VALIDATE, empty.ref).state is State.EMPTY
    result = layers.run(ctx, Layer.VALIDATE, broken.ref)
    assert result.state is State.QUARANTINED and result.error and result.error.startswith("avro: bad header")
    moved = Path(ctx.settings.quarantine_uri, "ns/hub/1/2026/11/21/00/00/00.avro")
    assert moved.read_bytes() == b"Obj\x01 not avro at all" and not Path(broken.source).exists()


# -- bronze ---------------------------------------------------------------------------------
def test_bronze_lands_valid_rows_and_rejects_with_balanced_counts(ctx: Context) -> None:
    generated = generate_capture_file(events=300, defect_rate=0.2, seed=3)
    batch = land(ctx, "ns/hub/0/2026/11/21/01/00/00.avro", generated.data)
    layers.run(ctx, Layer.VALIDATE, batch.ref)
    result = layers.run(ctx, Layer.BRONZE, batch.ref)
    c = result.counts
    assert result.state is State.BRONZE_DONE
    assert c.rows_in == (c.rows_valid or 0) + (c.rows_quarantined or 0) and (c.rows_quarantined or 0) > 0
    assert (
        frame(ctx, "bronze").height == c.rows_valid and frame(ctx, "quarantine").height == c.rows_quarantined
    )


def test_bronze_found_in_the_lake_is_counted_from_the_lake_without_decoding(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = land(ctx, "a.avro", generate_capture_file(events=200, defect_rate=0.1, seed=4).data)
    layers.run(ctx, Layer.VALIDATE, batch.ref)
    first = layers.run(ctx, Layer.BRONZE, batch.ref)
    states = ctx.states
    assert isinstance(states, MemoryStates)
    stored = states.get(batch.dataset, batch.batch_id)
    assert stored is not None
    states.records[(batch.dataset, batch.batch_id)] = replace(
        stored, state=State.VALIDATED
    )  # record lost its step

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded again")

    monkeypatch.setattr("shared.pipeline.decode.decode", no_decoding)
    again = layers.run(ctx, Layer.BRONZE, batch.ref)
    assert again.counts.to_dict() == first.counts.to_dict() and again.versions == first.versions
    assert frame(ctx, "bronze").height == first.counts.rows_valid


# -- silver ---------------------------------------------------------------------------------
def test_silver_drops_repeats_within_the_batch_and_keys_silver_holds_on_any_date(ctx: Context) -> None:
    first = clean_events(30, seed=5, start=START)
    second = clean_events(30, seed=6, start=START + dt.timedelta(days=3))
    second[0]["log_id"] = first[0]["log_id"]  # held by silver, on another date
    second[1]["log_id"] = second[2]["log_id"]  # repeated within the batch
    a = run_all(ctx, land(ctx, "a.ndjson", to_ndjson(first)))
    b = run_all(ctx, land(ctx, "b.ndjson", to_ndjson(second)))
    assert a.counts.silver_inserted == 30
    assert (b.counts.silver_inserted, b.counts.duplicates_dropped, b.counts.duplicates_in_batch) == (28, 2, 1)
    assert not b.counts.unbalanced()
    assert frame(ctx, "silver").get_column("log_id").n_unique() == 58


# -- gold -----------------------------------------------------------------------------------
def test_gold_folds_every_batch_into_what_silver_aggregates_to(ctx: Context) -> None:
    for i in range(3):
        events = clean_events(40, seed=10 + i, start=START + dt.timedelta(hours=9 * i))
        assert run_all(ctx, land(ctx, f"{i}.ndjson", to_ndjson(events))).state is State.GOLD_DONE
    silver = frame(ctx, "silver")
    keys_of = {t.name: list(t.keys) for t in gold.tables(USER_ACTIVITY)}
    for name, reference in gold.from_scratch(USER_ACTIVITY, silver):
        got = frame(ctx, f"gold.{name}").select(reference.columns)
        keys = keys_of[name]
        assert_frame_equal(
            got.sort(keys), reference.sort(keys), check_exact=False, rel_tol=1e-9, check_dtypes=False
        )


# -- the wrapper ----------------------------------------------------------------------------
def test_a_step_already_reached_returns_the_record_and_touches_nothing(ctx: Context) -> None:
    done = run_all(ctx, land(ctx, "a.ndjson", to_ndjson(clean_events(10, start=START))))
    states = ctx.states
    assert isinstance(states, MemoryStates)
    writes = states.writes
    versions = {n: t.snapshot().version for n, t in ctx.tables(done.dataset).by_short_name().items()}
    for layer in Layer:
        assert layers.run(ctx, layer, done.ref).state is State.GOLD_DONE
    assert states.writes == writes
    assert {n: t.snapshot().version for n, t in ctx.tables(done.dataset).by_short_name().items()} == versions


def test_a_permanent_error_is_recorded_failed_and_a_rerun_resumes_where_it_stopped(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = land(ctx, "a.ndjson", to_ndjson(clean_events(10, start=START)))
    real = layers.WORK[Layer.SILVER]

    def refuses(*args: object) -> object:
        raise PermanentError("the contract's key column is missing")

    monkeypatch.setitem(layers.WORK, Layer.SILVER, refuses)
    failed = run_all(ctx, batch)
    assert (
        failed.state is State.FAILED
        and failed.error == "silver: PermanentError: the contract's key column is missing"
    )
    monkeypatch.setitem(layers.WORK, Layer.SILVER, real)
    resumed = run_all(ctx, batch)
    assert resumed.state is State.GOLD_DONE and resumed.error is None
    visited = [t.state for t in resumed.transitions]
    assert visited[-4:] == [State.FAILED, State.BRONZE_DONE, State.SILVER_DONE, State.GOLD_DONE]


def test_a_writer_that_loses_the_race_reports_the_winners_state_and_never_fails_it(ctx: Context) -> None:
    batch = land(ctx, "a.ndjson", to_ndjson(clean_events(10, start=START)))
    layers.run(ctx, Layer.VALIDATE, batch.ref)
    stale = ctx.states.get(batch.dataset, batch.batch_id)
    assert stale is not None
    run_all(ctx, batch)  # the winner finishes while the loser still holds its old read
    assert layers.step.fail(ctx, batch.ref, "lost", expect=stale).state is State.GOLD_DONE
    stored = ctx.states.get(batch.dataset, batch.batch_id)
    assert stored is not None and stored.state is State.GOLD_DONE and stored.error is None
