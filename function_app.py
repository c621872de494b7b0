"""Composition root: the Function app and its blueprints. No logic lives here."""

from __future__ import annotations

import logging

import azure.durable_functions as df
import azure.functions as func

from shared.blueprints import activities, event_grid, http, maintenance, orchestrator

# The Azure SDKs log every HTTP request (and identity token fetch) at INFO; the pipeline's own
# logs are what matter. Not the whole "azure" logger: the worker itself logs under azure.functions.
for noisy in ("azure.core.pipeline.policies.http_logging_policy", "azure.identity"):
    logging.getLogger(noisy).setLevel(logging.WARNING)

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (event_grid.bp, orchestrator.bp, activities.bp, http.bp, maintenance.bp):
    app.register_functions(blueprint)
