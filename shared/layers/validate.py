"""Validate: the whole file is readable; count its records and choose its route.

An unreadable file is moved to quarantine and its batch ends QUARANTINED; a file
without records ends EMPTY. Nothing is written to the lake.
"""

from __future__ import annotations

from shared.batches import BatchState, Counts, Route, State
from shared.errors import QuarantinedFile
from shared.layers.context import Context, Outcome
from shared.layers.quarantine import quarantine_file
from shared.pipeline import decode


def work(ctx: Context, batch: BatchState) -> Outcome:
    try:
        with ctx.files.open(batch.source) as stream:
            probe = decode.probe(stream, batch.source)
    except QuarantinedFile as exc:
        return quarantine_file(ctx, batch, exc.reason)
    if probe.records == 0:
        return Outcome(State.EMPTY, Counts(records=0))
    route = Route.DATABRICKS if batch.size > ctx.settings.large_file_bytes else Route.IN_FUNCTION
    return Outcome(State.VALIDATED, Counts(records=probe.records), route=route)
