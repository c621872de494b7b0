"""End to end on Azurite: a defect-laden day through bronze, quarantine, silver and gold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl
import pytest
from deltalake.exceptions import CommitFailedError
from polars.testing import assert_frame_equal

from shared.adapters.lake import Lake
from shared.adapters.state import BatchState
from shared.adapters.storage import join
from shared.contracts import USER_ACTIVITY
from shared.dev.generator import GeneratedFile, generate_day
from shared.pipeline import keyindex, medallion
from shared.pipeline.medallion import GOLD_KEYS, business_columns, gold_from_scratch
from shared.settings import Settings
from shared.steps import Pipeline

pytestmark = pytest.mark.azurite

BUSINESS_SILVER = business_columns(USER_ACTIVITY)
TABLES = [
    "bronze/user_activity",
    "quarantine/user_activity",
    "silver/user_activity",
    "gold/user_watch_time",
    "gold/daily_user_watch_time",
    "gold/region_daily_watch_time",
]


@dataclass
class Day:
    pipeline: Pipeline
    files: list[GeneratedFile]
    uris: list[str]


def land(settings: Settings, *, files: int = 8, events: int = 150, seed: int = 11) -> Day:
    pipeline = Pipeline(settings)
    generated = list(generate_day(files=files, events_per_file=events, defect_rate=0.1, seed=seed))
    uris = []
    for f in generated:
        uri = join(settings.capture_uri, f.path)
        pipeline.storage.write(uri, f.data)
        uris.append(uri)
    return Day(pipeline, generated, uris)


def ingest(day: Day, order: list[int] | None = None) -> list[BatchState]:
    return [day.pipeline.run(day.uris[i]) for i in (order or range(len(day.uris)))]


def table(pipeline: Pipeline, name: str) -> pl.DataFrame:
    return pipeline.lake.scan(name).collect()


def snapshot(pipeline: Pipeline) -> dict[str, object]:
    out: dict[str, object] = {}
    for name in TABLES:
        dt = pipeline.lake.open(name)
        assert dt is not None
        frame = table(pipeline, name)
        out[name] = (
            dt.version(),
            frame.sort(
                [*frame.columns[:1], "_batch_id"] if "_batch_id" in frame.columns else frame.columns[:2]
            ).rows(),
        )
    out["states"] = sorted((b.to_dict() for b in pipeline.states.list()), key=lambda d: str(d["batch_id"]))
    return out


def assert_day_landed(day: Day, batches: list[BatchState]) -> None:
    pipeline = day.pipeline
    by_kind = {f.kind: b for f, b in zip(day.files, batches, strict=True)}
    assert by_kind["empty"].state == "EMPTY"
    truncated = by_kind["truncated"]
    assert truncated.state == "QUARANTINED"
    assert truncated.error and truncated.error.startswith("avro: ")
    for f, b in zip(day.files, batches, strict=True):
        if f.kind != "capture":
            continue
        assert b.state == "GOLD_DONE", (b.state, b.error)
        c = b.counts
        assert c["rows_in"] == c["rows_valid"] + c["rows_quarantined"] > 0
        assert c["rows_valid"] == c["silver_inserted"] + c["duplicates_dropped"]
        assert sum(c["quarantined_by_expectation"].values()) >= c["rows_quarantined"]

    silver = table(pipeline, "silver/user_activity")
    expected = set().union(*(f.valid_log_ids for f in day.files if f.kind == "capture"))
    assert silver.get_column("log_id").n_unique() == silver.height
    assert set(silver.get_column("log_id")) == expected

    bronze = table(pipeline, "bronze/user_activity")
    quarantine = table(pipeline, "quarantine/user_activity")
    total_in = sum(b.counts.get("rows_in", 0) for b in batches)
    assert bronze.height + quarantine.height == total_in
    assert quarantine.get_column("failed_expectations").list.len().min() >= 1  # type: ignore[operator]

    scratch = gold_from_scratch(silver)
    for name, keys in GOLD_KEYS.items():
        gold = table(pipeline, f"gold/{name}").drop("_source_version").sort(list(keys))
        reference = scratch[name].select(gold.columns).sort(list(keys))
        assert_frame_equal(gold, reference, check_exact=False, rel_tol=1e-9, check_dtypes=False)


@pytest.mark.parametrize("where", ["local", "azurite"])
def test_defect_laden_day_lands_balanced(where: str, request: pytest.FixtureRequest) -> None:
    settings = request.getfixturevalue("local_settings" if where == "local" else "azure_settings")
    day = land(settings)
    batches = ingest(day)
    assert_day_landed(day, batches)
    # Every kind of defect the generator injects was seen and named.
    reasons: set[str] = set()
    for b in batches:
        reasons |= set(b.counts.get("quarantined_by_expectation", {}))
    assert reasons == {"malformed_body"} | {e.name for e in USER_ACTIVITY.expectations}
    assert sum(b.counts.get("duplicates_dropped", 0) for b in batches) > 0


def test_colliding_key_hashes_never_drop_a_row(
    local_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every key of one length hashes alike, so each in-batch and silver check hits and
    # every row is settled on its real (date, key).
    def degenerate(column: str) -> pl.Expr:
        return pl.col(column).str.len_bytes().cast(pl.Int64).alias(keyindex.KEY_HASH)

    monkeypatch.setattr(keyindex, "key_hash", degenerate)
    monkeypatch.setattr(medallion, "key_hash", degenerate)
    day = land(local_settings, files=6, events=120)
    batches = ingest(day)
    assert_day_landed(day, batches)
    assert sum(b.counts.get("duplicates_dropped", 0) for b in batches) > 0
    assert table(day.pipeline, "silver/user_activity").get_column(keyindex.KEY_HASH).n_unique() <= 2


def test_a_silver_insert_that_loses_a_commit_race_rechecks_and_lands(
    local_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every silver append first loses a race; the retry rebuilds the key index it freed.
    real = Lake.append_to
    lost: set[str] = set()

    def racing(self: Lake, snapshot: Any, data: Any, *, app_id: str, **kwargs: Any) -> int:
        if app_id.startswith("silver:") and app_id not in lost:
            lost.add(app_id)
            raise CommitFailedError("Transaction failed: a concurrent transaction wrote first")
        return real(self, snapshot, data, app_id=app_id, **kwargs)

    monkeypatch.setattr(Lake, "append_to", racing)
    day = land(local_settings, files=5, events=100)
    batches = ingest(day)
    assert_day_landed(day, batches)
    assert len(lost) == sum(1 for b in batches if b.state == "GOLD_DONE")


def test_gold_refuses_a_batch_it_cannot_read_whole(
    local_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gold folds a batch only when it reads every row silver inserted: pruning that lost
    files fails the step (and is retried) instead of counting part of the batch."""
    from datetime import UTC, datetime

    from shared import steps
    from shared.errors import TransientError
    from shared.steps import BatchRef

    day = land(local_settings, files=3, events=100, seed=3)
    good = next(i for i, f in enumerate(day.files) if f.kind == "capture")
    pipeline = day.pipeline
    batch = pipeline.register(day.uris[good])
    ref = BatchRef(batch.batch_id, batch.dataset, batch.source, batch.size, batch.etag)
    for step in (pipeline.validate, pipeline.bronze, pipeline.silver):
        step(ref)

    def gold_versions() -> dict[str, int]:
        tables = [pipeline.lake.open(name) for name in TABLES if name.startswith("gold/")]
        return {str(dt.table_uri): dt.version() for dt in tables if dt is not None}

    before = gold_versions()
    monkeypatch.setattr(steps, "_batch_time", lambda batch: datetime(2000, 1, 1, tzinfo=UTC))
    with pytest.raises(TransientError, match=r"gold read 0 rows of batch .* silver step inserted \d+"):
        pipeline.gold(ref)
    assert gold_versions() == before
    monkeypatch.undo()
    assert pipeline.gold(ref)["state"] == "GOLD_DONE"


def test_reingesting_the_same_files_changes_nothing(local_settings: Settings) -> None:
    day = land(local_settings, files=6, events=100)
    ingest(day)
    before = snapshot(day.pipeline)
    # The truncated file was moved to quarantine; its second delivery no longer exists there.
    again = [i for i, f in enumerate(day.files) if f.kind != "truncated"]
    ingest(day, again)
    assert snapshot(day.pipeline) == before


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
    silver = day.pipeline.lake.open("silver/user_activity")
    assert silver is not None
    operations = [entry["operation"] for entry in silver.history()]
    assert operations.count("OPTIMIZE") >= 2
    written = sum(1 for b in batches if b.counts.get("silver_inserted"))
    assert len(silver.file_uris()) < written
    before = snapshot(day.pipeline)
    ingest(day, [i for i, f in enumerate(day.files) if f.kind != "truncated"])
    assert snapshot(day.pipeline) == before


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
    for name in [
        "silver/user_activity",
        "gold/user_watch_time",
        "gold/daily_user_watch_time",
        "gold/region_daily_watch_time",
    ]:
        a, b = table(first.pipeline, name), table(second.pipeline, name)
        columns = (
            BUSINESS_SILVER if name.startswith("silver") else [c for c in a.columns if c != "_source_version"]
        )
        assert_frame_equal(
            a.select(columns).sort(columns[:2]),
            b.select(columns).sort(columns[:2]),
            check_exact=False,
            rel_tol=1e-9,
        )


def test_unreadable_file_is_moved_to_quarantine(azure_settings: Settings) -> None:
    pipeline = Pipeline(azure_settings)
    uri = join(azure_settings.capture_uri, "ns/eh/0/2026/11/21/10/00/00.avro")
    pipeline.storage.write(uri, b"Obj\x01 this is not really avro")
    batch = pipeline.run(uri)
    assert batch.state == "QUARANTINED"
    assert batch.error and batch.error.startswith("avro: bad header")
    moved = join(azure_settings.quarantine_uri, "ns/eh/0/2026/11/21/10/00/00.avro")
    assert pipeline.storage.read_bytes(moved) == b"Obj\x01 this is not really avro"
    assert not list(pipeline.storage.list(azure_settings.capture_uri))
    # A redelivered event for the moved file maps to the same batch and stays quarantined.
    assert pipeline.states.get("user_activity", batch.batch_id) is not None


def test_not_a_known_format(local_settings: Settings) -> None:
    pipeline = Pipeline(local_settings)
    uri = join(local_settings.capture_uri, "drop/readme.bin")
    pipeline.storage.write(uri, b"\x00\x01\x02 binary")
    batch = pipeline.run(uri)
    assert (batch.state, batch.error) == ("QUARANTINED", "not a known format")


def test_empty_capture_file_touches_no_table(local_settings: Settings) -> None:
    day = land(local_settings, files=4, events=50)
    ingest(day, [i for i, f in enumerate(day.files) if f.kind == "capture"])
    versions = {t: day.pipeline.lake.open(t).version() for t in TABLES}  # type: ignore[union-attr]
    empty = next(i for i, f in enumerate(day.files) if f.kind == "empty")
    batch = day.pipeline.run(day.uris[empty])
    assert batch.state == "EMPTY"
    assert {t: day.pipeline.lake.open(t).version() for t in TABLES} == versions  # type: ignore[union-attr]


def test_a_silver_append_that_raced_another_writer_conflicts(local_settings: Settings) -> None:
    """Two writers that checked silver at the same version cannot both land."""
    import pyarrow as pa
    from deltalake.exceptions import CommitFailedError

    from shared.steps import SILVER_WRITER, BatchRef

    day = land(local_settings, files=2, events=50)
    first = day.pipeline.register(day.uris[0])
    ref = BatchRef(first.batch_id, first.dataset, first.source, first.size, first.etag)
    for step in (day.pipeline.validate, day.pipeline.bronze):
        step(ref)
    stale = day.pipeline.lake.open("silver/user_activity")
    assert stale is not None
    writer = stale.transaction_version(SILVER_WRITER) or 0
    day.pipeline.silver(ref)  # the winner commits first
    empty = pa.schema(stale.schema().to_arrow()).empty_table()
    with pytest.raises(CommitFailedError, match=r"(?i)concurrent"):
        day.pipeline.lake.append_to(
            stale,
            pa.RecordBatchReader.from_batches(empty.schema, empty.to_batches()),
            app_id="silver:loser",
            partition_by=["event_date"],
            transactions={SILVER_WRITER: writer + 1},
        )


def test_a_file_that_breaks_mid_stream_is_quarantined_and_bronze_untouched(
    local_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file the probe passed but decoding cannot finish: no partial bronze commit."""
    from collections.abc import Iterator

    from shared.errors import QuarantinedFile
    from shared.pipeline import decode
    from shared.steps import BatchRef

    day = land(local_settings, files=2, events=100)
    index = next(i for i, f in enumerate(day.files) if f.kind == "capture")
    batch = day.pipeline.register(day.uris[index])
    ref = BatchRef(batch.batch_id, batch.dataset, batch.source, batch.size, batch.etag)
    assert day.pipeline.validate(ref)["state"] == "VALIDATED"
    real_decode = decode.decode

    def breaks_after_one_chunk(*args: Any, **kwargs: Any) -> Iterator[pl.DataFrame]:
        yield next(real_decode(*args, **kwargs))
        raise QuarantinedFile(ref.source, "avro: bad sync marker after block 2")

    monkeypatch.setattr(decode, "decode", breaks_after_one_chunk)
    result = day.pipeline.bronze(ref)
    assert (result["state"], result["error"]) == ("QUARANTINED", "avro: bad sync marker after block 2")
    bronze = day.pipeline.lake.open("bronze/user_activity")
    assert bronze is not None and bronze.transaction_version(f"bronze:{ref.batch_id}") is None
