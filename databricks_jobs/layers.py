"""Bronze, silver and gold of one batch on Spark: the transforms, committed through a ``Lake``.

Each layer commits with the batch's application-transaction ids (``commit_id``), exactly
as the in-function route does, so the orchestrator finds every commit where it finds its
own, and a job that runs again (a retried run, a replay) skips what already landed.

The three layers run in one job, in order, because silver's first-wins dedupe needs each
event's place in the file, down to its place inside an array or NDJSON body; bronze does
not keep that, the decoded frame does. So the file is decoded once, and bronze and
silver are both computed from it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from databricks_jobs import sources, transforms
from databricks_jobs.lake import Lake, TableRef
from shared.batches import commit_id
from shared.contracts import Contract
from shared.errors import CommitConflict, TransientError
from shared.pipeline import decode, gold, schemas

log = logging.getLogger(__name__)

LAYER_NAMES = ("bronze", "silver", "gold")
#: Attempts at silver's checked insert that lose a race with another silver writer.
SILVER_ATTEMPTS = 8


def table_refs(tables: Mapping[str, str], contract: Contract) -> dict[str, TableRef]:
    """Each table's ``TableRef``: its URI (given by short name) with its columns from the contract.

    Args:
        tables: URI of ``bronze``, ``quarantine``, ``silver`` and every ``gold.<name>``.
        contract: The dataset's contract.

    Raises:
        KeyError: a table the contract writes has no URI.
    """
    refs = {
        "bronze": TableRef(tables["bronze"], schemas.bronze(contract)),
        "quarantine": TableRef(tables["quarantine"], schemas.quarantine()),
        "silver": TableRef(tables["silver"], schemas.silver(contract), (contract.partition_by,)),
    }
    for table in gold.tables(contract):
        refs[f"gold.{table.name}"] = TableRef(tables[f"gold.{table.name}"], schemas.gold(table, contract))
    return refs


def lake_layout(root: str, contract: Contract) -> dict[str, str]:
    """The table URIs of a lake rooted at ``root``, as the in-function route lays it out
    (``shared.layers.tables``): what the caller of a run passes as ``--table`` flags."""
    from shared.adapters.lake import Lake
    from shared.layers.tables import Tables

    return {name: table.uri for name, table in Tables(Lake(root), contract).by_short_name().items()}


@dataclass
class Batch:
    """One landed file and where its rows go: what the job's flags name."""

    spark: SparkSession
    lake: Lake
    contract: Contract
    stamp: transforms.Stamp
    source: str
    format: sources.Format
    tables: dict[str, TableRef]
    avro: sources.AvroSource = sources.databricks_avro
    figures: dict[str, Any] = field(default_factory=dict)
    """What the layers counted, for the job's summary line."""

    @cached_property
    def checked(self) -> DataFrame:
        """The file decoded, typed, numbered and checked; computed once, kept for every layer."""
        found = sources.records(self.spark, self.source, self.format, self.avro)
        options: dict[str, object] = {}
        if found.kind == "bodies":
            options["partition"] = decode.partition_of(self.source)
        if found.kind == "csv":
            options["header"] = found.header
        parsed = transforms.parsed(found.frame, self.contract, found.kind, **options)
        rows = transforms.checked(transforms.numbered(parsed, found.kind, found.lines), self.contract)
        return rows.persist(StorageLevel.MEMORY_AND_DISK)

    @property
    def batch_time(self) -> str:
        return self.stamp.batch_time.isoformat()


def run_bronze(batch: Batch) -> None:
    """Valid rows to bronze, rejects to quarantine (an empty commit when there are none)."""
    rows = batch.checked
    failures = rows.where(~F.col(transforms.VALID)).select(F.explode(transforms.FAILED).alias("name"))
    by_expectation = {r["name"]: int(r["count"]) for r in failures.groupBy("name").count().collect()}
    rows_in, valid = rows.count(), rows.where(transforms.VALID).count()
    batch.figures |= {
        "rows_in": rows_in,
        "rows_valid": valid,
        "rows_quarantined": rows_in - valid,
        "quarantined_by_expectation": by_expectation,
    }
    batch_id = batch.stamp.batch_id
    bronze = transforms.bronze(rows, batch.contract, batch.stamp)
    batch.lake.append(
        batch.tables["bronze"], bronze, commit_id("bronze", batch_id), {"batch_time": batch.batch_time}
    )
    rejects = transforms.quarantine(rows, batch.stamp)
    batch.lake.append(batch.tables["quarantine"], rejects, commit_id("quarantine", batch_id), {})


def run_silver(batch: Batch) -> None:
    """Dedupe by key (first wins in the batch; none silver holds, under any date), type,
    enrich and insert; a race lost to another silver writer is checked again."""
    contract, table = batch.contract, batch.tables["silver"]
    app_id = commit_id("silver", batch.stamp.batch_id)
    valid = batch.checked.where(transforms.VALID)
    if batch.lake.landed(table, app_id) is not None or not valid.limit(1).count():
        return
    first = transforms.first_wins(valid, contract).persist(StorageLevel.MEMORY_AND_DISK)
    batch.figures["duplicates_in_batch"] = valid.count() - first.count()
    key = (schemas.KEY_HASH, *contract.key)
    for attempt in range(1, SILVER_ATTEMPTS + 1):
        head = batch.lake.head(table)
        held = batch.lake.scan(table, head).select(*key)
        rows = transforms.silver(transforms.unseen(first, held, contract), contract, batch.stamp)
        rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
        inserted = rows.count()
        try:
            # The figures the Function's recording of silver reads back from the commit.
            figures = {
                "batch_time": batch.batch_time,
                "duplicates_in_batch": batch.figures["duplicates_in_batch"],
            }
            batch.lake.insert(table, rows, app_id, figures, read=head, key=key)
        except CommitConflict as exc:
            if attempt == SILVER_ATTEMPTS or batch.lake.landed(table, app_id) is not None:
                raise
            log.warning("silver: %s (attempt %d); checking again", exc, attempt)
            continue
        finally:
            rows.unpersist()
        batch.figures["silver_inserted"] = inserted
        if "rows_valid" in batch.figures:
            batch.figures["duplicates_dropped"] = batch.figures["rows_valid"] - inserted
        return


def run_gold(batch: Batch) -> None:
    """Fold the rows this batch inserted into silver into every gold table, once each.

    Raises:
        TransientError: silver holds another number of the batch's rows than silver inserted.
    """
    contract, batch_id = batch.contract, batch.stamp.batch_id
    head = batch.lake.head(batch.tables["silver"])
    inserted = (
        batch.lake.scan(batch.tables["silver"], head)
        .where(F.col("_batch_id") == batch_id)
        .select(*gold.inputs(contract))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    read = inserted.count()
    expected = batch.figures.get("silver_inserted")
    if expected is not None and read != expected:
        raise TransientError(
            f"gold read {read} rows of batch {batch_id} from silver, but silver inserted {expected}"
        )
    for table in gold.tables(contract) if read else ():
        rows = transforms.aggregate(table, inserted)
        version = head.version
        for measure in gold.distinct(table):
            assert measure.via is not None
            companion = batch.tables[f"gold.{measure.via}"]
            at = batch.lake.head(companion)
            rows = rows.join(
                transforms.distinct_counts(table, measure, batch.lake.scan(companion, at), rows),
                list(table.keys),
            )
            version = at.version
        batch.lake.merge(
            batch.tables[f"gold.{table.name}"],
            transforms.conformed(rows, table, contract, version),
            table.keys,
            gold.updates(table),
            commit_id(f"gold.{table.name}", batch_id),
        )
    inserted.unpersist()


RUNNERS = {"bronze": run_bronze, "silver": run_silver, "gold": run_gold}
