"""The real Event Hub: which one, how to sign in, and one smoke-test run against it."""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TextIO

from azure.eventhub import EventHubProducerClient, parse_connection_string

from shared.dev.generator import activity_events
from shared.dev.producer.failures import first_line
from shared.dev.producer.sending import WINDOW_SECONDS, Clock, Producer, Report
from shared.errors import ConfigError, EventHubRefused

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential


#: The token scope of the Event Hubs data plane.
EVENTHUBS_SCOPE = "https://eventhubs.azure.net/.default"
# The SDK's own backoff inside one call (its defaults, with a shorter longest wait because
# the producer retries the call again on top); ``connect`` sets how many retries.
_SDK_BACKOFF: Final[dict[str, Any]] = {
    "retry_backoff_factor": 0.8,
    "retry_backoff_max": 30,
    "retry_mode": "exponential",
}


@dataclass(frozen=True, slots=True)
class Target:
    """The event hub to send to, and a connection string if the user chose one."""

    namespace: str
    """Fully qualified, e.g. ``my-ns.servicebus.windows.net``."""
    eventhub: str
    connection_string: str | None = field(default=None, repr=False)


def resolve_target(*, namespace: str | None, eventhub: str | None, connection_string: str | None) -> Target:
    """Work out the hub from the flags; a connection string may name the namespace and hub.

    Raises:
        ConfigError: Neither a namespace nor a connection string, no hub, a malformed
            connection string, or flags that disagree with it. The message never holds
            the connection string.
    """
    fqdn = _fully_qualified(namespace) if namespace else None
    if connection_string:
        try:
            parts = parse_connection_string(connection_string)
        except ValueError:
            raise ConfigError(
                "the Event Hubs connection string is malformed (expected Endpoint=sb://...;"
                "SharedAccessKeyName=...;SharedAccessKey=...[;EntityPath=...])"
            ) from None
        if fqdn and fqdn != parts.fully_qualified_namespace:
            raise ConfigError(
                f"--namespace {namespace} is not the connection string's {parts.fully_qualified_namespace}"
            )
        if eventhub and parts.eventhub_name and eventhub != parts.eventhub_name:
            raise ConfigError(f"--eventhub {eventhub} is not the connection string's {parts.eventhub_name}")
        hub = eventhub or parts.eventhub_name
        if not hub:
            raise ConfigError("the connection string names no event hub (EntityPath): pass --eventhub")
        return Target(parts.fully_qualified_namespace, hub, connection_string)
    if not fqdn:
        raise ConfigError(
            "pass --namespace (signs in with DefaultAzureCredential, or --client-id), "
            "or --connection-string / EVENTHUB_CONNECTION_STRING"
        )
    if not eventhub:
        raise ConfigError("pass --eventhub")
    return Target(fqdn, eventhub)


def _fully_qualified(namespace: str) -> str:
    name = namespace.removeprefix("sb://").rstrip("/")
    return name if "." in name else f"{name}.servicebus.windows.net"


def connect(target: Target, *, client_id: str | None = None, retry_total: int = 3) -> EventHubProducerClient:
    """Build the producer client for ``target``, signing in first when it uses an identity.

    Args:
        target: From ``resolve_target``.
        client_id: A user-assigned managed identity's client id; None uses
            ``DefaultAzureCredential``. Ignored with a connection string.
        retry_total: Retries the SDK makes inside one call, after lost connections and
            links, before the producer sees the failure.

    Raises:
        EventHubRefused: The identity cannot get a token for Event Hubs.
    """
    if target.connection_string:
        return EventHubProducerClient.from_connection_string(
            target.connection_string, eventhub_name=target.eventhub, retry_total=retry_total, **_SDK_BACKOFF
        )
    credential = _credential(client_id)
    return EventHubProducerClient(
        target.namespace, target.eventhub, credential, retry_total=retry_total, **_SDK_BACKOFF
    )


def _credential(client_id: str | None) -> TokenCredential:
    from azure.core.exceptions import ClientAuthenticationError

    # Imported when used: msal and its friends take a while to load.
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    credential: TokenCredential = (
        ManagedIdentityCredential(client_id=client_id) if client_id else DefaultAzureCredential()
    )
    try:
        # Fails here, once and clearly, instead of inside every send's retries.
        credential.get_token(EVENTHUBS_SCOPE)
    except ClientAuthenticationError as exc:
        raise EventHubRefused(
            f"could not sign in to Event Hubs: {first_line(exc)} (run `az login`, pass --client-id for a "
            "user-assigned managed identity, or use --connection-string)"
        ) from exc
    return credential


def produce(
    target: Target,
    *,
    events: int,
    rate: float,
    seed: int = 7,
    defect_rate: float = 0.0,
    client_id: str | None = None,
    max_batch_bytes: int | None = None,
    attempts: int = 5,
    progress_every: float = 5.0,
    out: TextIO | None = None,
) -> Report:
    """Send ``events`` generated activity events to ``target`` at ``rate`` a second.

    Args:
        target: From ``resolve_target``.
        events: How many to send.
        rate: Events a second.
        seed: Seed of the events; the same seed, count and rate send the same log_ids.
        defect_rate: Fraction of events carrying a defect kind, 0 to 1.
        client_id: A user-assigned managed identity's client id, for identity sign-in.
        max_batch_bytes: Batch size limit; None takes the hub's.
        attempts: Sends of one batch before a transient failure ends the run.
        progress_every: Seconds between progress lines.
        out: Where progress goes (stderr by default).

    Returns:
        What was sent.

    Raises:
        EventTooLarge: An event does not fit in an empty batch.
        EventHubRefused: Signing in failed, or the hub refused a batch for good.
        EventHubUnavailable: A batch kept failing transiently for every attempt.
    """
    out = out or sys.stderr
    clock = Clock()
    # Build the stream first: bad arguments fail before anything connects.
    stream = activity_events(
        events,
        # A window's events go out as it opens, up to a window before they are due, so
        # their times start a window early: each event_time keeps its lag behind the
        # moment the hub enqueues it, as in a Capture file.
        start=clock.now() - dt.timedelta(seconds=WINDOW_SECONDS),
        interval_ms=1000 / rate,
        seed=seed,
        defect_rate=defect_rate,
    )
    defects = f", {defect_rate:.0%} with defects" if defect_rate else ""
    print(
        f"sending {events:,} events (seed {seed}{defects}) to {target.namespace}/{target.eventhub} "
        f"at {rate:g} events/s",
        file=out,
        flush=True,
    )
    with connect(target, client_id=client_id) as client:
        producer = Producer(
            client,
            rate=rate,
            attempts=attempts,
            max_batch_bytes=max_batch_bytes,
            progress_every=progress_every,
            clock=clock,
            out=out,
        )
        return producer.run(stream, events)
