"""Operations endpoints (function key required): batches, replay, backfill."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from shared.blueprints import app
from shared.errors import ApiError, BadRequest

log = logging.getLogger(__name__)

bp = df.Blueprint(http_auth_level=func.AuthLevel.FUNCTION)


@bp.route(route="batches", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def list_batches(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """GET /api/batches?dataset=&state=&since=&limit=: batches with their runtime status."""
    params = req.params
    return await _respond(
        lambda: app().admin.batches(
            client,
            dataset=params.get("dataset") or None,
            state=params.get("state") or None,
            since=params.get("since") or None,
            limit=_int_param(params.get("limit")) or 100,
        )
    )


@bp.route(route="batches/{batch_id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def get_batch(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """GET /api/batches/{batch_id}: one batch's record and runtime status."""
    return await _respond(lambda: app().admin.batch(req.route_params["batch_id"], client))


@bp.route(route="batches/{batch_id}/replay", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def replay_batch(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """POST /api/batches/{batch_id}/replay[?from=layer]: re-run a finished batch."""
    layer = req.params.get("from") or str(_body(req).get("from") or "validate")
    return await _respond(
        lambda: app().admin.replay(req.route_params["batch_id"], client, from_layer=layer), status=202
    )


@bp.route(route="backfill", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def backfill(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """POST /api/backfill {"prefix": ..., "limit": ...}: start every Capture file under a prefix."""
    body = _body(req)
    prefix = str(body.get("prefix") or req.params.get("prefix") or "")
    limit = body.get("limit") or req.params.get("limit")
    return await _respond(lambda: app().intake.backfill(prefix, client, limit=_int_param(limit)), status=202)


async def _respond(call: Callable[[], Awaitable[Any]], status: int = 200) -> func.HttpResponse:
    """Run an operation; a typed API error answers with its own status (400, 404, 409)."""
    try:
        return _json(await call(), status)
    except ApiError as exc:
        return _json({"error": str(exc)}, exc.status)


def _json(body: Any, status: int) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, default=str), status_code=status, mimetype="application/json")


def _body(req: func.HttpRequest) -> dict[str, Any]:
    try:
        body = req.get_json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _int_param(value: Any) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"limit must be a positive integer, not {value!r}") from None
    if number < 1:
        raise BadRequest(f"limit must be a positive integer, not {number}")
    return number
