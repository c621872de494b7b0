"""End to end: a defect-laden day through bronze, quarantine, silver and gold (Azurite state)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from shared import layers
from shared.adapters.lake import Snapshot
from shared.app import App, build
from shared.batches import BatchState, Layer, State
from shared.contracts import USER_ACTIVITY
from shared.dev.generator import GeneratedFile, generate_day
from shared.errors import CommitConflict
from shared.pipeline import gold, keyindex, schemas
from shared.services.intake import register
from shared.services.runner import Runner
from shared.settings import Settings
from shared.uris import join
from tests.conftest import FAST_RETRY

pytestmark = pytest.mark.azurite

BUSINESS_SILVER = schemas.business_columns(USER_ACTIVITY)


@dataclass
class Day:
    app: App
    files: list[GeneratedFile]
    uris: list[str]

    @property
    def runner(self) -> Runner:
        return Runner(self.app.context, retry=FAST_RETRY)


def land(settings: Settings, *, files: int = 8, events: int = 150, seed: int = 11) -> Day:
    app = build(settings)
    generated = list(generate_day(files=files, events_per_file=events, defect_rate=0.1, seed=seed))
    uris = []
    for f in generated:
        uri = join(settings.capture_uri, f.path)
        app.storage.write(uri, f.data)
        uris.append(uri)
    return Day(app, generated, uris)


def ingest(day: Day, order: list[int] | None = None) -> list[BatchState]:
    out = []
    for i in order if order is not None else range(len(day.uris)):
        run = day.runner.run(day.app.storage.info(day.uris[i]))
        assert run.batch is not None, run.error
        out.append(run.batch)
    return out


def registered(day: Day, index: int) -> BatchState:
    return register(day.app.settings, day.app.states, day.app.storage.info(day.uris[index]))


def step(day: Day, layer: Layer, batch: BatchState) -> State:
    return layers.run(day.app.context, layer, batch.ref).state


def tables(app: App) -> dict[str, Any]:
    return app.context.tables(USER_ACTIVITY.dataset).by_short_name()


def table(app: App, name: str) -> pl.DataFrame:
    return tables(app)[name].snapshot().scan().collect()


def snapshot(app: App) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, handle in tables(app).items():
        frame = handle.snapshot().scan().collect()
        order = [*frame.columns[:1], "_batch_id"] if "_batch_id" in frame.columns else frame.columns[:2]
        out[name] = (handle.snapshot().version, frame.sort(order).rows())
    batches = app.states.list(lake=app.settings.lake_uri)
    out["states"] = sorted((b.to_dict() for b in batches), key=lambda d: str(d["batch_id"]))
    return out


def assert_day_landed(day: Day, batches: list[BatchState]) -> None:
    app = day.app
    by_kind = {f.kind: b for f, b in zip(day.files, batches, strict=True)}
    assert by_kind["empty"].state is State.EMPTY
    truncated = by_kind["truncated"]
    assert truncated.state is State.QUARANTINED
    assert truncated.error and truncated.error.startswith("avro: ")
    for f, b in zip(day.files, batches, strict=True):
        if f.kind != "capture":
            continue
        assert b.state is State.GOLD_DONE, (b.state, b.error)
        c = b.counts
        assert c.rows_in and c.rows_in == (c.rows_valid or 0) + (c.rows_quarantined or 0)
        assert not c.unbalanced()
        assert sum((c.quarantined_by_expectation or {}).values()) >= (c.rows_quarantined or 0)

    silver = table(app, "silver")
    expected = set().union(*(f.valid_log_ids for f in day.files if f.kind == "capture"))
    assert silver.get_column("log_id").n_unique() == silver.height
    assert set(silver.get_column("log_id")) == expected

    bronze, quarantine = table(app, "bronze"), table(app, "quarantine")
    assert bronze.height + quarantine.height == sum(b.counts.rows_in or 0 for b in batches)
    assert quarantine.get_column("failed_expectations").list.len().min() >= 1  # type: ignore[operator]
    assert_gold_matches_silver(app, silver)


def assert_gold_matches_silver(app: App, silver: pl.DataFrame) -> None:
    for name, reference in gold.from_scratch(USER_ACTIVITY, silver):
        keys = reference.columns[: len(next(t for t in gold.tables(USER_ACTIVITY) if t.name == name).keys)]
        got = table(app, f"gold.{name}").select(reference.columns).sort(keys)
        assert_frame_equal(got, reference.sort(keys), check_exact=False, rel_tol=1e-9, check_dtypes=False)


@pytest.mark.parametrize("where", ["local", "azurite"])
def test_defect_laden_day_lands_balanced(where: str, request: pytest.FixtureRequest) -> None:
    settings = request.getfixturevalue("local_settings" if where == "local" else "azure_settings")
    day = land(settings)
    batches = ingest(day)
    assert_day_landed(day, batches)
    # Every kind of defect the generator injects was seen and named.
    reasons: set[str] = set()
    for b in batches:
        reasons |= set(b.counts.quarantined_by_expectation or {})
    assert reasons == {"malformed_body"} | {e.name for e in USER_ACTIVITY.expectations}
    assert sum(b.counts.duplicates_dropped or 0 for b in batches) > 0


def test_colliding_key_hashes_never_drop_a_row(
    local_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every key of one length hashes alike, so each in-batch and silver check hits and
    # every row is settled on its real key.
    from shared.pipeline import silver

    def degenerate(column: str) -> pl.Expr:
        return pl.col(column).str.len_bytes().cast(pl.Int64).alias(keyindex.KEY_HASH)

    monkeypatch.setattr(keyindex, "key_hash", degenerate)
    monkeypatch.setattr(silver, "key_hash", degenerate)
    day = land(local_settings, files=6, events=120)
    batches = ingest(day)
    assert_day_landed(day, batches)
    assert sum(b.counts.duplicates_dropped or 0 for b in batches) > 0
    assert table(day.app, "silver").get_column(keyindex.KEY_HASH).n_unique() <= 2


def test_a_silver_insert_that_loses_a_commit_race_rechecks_and_lands(
    local_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every silver append first loses a race; the retry rebuilds the key index it freed.
    real = Snapshot.append
    lost: set[str] = set()

    def racing(self: Snapshot, data: Any, app_id: str, figures: Any, **kwargs: Any) -> Any:
        if app_id.startswith("silver:") and app_id not in lost:
            lost.add(app_id)
            raise CommitConflict(f"{app_id}: a concurrent transaction wrote first")
        return real(self, data, app_id, figures, **kwargs)

    monkeypatch.setattr(Snapshot, "append", racing)
    day = land(local_settings, files=5, events=100)
    batches = ingest(day)
    assert_day_landed(day, batches)
    assert len(lost) == sum(1 for b in batches if b.state is State.GOLD_DONE)


def test_gold_refuses_a_batch_it_cannot_read_whole(
    local_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gold folds a batch only when it reads every row silver inserted: pruning that lost
    files fails the step (and is retried) instead of counting part of the batch."""
    from shared.errors import TransientError
    from shared.layers import gold as gold_layer

    day = land(local_settings, files=3, events=100, seed=3)
    batch = registered(day, next(i for i, f in enumerate(day.files) if f.kind == "capture"))
    for layer in (Layer.VALIDATE, Layer.BRONZE, Layer.SILVER):
        step(day, layer, batch)

    def gold_versions() -> dict[str, int]:
        return {name: t.snapshot().version for name, t in tables(day.app).items() if name.startswith("gold.")}

    before = gold_versions()
    wrong = "_batch_time = '2000-01-01T00:00:00+00:00'"
    monkeypatch.setattr(gold_layer, "batch_where", lambda *args: wrong)
    with pytest.raises(TransientError, match=r"gold read 0 rows of batch .* silver inserted \d+"):
        step(day, Layer.GOLD, batch)
    assert gold_versions() == before
    monkeypatch.undo()
    assert step(day, Layer.GOLD, batch) is State.GOLD_DONE


def test_reingesting_the_same_files_changes_nothing(local_settings: Settings) -> None:
    day = land(local_settings, files=6, events=100)
    ingest(day)
    before = snapshot(day.app)
    # The truncated file was moved to quarantine; its second delivery no longer exists there.
    ingest(day, [i for i, f in enumerate(day.files) if f.kind != "truncated"])
    assert snapshot(day.app) == before


def test_silver_compacted_as_it_goes_gives_the_same_answers(
    local_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Partitions compacted between batches (every other batch here): silver and gold
    still balance and match gold from scratch, and re-delivery still changes nothing."""
    from shared.adapters import lake

    monkeypatch.setattr(lake, "COMPACT_AT_FILES", 2)
    day = land(local_settings, files=8, events=120, seed=7)
    batches = ingest(day)
    assert_day_landed(day, batches)
    silver = tables(day.app)["silver"]
    written = sum(1 for b in batches if b.counts.silver_inserted)
    assert silver.snapshot().files().height < written
    before = snapshot(day.app)
    ingest(day, [i for i, f in enumerate(day.files) if f.kind != "truncated"])
    assert snapshot(day.app) == before


def test_another_order_gives_the_same_business_rows(
    local_settings: Settings, azurite_connection: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from tests.conftest import make_settings

    first = land(local_settings, files=6, events=100, seed=5)
    ingest(first)
    root = tmp_path_factory.mktemp("reordered")
    other_settings = make_settings(
        azurite_connection,
        lake_uri=str(root / "lake"),
        capture_uri=str(root / "capture"),
        quarantine_uri=str(root / "q"),
    )
    second = land(other_settings, files=6, events=100, seed=5)
    ingest(second, list(reversed(range(len(second.uris)))))
    for name in ["silver", *(f"gold.{t.name}" for t in USER_ACTIVITY.gold)]:
        a, b = table(first.app, name), table(second.app, name)
        columns = (
            BUSINESS_SILVER if name == "silver" else [c for c in a.columns if c != schemas.SOURCE_VERSION]
        )
        assert_frame_equal(
            a.select(columns).sort(columns[:2]),
            b.select(columns).sort(columns[:2]),
            check_exact=False,
            rel_tol=1e-9,
        )


def test_unreadable_file_is_moved_to_quarantine(azure_settings: Settings) -> None:
    app = build(azure_settings)
    uri = join(azure_settings.capture_uri, "ns/eh/0/2026/11/21/10/00/00.avro")
    app.storage.write(uri, b"Obj\x01 this is not really avro")
    run = Runner(app.context, retry=FAST_RETRY).run(app.storage.info(uri))
    assert run.batch is not None and run.batch.state is State.QUARANTINED
    assert run.batch.error and run.batch.error.startswith("avro: bad header")
    moved = join(azure_settings.quarantine_uri, "ns/eh/0/2026/11/21/10/00/00.avro")
    assert run.batch.quarantined_to == moved
    assert app.storage.read_bytes(moved) == b"Obj\x01 this is not really avro"
    assert not list(app.storage.list(azure_settings.capture_uri))


def test_a_local_file_quarantined_to_a_container_is_copied_checked_and_removed(
    local_settings: Settings, azurite_connection: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """QUARANTINE_URI in another store than the file: a copy, not a folder named `az:`."""
    import os
    import uuid

    from tests.conftest import make_settings

    root = tmp_path_factory.mktemp("cross")
    container = f"quarantine{uuid.uuid4().hex[:8]}"
    settings = make_settings(
        azurite_connection,
        lake_uri=str(root / "lake"),
        capture_uri=str(root / "capture"),
        quarantine_uri=f"az://{container}",
    )
    app = build(settings)
    uri = join(settings.capture_uri, "ns/eh/0/2026/11/21/10/00/00.avro")
    app.storage.write(uri, b"Obj\x01 not avro")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        run = Runner(app.context, retry=FAST_RETRY).run(app.storage.info(uri))
    finally:
        os.chdir(cwd)
    assert run.batch is not None and run.batch.state is State.QUARANTINED
    assert not (root / "az:").exists()
    assert app.storage.read_bytes(f"az://{container}/ns/eh/0/2026/11/21/10/00/00.avro") == b"Obj\x01 not avro"
    assert not app.storage.exists(uri)


def test_not_a_known_format(local_settings: Settings) -> None:
    app = build(local_settings)
    uri = join(local_settings.capture_uri, "drop/readme.bin")
    app.storage.write(uri, b"\x00\x01\x02 binary")
    run = Runner(app.context, retry=FAST_RETRY).run(app.storage.info(uri))
    assert run.batch is not None and (run.batch.state, run.batch.error) == (
        State.QUARANTINED,
        "not a known format",
    )


def test_empty_capture_file_touches_no_table(local_settings: Settings) -> None:
    day = land(local_settings, files=4, events=50)
    ingest(day, [i for i, f in enumerate(day.files) if f.kind == "capture"])
    versions = {name: t.snapshot().version for name, t in tables(day.app).items()}
    batch = ingest(day, [next(i for i, f in enumerate(day.files) if f.kind == "empty")])[0]
    assert batch.state is State.EMPTY
    assert {name: t.snapshot().version for name, t in tables(day.app).items()} == versions


def test_a_silver_append_that_raced_another_writer_conflicts(local_settings: Settings) -> None:
    """Two writers that checked silver at the same version cannot both land."""
    import pyarrow as pa

    from shared.batches import SILVER_WRITER

    day = land(local_settings, files=2, events=50)
    batch = registered(day, 0)
    for layer in (Layer.VALIDATE, Layer.BRONZE):
        step(day, layer, batch)
    stale = tables(day.app)["silver"].snapshot()
    writer = stale.transaction(SILVER_WRITER) or 0
    step(day, Layer.SILVER, batch)  # the winner commits first
    empty = schemas.arrow(schemas.silver(USER_ACTIVITY)).empty_table()
    with pytest.raises(CommitConflict):
        stale.append(
            pa.RecordBatchReader.from_batches(empty.schema, empty.to_batches()),
            "silver:loser",
            {},
            advance={SILVER_WRITER: writer + 1},
        )


def test_a_file_that_breaks_mid_stream_is_quarantined_and_bronze_untouched(
    local_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file the probe passed but decoding cannot finish: no partial bronze commit."""
    from collections.abc import Iterator

    from shared.errors import QuarantinedFile
    from shared.pipeline import decode

    day = land(local_settings, files=2, events=100)
    batch = registered(day, next(i for i, f in enumerate(day.files) if f.kind == "capture"))
    assert step(day, Layer.VALIDATE, batch) is State.VALIDATED
    real_decode = decode.decode

    def breaks_after_one_chunk(*args: Any, **kwargs: Any) -> Iterator[pl.DataFrame]:
        yield next(real_decode(*args, **kwargs))
        raise QuarantinedFile(batch.source, "avro: bad sync marker after block 2")

    monkeypatch.setattr(decode, "decode", breaks_after_one_chunk)
    result = layers.run(day.app.context, Layer.BRONZE, batch.ref)
    assert (result.state, result.error) == (State.QUARANTINED, "avro: bad sync marker after block 2")
    assert not tables(day.app)["bronze"].snapshot().recorded(f"bronze:{batch.batch_id}")
