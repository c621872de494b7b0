"""Packing events into Event Hubs batches: one partition key per batch, each filled to its limit."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from azure.eventhub import EventData, EventDataBatch

from shared.dev.generator import ProducedEvent
from shared.errors import EventTooLarge


class BatchSender(Protocol):
    """What the producer uses of ``azure.eventhub.EventHubProducerClient``."""

    def create_batch(
        self, *, partition_key: str | None = None, max_size_in_bytes: int | None = None
    ) -> EventDataBatch: ...

    def send_batch(self, event_data_batch: EventDataBatch, *, timeout: float | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class Packed:
    """One batch ready to send and the events in it, in the order they were added."""

    batch: EventDataBatch
    events: tuple[ProducedEvent, ...]

    @property
    def partition_key(self) -> str:
        return self.events[0].partition_key


def pack(events: Iterable[ProducedEvent], new_batch: Callable[[str], EventDataBatch]) -> Iterator[Packed]:
    """Put events into batches of one partition key each, every batch as full as it gets.

    Keys come in the order they are first seen and a key's events keep their order. A
    batch is sent on when ``EventDataBatch.add`` refuses the next event for size.

    Args:
        events: The events to pack.
        new_batch: Makes an empty batch for a partition key (``create_batch``).

    Returns:
        The batches, lazily; each event is in exactly one.

    Raises:
        EventTooLarge: An event does not fit in an empty batch.
    """
    groups: dict[str, list[ProducedEvent]] = {}
    for event in events:
        groups.setdefault(event.partition_key, []).append(event)
    for key, group in groups.items():
        batch = new_batch(key)
        members: list[ProducedEvent] = []
        for event in group:
            data = EventData(event.body)
            if not _added(batch, data):
                if not members:
                    raise _too_large(event, batch)
                yield Packed(batch, tuple(members))
                batch, members = new_batch(key), []
                if not _added(batch, data):
                    raise _too_large(event, batch)
            members.append(event)
        if members:
            yield Packed(batch, tuple(members))


def _added(batch: EventDataBatch, data: EventData) -> bool:
    try:
        batch.add(data)
    except ValueError:  # the SDK's way of saying the batch is full
        return False
    return True


def _too_large(event: ProducedEvent, batch: EventDataBatch) -> EventTooLarge:
    name = f"log_id {event.log_ids[0]}" if event.log_ids else f"a {event.kind} event"
    return EventTooLarge(
        f"{name} of user {event.partition_key} ({len(event.body):,} bytes of body) does not fit in an "
        f"empty batch of {batch.max_size_in_bytes:,} bytes; raise --max-batch-bytes "
        "(the hub takes up to 256 KB on Basic, 1 MB on Standard and above)"
    )
