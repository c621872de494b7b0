"""Moving an unreadable file to quarantine, keeping its path, so it can be found and replayed."""

from __future__ import annotations

import logging
from pathlib import Path

from shared import telemetry
from shared.adapters.storage import is_remote, join
from shared.batches import BatchState, State
from shared.layers.context import Context, Outcome

log = logging.getLogger(__name__)


def destination(ctx: Context, source: str) -> str:
    """Where an unreadable file goes: QUARANTINE_URI plus the file's own path."""
    capture = ctx.settings.capture_uri
    if source.startswith(capture + "/"):
        relative = source[len(capture) + 1 :]
    elif is_remote(source):  # registered sources are az://container/path
        relative = source.split("://", 1)[1]
    else:
        relative = Path(source).resolve().as_posix().lstrip("/")
    return join(ctx.settings.quarantine_uri, relative)


def quarantine_file(ctx: Context, batch: BatchState, reason: str) -> Outcome:
    """Move the batch's file to quarantine; the batch ends QUARANTINED with ``reason``."""
    target = destination(ctx, batch.source)
    ctx.files.move(batch.source, target)
    log.warning("quarantined %s -> %s: %s", batch.source, target, reason, extra=telemetry.about(batch))
    return Outcome(State.QUARANTINED, error=reason, quarantined_to=target)
