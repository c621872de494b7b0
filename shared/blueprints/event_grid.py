"""Event Grid intake: a Capture file landed, so start (or skip) its batch."""

from __future__ import annotations

import logging

import azure.durable_functions as df
import azure.functions as func

from shared import telemetry
from shared.blueprints import app
from shared.errors import UnknownEventType
from shared.events import EVENT_FUNCTION, from_trigger

log = logging.getLogger(__name__)

bp = df.Blueprint()


@bp.function_name(EVENT_FUNCTION)
@bp.event_grid_trigger(arg_name="event")
@bp.durable_client_input(client_name="client")
async def on_capture_event(event: func.EventGridEvent, client: df.DurableOrchestrationClient) -> None:
    """Handle one BlobCreated or CaptureFileCreated event (either schema)."""
    envelope = from_trigger(event)
    try:
        outcome = await app().intake.event(envelope, client)
    except UnknownEventType as exc:
        log.error(
            "UNKNOWN EVENT TYPE %r (event %s, source %s): %s",
            envelope.type,
            envelope.id,
            envelope.source,
            exc,
        )
        raise
    log.info(
        "event %s (%s): %s %s %s",
        envelope.id,
        envelope.type,
        outcome.action,
        outcome.batch_id,
        outcome.reason,
        extra=telemetry.about(outcome.batch) if outcome.batch else None,
    )
