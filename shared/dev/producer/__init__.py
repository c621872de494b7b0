"""Send the generator's activity events to a real Event Hub: a smoke test of a deployment.

``python -m shared produce --namespace NS --eventhub HUB --events N --rate R`` signs in
with ``DefaultAzureCredential`` (``az login`` on a workstation), or with a user-assigned
managed identity (``--client-id``), or with a connection string for users who choose one
(``--connection-string``, ``-`` to read it from stdin, or the ``EVENTHUB_CONNECTION_STRING``
setting), and sends N events of ``shared.dev.generator.activity_events`` at R a second.

How it sends:

- **One partition key per batch.** Each event is keyed by its user's id, so a user's
  events share a partition and stay in order. An ``EventDataBatch`` carries one key, so
  the events due in each pacing window are grouped by key, and each group fills batches
  until ``add`` refuses an event for size (at the link's maximum message size, or
  ``--max-batch-bytes``). Every event lands in exactly one batch.
- **Paced by windows.** Window ``k`` opens ``k`` seconds after the first and sends the
  events due by its end; then the producer sleeps until the next window opens. Sends that
  take longer than a window delay the next one, and progress shows the rate achieved.
- **Retried by batch.** The SDK retries lost connections and links itself (the ``retry_*``
  options in ``hub``). What it gives up on, or never retries (a ``server-busy`` refusal, a send
  timeout), is retried here with backoff if ``is_transient`` says so, re-sending the same
  batch. Event Hubs is at-least-once: a batch whose send timed out or lost its connection
  may have been stored, so its retry may store the events twice. Because the batch is
  never rebuilt, a copy carries the same log_ids (silver keeps one), and the report counts
  those events as possibly sent twice instead of hiding them.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# Names come from their modules on first use: `python -m shared` registers the command's
# flags (``command.register``) without loading azure-eventhub for every other command.
_HOME = {
    "BatchSender": "batches",
    "Packed": "batches",
    "pack": "batches",
    "register": "command",
    "PERMANENT_CONDITIONS": "failures",
    "TRANSIENT_SEND_ERRORS": "failures",
    "is_transient": "failures",
    "may_have_been_stored": "failures",
    "Target": "hub",
    "connect": "hub",
    "produce": "hub",
    "resolve_target": "hub",
    "Clock": "sending",
    "Producer": "sending",
    "Report": "sending",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOME[name]}"), name)


__all__ = [
    "PERMANENT_CONDITIONS",
    "TRANSIENT_SEND_ERRORS",
    "BatchSender",
    "Clock",
    "Packed",
    "Producer",
    "Report",
    "Target",
    "connect",
    "is_transient",
    "may_have_been_stored",
    "pack",
    "produce",
    "register",
    "resolve_target",
]
