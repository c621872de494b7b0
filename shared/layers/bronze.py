"""Bronze: decode and check every record; valid rows to bronze, rejects to quarantine.

Two commits, each once per batch: bronze (streamed, while the file decodes) and then the
rejects (an empty commit when there are none, so that it is always there to find). A
step that finds both already in the lake counts what they hold instead of decoding
again; one that finds only bronze decodes again for the rejects alone.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from shared.batches import BatchState, Counts, Route, State, commit_id
from shared.contracts import CONTRACTS
from shared.errors import QuarantinedFile, TransientError
from shared.layers.context import Context, Outcome
from shared.layers.quarantine import quarantine_file
from shared.layers.tables import Tables
from shared.pipeline import decode, schemas
from shared.pipeline.bronze import BronzeStream, Stamp
from shared.pipeline.validate import failure_counts
from shared.predicates import sql_literal


def batch_time(batch: BatchState) -> datetime:
    """The ``_batch_time`` every row of the batch carries: when its file landed."""
    return parse_time(batch.landed_at or batch.received_at)


def parse_time(at: str) -> datetime:
    return datetime.fromisoformat(at.replace("Z", "+00:00"))


def work(ctx: Context, batch: BatchState) -> Outcome:
    contract = CONTRACTS[batch.dataset]
    tables = ctx.tables(batch.dataset)
    bronze_id, quarantine_id = commit_id("bronze", batch.batch_id), commit_id("quarantine", batch.batch_id)
    bronze = tables.bronze.commit(bronze_id)
    rejects = tables.quarantine.commit(quarantine_id)
    # A batch registered again (its record lost) finds the time its rows were stamped with
    # in its bronze commit, not in the file, whose modification time may have moved.
    landed = (
        parse_time(str(bronze.figures["batch_time"])) if bronze and "batch_time" in bronze.figures else None
    )
    if bronze is not None and rejects is not None:
        return _recorded(tables, batch, bronze.version, rejects.version, landed)
    if batch.route is Route.DATABRICKS:  # its Spark run writes bronze; never run it here instead
        raise TransientError(
            f"bronze of batch {batch.batch_id} ran on Databricks, but {bronze_id} and "
            f"{quarantine_id} are not both in the lake yet"
        )

    stamp = Stamp(batch.batch_id, batch.source, landed or batch_time(batch))
    recount = bronze is not None
    with ctx.files.open(batch.source) as fh:
        chunks = decode.decode(fh, batch.source, contract, chunk_rows=ctx.settings.chunk_rows)
        stream = BronzeStream(chunks, contract, stamp)
        try:
            if bronze is None:
                bronze = tables.bronze.append_once(
                    stream.reader(), bronze_id, {"batch_time": stamp.batch_time}
                )
            else:
                stream.drain()
        except QuarantinedFile as exc:
            return quarantine_file(ctx, batch, exc.reason)
        except Exception:
            # The Delta writer wraps what the stream raised; nothing was committed.
            if stream.failure is None:
                raise
            return quarantine_file(ctx, batch, stream.failure.reason)
    if bronze.found and not recount:
        # A concurrent writer's commit landed after the first look: the stream was never
        # read and its tally is empty. Start again from what the lake now holds.
        return work(ctx, batch)
    quarantined = stream.quarantined()
    if quarantined is None:
        quarantined = pl.DataFrame(schema=schemas.quarantine())
    rejects = tables.quarantine.append_once(quarantined.to_arrow(), quarantine_id)
    return Outcome(
        State.BRONZE_DONE,
        stream.tally.counts(),
        versions={"bronze": bronze.version, "quarantine": rejects.version},
        landed_at=_iso(stamp.batch_time),
    )


def _recorded(
    tables: Tables, batch: BatchState, bronze: int | None, quarantine: int | None, landed: datetime | None
) -> Outcome:
    """The counts of a batch whose commits are both in the lake, read from the lake."""
    stamped = landed or batch_time(batch)
    where = f"_batch_id = {sql_literal(batch.batch_id)} AND _batch_time = {sql_literal(stamped.isoformat())}"
    valid = tables.bronze.snapshot().scan(where).filter(pl.col("_batch_id") == batch.batch_id)
    rows_valid = int(valid.select(pl.len()).collect().item())
    rejected = (
        tables.quarantine.snapshot()
        .scan(where)
        .filter(pl.col("_batch_id") == batch.batch_id)
        .select("failed_expectations")
        .collect()
    )
    counts = Counts(
        rows_in=rows_valid + rejected.height,
        rows_valid=rows_valid,
        rows_quarantined=rejected.height,
        quarantined_by_expectation=failure_counts(rejected),
    )
    versions = {"bronze": bronze, "quarantine": quarantine}
    return Outcome(State.BRONZE_DONE, counts, versions=versions, landed_at=_iso(stamped))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
