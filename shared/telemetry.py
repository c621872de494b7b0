"""Telemetry: what the pipeline tells Application Insights about its batches.

Nothing here talks to Application Insights. In Azure the Functions Python worker configures
azure-monitor-opentelemetry itself (app setting ``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY``)
and puts its OpenTelemetry ``LoggingHandler`` on the root logger. That handler turns every
attribute of a ``LogRecord`` beyond the standard ones (what ``extra=`` adds) into a log
attribute, and the Azure Monitor log exporter sends each attribute as a ``customDimensions``
entry, as text; a record whose attributes include ``microsoft.custom_event.name`` is sent as
a custom event of that name (``customEvents``) instead of a trace. So this module only
builds dimensions and logs records:

- ``about(batch)``: what every log record about a batch carries (pass it as ``extra=``);
- ``layer_completed(batch, layer)``: one ``LAYER_EVENT`` per layer step that recorded its
  outcome, and the ``BATCH_EVENT`` too when that outcome ends the batch;
- ``batch_finished(batch, layer)``: one ``BATCH_EVENT`` when a batch ends final or FAILED;
- ``traced(trace_context)``: runs a synchronous function's body in its invocation's trace.
  The worker attaches the host's ``traceparent`` on its event loop, not in the thread a
  synchronous function runs in, so without this the records and Azure SDK calls of an
  activity carry no operation id and every SDK call starts a trace of its own.

Without the exporter (the CLI, the unit tests) these are ordinary log records. Every
dimension is taken from batch state, never from settings, so no key, connection string or
SAS reaches one; an error's text has any ``name=secret`` pair masked all the same, since it
may quote a URL or a library's message.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Protocol

from opentelemetry import context as otel_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared import costs
from shared.batches import BatchRef, BatchState, Layer, State
from shared.telemetry_names import BATCH_DIMENSIONS, BATCH_EVENT, DIMENSIONS, LAYER_EVENT

log = logging.getLogger(__name__)

Value = str | int | float
Dimensions = dict[str, Value]

#: The log attribute that makes the Azure Monitor log exporter send a record as a custom
#: event named by its value (azure-monitor-opentelemetry-exporter, ``export/logs/_exporter.py``).
EVENT_NAME_ATTRIBUTE = "microsoft.custom_event.name"
#: What the LayerCompleted and BatchFinished events carry: every dimension.
EVENT_DIMENSIONS: tuple[str, ...] = DIMENSIONS

_PROPAGATOR = TraceContextTextMapPropagator()
_SECRET = re.compile(
    r"(?i)\b(accountkey|sharedaccesskey|sharedaccesssignature|sig|code|token|password|secret)=[^;&\s'\"]+"
)


def about(batch: BatchState | BatchRef, layer: Layer | None = None) -> Dimensions:
    """The custom dimensions of a log record about ``batch``, to pass as ``extra=``.

    Args:
        batch: The batch as recorded (or only its reference, where the record is not at hand).
        layer: The layer the record is about, if any.

    Returns:
        Every name in ``BATCH_DIMENSIONS``; what the batch has not reached yet is empty text.
    """
    if isinstance(batch, BatchRef):
        return {**dict.fromkeys(BATCH_DIMENSIONS, ""), "batch_id": batch.batch_id, "dataset": batch.dataset}
    counts = batch.counts
    return {
        "batch_id": batch.batch_id,
        "dataset": batch.dataset,
        "layer": layer.label if layer else "",
        "route": batch.route.value if batch.route else "",
        "state": batch.state.value,
        "rows_in": _text(counts.rows_in),
        "rows_valid": _text(counts.rows_valid),
        "rows_quarantined": _text(counts.rows_quarantined),
        "duplicates_dropped": _text(counts.duplicates_dropped),
        "silver_inserted": _text(counts.silver_inserted),
        "duration_ms": _milliseconds(batch.durations.get(layer.label)) if layer else "",
    }


def layer_completed(batch: BatchState, layer: Layer) -> None:
    """Log ``LAYER_EVENT`` for the record ``layer``'s step just saved, and ``BATCH_EVENT``
    when the state it recorded stops the batch (a final state, or FAILED).

    Args:
        batch: The batch as recorded after the step.
        layer: The layer whose step ran.
    """
    used = batch.gb_seconds.get(layer.label)
    step_cost = {
        "gb_seconds": _text(used),
        "cost_usd": "" if used is None else _usd(costs.functions_usd(used, executions=1)),
    }
    _event(LAYER_EVENT, batch, layer, _milliseconds(batch.durations.get(layer.label)), step_cost)
    if batch.state.stops:
        batch_finished(batch, layer)


def batch_finished(batch: BatchState, layer: Layer | None) -> None:
    """Log ``BATCH_EVENT``: ``batch`` reached a final state or FAILED.

    Args:
        batch: The batch as recorded in that state.
        layer: The layer it ended in (the one that failed, for FAILED); None when intake
            ended it (an empty Capture window).
    """
    spent = _milliseconds(sum(batch.durations.values())) if batch.durations else ""
    cost = {
        "gb_seconds": round(sum(batch.gb_seconds.values()), 6) if batch.gb_seconds else "",
        "cost_usd": _usd(costs.batch_cost(batch).total_usd),
    }
    _event(BATCH_EVENT, batch, layer, spent, cost)


class TraceContext(Protocol):
    """What ``azure.functions.Context.trace_context`` carries: the host's W3C trace context."""

    @property
    def trace_parent(self) -> str: ...
    @property
    def trace_state(self) -> str: ...


@contextmanager
def traced(trace_context: TraceContext) -> Iterator[None]:
    """Run the block in the invocation's trace, the one the host sent (see the module docstring).

    Args:
        trace_context: The invocation's ``context.trace_context``; an empty one changes nothing.
    """
    carrier = {"traceparent": trace_context.trace_parent or "", "tracestate": trace_context.trace_state or ""}
    token = otel_context.attach(_PROPAGATOR.extract(carrier))
    try:
        yield
    finally:
        otel_context.detach(token)


def redact(text: str) -> str:
    """``text`` with the value of every ``name=value`` pair that may be a secret masked."""
    return _SECRET.sub(lambda match: f"{match.group(1)}=***", text)


def _event(name: str, batch: BatchState, layer: Layer | None, duration_ms: Value, cost: Dimensions) -> None:
    by_expectation = batch.counts.quarantined_by_expectation
    dimensions: Dimensions = {
        **about(batch, layer),
        **cost,
        "duration_ms": duration_ms,
        "quarantined_by_expectation": "" if by_expectation is None else _json(by_expectation),
        "landed_at": batch.landed_at,
        "error": redact(batch.error or ""),
        "run_id": _text(batch.runs.get(layer.label)) if layer else "",
        "run_page_url": batch.run_pages.get(layer.label, "") if layer else "",
    }
    log.log(
        logging.ERROR if batch.state is State.FAILED else logging.INFO,
        "%s: batch %s %s %s",
        name,
        batch.batch_id,
        layer or "intake",
        batch.state,
        extra={EVENT_NAME_ATTRIBUTE: name, **dimensions},
    )


def _json(counts: Mapping[str, int]) -> str:
    return json.dumps(dict(sorted(counts.items())))


def _usd(amount: float) -> Value:
    return round(amount, 9)


def _text(count: float | None) -> Value:
    return "" if count is None else count


def _milliseconds(seconds: float | None) -> Value:
    return "" if seconds is None else round(seconds * 1000)
