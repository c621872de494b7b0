"""Which failed sends are worth retrying, and which may have stored the batch anyway.

The SDK names the AMQP condition of a failure in ``EventHubError.error``, without its
``amqp:`` or ``com.microsoft:`` prefix (``server-busy``, ``link:detach-forced``).
"""

from __future__ import annotations

from azure.eventhub.exceptions import (
    AuthenticationError,
    ClientClosedError,
    EventDataError,
    EventDataSendError,
    EventHubError,
)

#: Refusals of a send (``EventDataSendError``) that the service lifts by itself: throttling,
#: its own timeouts and faults; ``client-error`` and ``unknown-error`` are how the AMQP client
#: reports a delivery its connection dropped.
TRANSIENT_SEND_ERRORS = frozenset(
    {"server-busy", "timeout", "internal-error", "client-error", "unknown-error"}
)
#: Conditions no retry fixes, whichever exception carries them: a missing right, hub or
#: entity, a disabled or revoked sender, an event the hub will not take.
PERMANENT_CONDITIONS = frozenset(
    {
        "unauthorized-access",
        "not-found",
        "not-allowed",
        "resource-deleted",
        "entity-disabled",
        "publisher-revoked",
        "link:message-size-exceeded",
        "decode-error",
        "invalid-field",
        "argument-error",
        "argument-out-of-range",
    }
)
# Throttling is decided before the hub stores anything; any other failure may come after.
_REFUSED_UNSTORED = frozenset({"server-busy"})


def is_transient(exc: BaseException) -> bool:
    """Whether a failed ``send_batch`` is worth retrying with the same batch.

    Transient: a lost connection or link (``ConnectionLostError``), a failed connection
    other than sign-in (``ConnectError``), a send timeout (``OperationTimeoutError``), a
    refusal in ``TRANSIENT_SEND_ERRORS`` (``EventDataSendError``), and the SDK's wrapper
    for socket and transport faults (a plain ``EventHubError``), unless the condition is
    in ``PERMANENT_CONDITIONS``. Permanent as well: sign-in or a missing role
    (``AuthenticationError``), a closed client, event data the client refuses
    (``EventDataError``), any other refusal, and exceptions not from the SDK (bugs).
    """
    if isinstance(exc, AuthenticationError | ClientClosedError | EventDataError):
        return False
    if not isinstance(exc, EventHubError) or exc.error in PERMANENT_CONDITIONS:
        return False
    if isinstance(exc, EventDataSendError):
        return exc.error in TRANSIENT_SEND_ERRORS
    return True


def may_have_been_stored(exc: BaseException) -> bool:
    """Whether the hub may hold a batch whose send failed with ``exc``: all but a throttle."""
    return not (isinstance(exc, EventDataSendError) and exc.error in _REFUSED_UNSTORED)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (the SDK appends details on more lines)."""
    return (str(exc).strip().splitlines() or [""])[0]


def advice(exc: BaseException) -> str:
    """What to fix, for the refusals whose fix is known; empty otherwise."""
    if isinstance(exc, AuthenticationError) or (
        isinstance(exc, EventHubError) and exc.error == "unauthorized-access"
    ):
        return (
            " (the identity needs the 'Azure Event Hubs Data Sender' role on the hub or namespace; "
            "a connection string needs a policy with Send)"
        )
    if isinstance(exc, EventHubError) and exc.error in ("not-found", "entity-disabled"):
        return " (check --namespace and --eventhub, and that the hub is active)"
    return ""
