"""``python -m shared produce``: its flags, and the run they ask for."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add the ``produce`` command to ``python -m shared``.

    Args:
        subparsers: What ``ArgumentParser.add_subparsers`` returned.

    Returns:
        The command's parser.
    """
    parser = subparsers.add_parser(
        "produce",
        help="send synthetic activity events to a real Event Hub (a deployment smoke test)",
        description="Send the generator's user-activity events to an Event Hub, keyed by user_id, "
        "in size-filled batches paced to --rate. Signs in with DefaultAzureCredential "
        "(az login), a managed identity (--client-id), or a connection string "
        "(--connection-string, or the EVENTHUB_CONNECTION_STRING setting). The same --seed, "
        "--events and --rate send the same log_ids, which silver keeps once.",
    )
    parser.add_argument("--namespace", help="Event Hubs namespace: NAME or NAME.servicebus.windows.net")
    parser.add_argument("--eventhub", help="event hub name (or the connection string's EntityPath)")
    parser.add_argument(
        "--events", type=_at_least(0, int), default=1000, help="events to send (default 1000)"
    )
    parser.add_argument(
        "--rate", type=_positive, default=100.0, help="events a second, averaged per second (default 100)"
    )
    parser.add_argument(
        "--defect-rate", type=_fraction, default=0.0, help="fraction of events with a defect (default 0)"
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument(
        "--connection-string",
        metavar="CS",
        help="sign in with a connection string instead of an identity; '-' reads it from stdin "
        "(better than a value here, which the process list shows)",
    )
    parser.add_argument("--client-id", help="client id of a user-assigned managed identity to sign in as")
    parser.add_argument(
        "--max-batch-bytes", type=_at_least(1, int), help="batch size limit (default: the hub's maximum)"
    )
    parser.add_argument(
        "--attempts", type=_at_least(1, int), default=5, help="sends of a failing batch (default 5)"
    )
    parser.add_argument(
        "--progress-every", type=_positive, default=5.0, help="seconds between progress lines (default 5)"
    )
    parser.set_defaults(run=_run)
    return parser


def _run(args: argparse.Namespace) -> int:
    # Here, not at import: registering the flags must not load azure-eventhub for every command.
    from shared.dev.producer.hub import produce, resolve_target

    connection = args.connection_string
    if connection == "-":
        # Typed at a terminal it is not echoed; piped, it is read as is.
        connection = (
            getpass.getpass("connection string: ") if sys.stdin.isatty() else sys.stdin.readline()
        ).strip()
    elif connection is None:
        connection = _settings_connection()
    target = resolve_target(namespace=args.namespace, eventhub=args.eventhub, connection_string=connection)
    try:
        produce(
            target,
            events=args.events,
            rate=args.rate,
            seed=args.seed,
            defect_rate=args.defect_rate,
            client_id=args.client_id,
            max_batch_bytes=args.max_batch_bytes,
            attempts=args.attempts,
            progress_every=args.progress_every,
        )
    except KeyboardInterrupt:
        return 130  # the summary of what was sent is already printed
    return 0


def _settings_connection() -> str | None:
    from shared.settings import Settings

    # Only the one setting is wanted; the storage default keeps from_env from asking for more.
    defaults = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    return Settings.from_env(defaults=defaults).eventhub_connection_string


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def _at_least(least: int, kind: Callable[[str], int]) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = kind(text)
        if value < least:
            raise argparse.ArgumentTypeError(f"must be >= {least}, not {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse
