"""The producer loop: pacing windows, batch sends with retries, and the running report."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TextIO

from azure.eventhub import EventDataBatch
from azure.eventhub.exceptions import EventHubError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from shared.dev.generator import ProducedEvent
from shared.dev.producer.batches import BatchSender, Packed, pack
from shared.dev.producer.failures import advice, first_line, is_transient, may_have_been_stored
from shared.errors import EventHubRefused, EventHubUnavailable

#: Seconds per pacing window: the rate holds over every window.
WINDOW_SECONDS = 1.0


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class Clock:
    """Time as the producer reads it; tests pass one that only moves when told."""

    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], dt.datetime] = _utc_now


@dataclass(slots=True)
class Report:
    """What a run has sent so far; the producer updates it batch by batch."""

    target_events: int
    target_rate: float
    events: int = 0
    """Events the hub acknowledged."""
    batches: int = 0
    body_bytes: int = 0
    partition_keys: set[str] = field(default_factory=set)
    new_log_ids: int = 0
    """Distinct valid log_ids sent: the rows silver gains (re-sent duplicates not counted)."""
    defective: int = 0
    retried_batches: int = 0
    retried_events: int = 0
    maybe_twice: int = 0
    """Events of batches re-sent after a failure that may have stored them (at-least-once)."""
    unacknowledged: int = 0
    """Events of the batch that ended the run: the hub may hold them, or not."""
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / self.elapsed if self.elapsed > 0 else 0.0

    def record(self, packed: Packed) -> None:
        """Count one acknowledged batch."""
        self.batches += 1
        for event in packed.events:
            self.events += 1
            self.body_bytes += len(event.body)
            self.partition_keys.add(event.partition_key)
            if event.kind is not None:
                self.defective += 1
            if event.kind != "duplicate_in_file":
                self.new_log_ids += len(event.log_ids)

    def progress(self) -> str:
        """One line: events, batches, the rate achieved and retries."""
        per_batch = self.events / self.batches if self.batches else 0.0
        return (
            f"sent {self.events:,}/{self.target_events:,} events in {self.batches:,} batches "
            f"({per_batch:.1f} a batch), {self.rate:,.1f} events/s (target {self.target_rate:,g}), "
            f"{self.retried_batches:,} batches retried"
        )

    def summary(self) -> str:
        """The closing lines: what was sent and what silver should now hold."""
        lines = [
            self.progress() + f" in {self.elapsed:.1f}s",
            f"{self.body_bytes:,} bytes of body, {len(self.partition_keys):,} partition keys (users), "
            f"{self.defective:,} events with a defect",
            f"{self.new_log_ids:,} distinct valid log_ids: silver gains that many rows "
            "unless they were sent before",
        ]
        if self.retried_batches:
            lines.append(
                f"{self.retried_events:,} events were in retried batches; {self.maybe_twice:,} of them "
                "may be in the hub twice (Event Hubs is at-least-once); silver keeps one row per log_id"
            )
        if self.unacknowledged:
            lines.append(
                f"the batch that failed ({self.unacknowledged:,} events) was never acknowledged: "
                "the hub may hold it or not"
            )
        return "\n".join(lines)


class Producer:
    """Sends events in paced, size-filled, one-key batches, retrying transient failures.

    Args:
        sender: An ``EventHubProducerClient``, or anything with its ``create_batch`` and
            ``send_batch``.
        rate: Events a second, averaged over each window.
        attempts: Sends of one batch before a transient failure ends the run.
        max_batch_bytes: Batch size limit; None takes the link's maximum message size.
        window: Seconds per pacing window.
        progress_every: Seconds between progress lines.
        clock: Where time is read and slept.
        out: Where progress goes (stderr by default).

    Raises:
        ValueError: For a rate, window or interval that is not positive, or attempts < 1.
    """

    def __init__(
        self,
        sender: BatchSender,
        *,
        rate: float,
        attempts: int = 5,
        max_batch_bytes: int | None = None,
        window: float = WINDOW_SECONDS,
        progress_every: float = 5.0,
        clock: Clock | None = None,
        out: TextIO | None = None,
    ) -> None:
        if not (rate > 0 and window > 0 and progress_every > 0) or attempts < 1:
            raise ValueError("rate, window and progress_every must be > 0 and attempts >= 1")
        self._sender = sender
        self._rate = rate
        self._attempts = attempts
        self._max_batch_bytes = max_batch_bytes
        self._window = window
        self._progress_every = progress_every
        self._clock = clock or Clock()
        self._out = out or sys.stderr
        self.report = Report(0, rate)

    def run(self, events: Iterable[ProducedEvent], count: int) -> Report:
        """Send ``count`` events from ``events``; print progress and, at the end, a summary.

        The summary is printed however the run ends, so an error or Ctrl-C still says
        what was sent.

        Raises:
            EventTooLarge: An event does not fit in an empty batch.
            EventHubRefused: The hub refused a batch for a reason no retry fixes.
            EventHubUnavailable: A batch kept failing transiently for every attempt.
        """
        clock, report = self._clock, Report(count, self._rate)
        self.report = report
        source = iter(events)
        started = clock.monotonic()
        next_progress = started + self._progress_every
        taken, window = 0, 0
        try:
            while taken < count:
                window += 1
                # Events due by the end of this window; the epsilon keeps 0.3 * 10 from
                # rounding up to 4.
                due = min(count, math.ceil(self._rate * self._window * window - 1e-9))
                chunk = list(itertools.islice(source, due - taken))
                exhausted = len(chunk) < due - taken
                taken = due
                for packed in pack(chunk, self._new_batch):
                    self._send(packed)
                if exhausted:
                    break
                # Even after the last window: its events were due by its end, so the rate
                # reported is the rate kept.
                if (delay := started + window * self._window - clock.monotonic()) > 0:
                    clock.sleep(delay)
                now = clock.monotonic()
                report.elapsed = now - started
                if now >= next_progress and taken < count:
                    self._print(report.progress())
                    next_progress = now + self._progress_every
        finally:
            report.elapsed = clock.monotonic() - started
            self._print(report.summary())
        return report

    def _new_batch(self, partition_key: str) -> EventDataBatch:
        # The first call opens the link to learn its size limit, so it can fail as a send can.
        return self._retrying(
            f"opening a batch for key {partition_key}",
            lambda: self._sender.create_batch(
                partition_key=partition_key, max_size_in_bytes=self._max_batch_bytes
            ),
        )

    def _send(self, packed: Packed) -> None:
        failures: list[BaseException] = []
        what = f"batch {self.report.batches + 1} ({len(packed.events)} events, key {packed.partition_key})"
        try:
            self._retrying(what, lambda: self._sender.send_batch(packed.batch), failures)
        except (EventHubRefused, EventHubUnavailable):
            self.report.unacknowledged = len(packed.events)
            raise
        self._count_retries(packed, failures)
        self.report.record(packed)

    def _retrying[T](
        self, what: str, call: Callable[[], T], failures: list[BaseException] | None = None
    ) -> T:
        """Run ``call`` until it succeeds, retrying transient SDK errors with backoff.

        ``failures`` collects each failed send; a send that fails may have been stored.
        """

        def before_retry(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            assert exc is not None  # tenacity sleeps only after a failed attempt
            stored = ""
            if failures is not None:
                failures.append(exc)
                if may_have_been_stored(exc):
                    stored = " (it may have been stored: the retry may store it twice)"
            wait = state.next_action.sleep if state.next_action else 0.0
            self._print(
                f"{what} failed: {type(exc).__name__}: {first_line(exc)}{stored}; "
                f"attempt {state.attempt_number + 1}/{self._attempts} in {wait:.1f}s"
            )

        retrying = Retrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=1, min=1, max=30),
            retry=retry_if_exception(is_transient),
            sleep=self._clock.sleep,
            before_sleep=before_retry,
            reraise=True,
        )
        try:
            return retrying(call)
        except EventHubError as exc:
            sent = f"after {self.report.events:,} events in {self.report.batches:,} batches"
            reason = f"{type(exc).__name__}: {first_line(exc)}"
            if is_transient(exc):
                times = "once" if self._attempts == 1 else f"{self._attempts} times"
                raise EventHubUnavailable(f"{what} failed {times}, {sent}; last: {reason}") from exc
            raise EventHubRefused(f"Event Hubs refused {what} {sent}: {reason}{advice(exc)}") from exc

    def _count_retries(self, packed: Packed, failures: list[BaseException]) -> None:
        if failures:
            self.report.retried_batches += 1
            self.report.retried_events += len(packed.events)
            if any(may_have_been_stored(exc) for exc in failures):
                self.report.maybe_twice += len(packed.events)

    def _print(self, line: str) -> None:
        print(line, file=self._out, flush=True)
