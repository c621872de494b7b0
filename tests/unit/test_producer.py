"""The Event Hubs producer: size-filled one-key batches, pacing, progress and retries.

No Event Hub is reachable here, so ``FakeHub`` stands in for ``EventHubProducerClient``:
its ``create_batch`` returns the SDK's real ``EventDataBatch`` (built without a link, as
the client builds it once it knows the link's size limit), and its ``send_batch`` encodes
the batch with the SDK's own AMQP encoder and decodes what would go on the wire. Failures
are the exceptions the SDK's own error mapping makes of AMQP errors.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from azure.eventhub import EventData, EventDataBatch
from azure.eventhub._pyamqp import error as amqp
from azure.eventhub._pyamqp._decode import decode_payload
from azure.eventhub._pyamqp._encode import encode_payload
from azure.eventhub._transport._pyamqp_transport import PyamqpTransport
from azure.eventhub.exceptions import EventHubError, OperationTimeoutError

from shared.dev.generator import ProducedEvent, activity_events
from shared.dev.producer import (
    Clock,
    Producer,
    Target,
    connect,
    is_transient,
    may_have_been_stored,
    pack,
    register,
    resolve_target,
)
from shared.errors import ConfigError, EventHubRefused, EventHubUnavailable, EventTooLarge

START = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)
KEY = "SharedAccessKey=c2VjcmV0LWtleS1ub3QtdG8tbG9n"
CONNECTION = (
    f"Endpoint=sb://smoke-ns.servicebus.windows.net/;SharedAccessKeyName=send;{KEY};EntityPath=activity"
)


# --------------------------------------------------------------------------- stand-ins


class FakeClock:
    """Time that moves only when the producer sleeps or a send takes time."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds

    def clock(self) -> Clock:
        return Clock(monotonic=lambda: self.t, sleep=self.sleep, now=lambda: START)


@dataclass(frozen=True)
class Delivery:
    """One batch as the hub received it: the batch's key, and each message's key and body."""

    at: float
    key: str | None
    messages: list[tuple[str | None, bytes]]


@dataclass
class FakeHub:
    """Speaks ``EventHubProducerClient.create_batch`` and ``send_batch``; keeps what arrived.

    ``failures`` are raised by the next sends in turn: ``(exception, stored)``, where
    ``stored`` means the hub kept the batch before the failure reached the producer (an
    acknowledgement lost with the connection).
    """

    max_size: int = 1_048_576
    failures: list[tuple[Exception, bool]] = field(default_factory=list)
    clock: FakeClock | None = None
    send_seconds: float = 0.0
    deliveries: list[Delivery] = field(default_factory=list)
    attempts: int = 0

    def create_batch(
        self, *, partition_key: str | None = None, max_size_in_bytes: int | None = None
    ) -> EventDataBatch:
        if max_size_in_bytes and max_size_in_bytes > self.max_size:  # as the client refuses it
            raise ValueError(f"Max message size: {max_size_in_bytes} is too large")
        return EventDataBatch(
            max_size_in_bytes=max_size_in_bytes or self.max_size, partition_key=partition_key
        )

    def send_batch(self, event_data_batch: EventDataBatch, *, timeout: float | None = None) -> None:
        self.attempts += 1
        if self.clock is not None:
            self.clock.t += self.send_seconds
        failure, stored = self.failures.pop(0) if self.failures else (None, True)
        if stored:
            self.deliveries.append(self._wire(event_data_batch))
        if failure is not None:
            raise failure

    def _wire(self, batch: EventDataBatch) -> Delivery:
        payload = bytearray()
        encode_payload(payload, batch._message)  # what the link would transfer
        message = decode_payload(memoryview(payload))
        inner = [decode_payload(memoryview(data)) for data in message.data]
        return Delivery(
            self.clock.t if self.clock else 0.0,
            _key(message.message_annotations),
            [(_key(m.message_annotations), b"".join(m.data)) for m in inner],
        )

    def bodies(self) -> list[bytes]:
        return [body for d in self.deliveries for _, body in d.messages]


def _key(annotations: dict[bytes, Any] | None) -> str | None:
    value = (annotations or {}).get(b"x-opt-partition-key")
    return value.decode() if isinstance(value, bytes) else value


class _Link:
    """What the SDK's error mapping closes after a failure."""

    _name = "test-link"

    def _close_handler(self) -> None:
        pass

    def _close_connection(self) -> None:
        pass


def sdk_error(error: Exception) -> EventHubError:
    """The exception ``send_batch`` raises for an AMQP failure, mapped by the SDK itself."""
    try:
        mapped = PyamqpTransport._handle_exception(error, _Link())
    except EventHubError as raised:
        return raised
    assert isinstance(mapped, EventHubError)
    return mapped


def server_busy() -> EventHubError:
    return sdk_error(amqp.MessageException(b"com.microsoft:server-busy", description="throughput exceeded"))


def link_detached() -> EventHubError:
    return sdk_error(amqp.AMQPLinkError(amqp.ErrorCondition.LinkDetachForced, description="link detached"))


def unauthorized() -> EventHubError:
    return sdk_error(amqp.AuthenticationException(amqp.ErrorCondition.UnauthorizedAccess, description="no"))


def events(n: int, *, defect_rate: float = 0.0, seed: int = 5) -> list[ProducedEvent]:
    return list(activity_events(n, start=START, interval_ms=10, seed=seed, defect_rate=defect_rate))


def producer(hub: FakeHub, clock: FakeClock, out: io.StringIO, **kwargs: Any) -> Producer:
    options: dict[str, Any] = {"rate": 100.0, "progress_every": 5.0} | kwargs
    return Producer(hub, clock=clock.clock(), out=out, **options)


# --------------------------------------------------------------------------- batch composition


def test_each_batch_is_filled_until_add_refuses_the_next_event() -> None:
    sent = events(3_000)
    one_user = [e for e in sent if e.partition_key == sent[0].partition_key]
    assert len(one_user) > 40
    batches = list(pack(one_user, lambda key: EventDataBatch(max_size_in_bytes=2_000, partition_key=key)))
    assert len(batches) > 3
    for packed, following in itertools.pairwise(batches):
        assert packed.batch.size_in_bytes <= 2_000
        refill = EventDataBatch(max_size_in_bytes=2_000, partition_key=packed.partition_key)
        for event in packed.events:
            refill.add(EventData(event.body))
        with pytest.raises(ValueError, match="size limit"):
            refill.add(EventData(following.events[0].body))
    assert [e for p in batches for e in p.events] == one_user


def test_every_event_lands_in_exactly_one_batch_in_its_users_order() -> None:
    sent = events(2_000, defect_rate=0.1)
    hub, clock, out = FakeHub(max_size=4_096), FakeClock(), io.StringIO()
    hub.clock = clock
    report = producer(hub, clock, out, rate=500.0).run(sent, len(sent))
    assert Counter(hub.bodies()) == Counter(e.body for e in sent)
    assert report.new_log_ids == len({log_id for e in sent for log_id in e.log_ids})
    assert report.defective == sum(e.kind is not None for e in sent) > 0
    assert len(hub.bodies()) == len(sent)
    by_user: dict[str, list[bytes]] = {}
    for e in sent:
        by_user.setdefault(e.partition_key, []).append(e.body)
    arrived: dict[str | None, list[bytes]] = {}
    for d in hub.deliveries:
        arrived.setdefault(d.key, []).extend(body for _, body in d.messages)
    assert arrived == by_user


def test_an_event_larger_than_an_empty_batch_is_a_clear_error() -> None:
    sent = events(30)
    huge = ProducedEvent(b'{"pad":"' + b"x" * 3_000 + b'"}', sent[5].partition_key, ("big-log-id",), None)
    hub, clock, out = FakeHub(), FakeClock(), io.StringIO()
    with pytest.raises(
        EventTooLarge,
        match=r"log_id big-log-id .* \(3,010 bytes of body\) .* of 1,000 bytes; raise --max-batch-bytes",
    ):
        producer(hub, clock, out, rate=10.0, max_batch_bytes=1_000).run([*sent[:20], huge, *sent[20:]], 31)
    # Two windows went out; the third starts with the huge event, so it stopped there.
    assert Counter(hub.bodies()) == Counter(e.body for e in sent[:20])
    assert "sent 20/31 events" in out.getvalue()


def test_the_hubs_size_limit_is_the_default_and_a_larger_one_is_refused() -> None:
    hub, clock, out = FakeHub(max_size=262_144), FakeClock(), io.StringIO()
    producer(hub, clock, out).run(events(50), 50)
    assert hub.deliveries
    with pytest.raises(ValueError, match="too large"):
        producer(hub, clock, out, max_batch_bytes=1_048_576).run(events(5), 5)


# --------------------------------------------------------------------------- partition keys


def test_a_users_events_share_one_key_and_no_batch_mixes_keys() -> None:
    sent = events(3_000, defect_rate=0.05)
    hub, clock, out = FakeHub(), FakeClock(), io.StringIO()
    producer(hub, clock, out, rate=1_000.0).run(sent, len(sent))
    # Some malformed bodies ("42", "null") are sent by several users, so a body may have several keys.
    keys_of_body: dict[bytes, set[str]] = {}
    clean = {e.body for e in sent if e.kind is None}
    for e in sent:
        keys_of_body.setdefault(e.body, set()).add(e.partition_key)
    keys_of_user: dict[str, set[str]] = {}
    for delivery in hub.deliveries:
        assert delivery.key is not None
        for key, body in delivery.messages:
            assert key == delivery.key  # on every message of the batch
            assert key in keys_of_body[body]
            if body in clean:
                keys_of_user.setdefault(orjson.loads(body)["user_id"], set()).add(key)
    assert len(keys_of_user) > 50
    assert all(keys == {user} for user, keys in keys_of_user.items())
    assert len({d.key for d in hub.deliveries}) < len(hub.deliveries)  # users come back in later batches


def test_clean_events_are_keyed_by_the_user_id_in_their_body() -> None:
    for event in events(500):
        assert orjson.loads(event.body)["user_id"] == event.partition_key
        assert event.log_ids == (orjson.loads(event.body)["log_id"],)


# --------------------------------------------------------------------------- pacing and progress


def test_pacing_sends_rate_events_per_window_and_reports_that_rate() -> None:
    hub, clock, out = FakeHub(), FakeClock(), io.StringIO()
    hub.clock = clock
    report = producer(hub, clock, out, rate=50.0).run(events(500), 500)
    per_second = Counter(int(d.at) for d in hub.deliveries for _ in d.messages)
    assert per_second == dict.fromkeys(range(10), 50)
    assert clock.sleeps == [1.0] * 10
    assert report.events == 500
    assert report.elapsed == 10.0
    assert report.rate == 50.0


def test_slow_sends_shorten_the_sleeps_and_never_burst_to_catch_up() -> None:
    hub, clock, out = FakeHub(send_seconds=0.15), FakeClock(), io.StringIO()
    hub.clock = clock
    report = producer(hub, clock, out, rate=40.0).run(events(400, seed=9), 400)
    assert all(s < 1.0 for s in clock.sleeps)
    windows = Counter(int(d.at - 1e-9) for d in hub.deliveries for _ in d.messages)
    assert max(windows.values()) <= 40 + 1
    assert report.rate < 40.0


def test_a_fractional_rate_sends_one_event_every_few_windows() -> None:
    hub, clock, out = FakeHub(), FakeClock(), io.StringIO()
    hub.clock = clock
    report = producer(hub, clock, out, rate=0.5).run(events(3), 3)
    assert [d.at for d in hub.deliveries] == [0.0, 2.0, 4.0]
    assert report.elapsed == 5.0  # the end of the window the last event was due in


def test_progress_lines_show_events_batches_and_rate() -> None:
    hub, clock, out = FakeHub(), FakeClock(), io.StringIO()
    hub.clock = clock
    producer(hub, clock, out, rate=20.0, progress_every=2.0).run(events(200), 200)
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines[:5]] == ["40/200", "80/200", "120/200", "160/200", "200/200"]
    assert all(
        line.startswith("sent ") and ", 20.0 events/s (target 20), 0 batches retried" in line
        for line in lines[:4]
    )
    batches = int(lines[0].split()[4])
    assert batches == len([d for d in hub.deliveries if d.at < 2.0])
    assert lines[4].endswith(" in 10.0s")
    assert lines[-1].startswith("200 distinct valid log_ids: silver gains that many rows")


# --------------------------------------------------------------------------- retries


def test_a_throttled_batch_is_retried_and_is_not_counted_as_sent_twice() -> None:
    hub, clock, out = FakeHub(failures=[(server_busy(), False)]), FakeClock(), io.StringIO()
    report = producer(hub, clock, out, rate=1_000.0).run(events(40), 40)
    assert Counter(hub.bodies()) == Counter(e.body for e in events(40))
    assert (report.retried_batches, report.maybe_twice) == (1, 0)
    assert "failed: EventDataSendError: throughput exceeded; attempt 2/5 in 1.0s" in out.getvalue()
    assert clock.sleeps[0] == 1.0


def test_a_batch_stored_before_its_connection_dropped_is_reported_as_maybe_twice() -> None:
    hub, clock, out = FakeHub(failures=[(link_detached(), True)]), FakeClock(), io.StringIO()
    report = producer(hub, clock, out, rate=1_000.0).run(events(40), 40)
    first, again = hub.deliveries[0], hub.deliveries[1]
    assert first == again  # the very same batch, so the copies carry the same log_ids
    assert report.maybe_twice == len(first.messages) == report.retried_events
    assert report.events == 40  # acknowledged once, counted once
    assert "ConnectionLostError" in out.getvalue() and "may store it twice" in out.getvalue()
    assert f"{report.maybe_twice} of them may be in the hub twice" in out.getvalue()


def test_transient_failures_past_the_attempts_end_the_run_with_backoff() -> None:
    failures = [(OperationTimeoutError("Sending message timed out."), False)] * 3
    hub, clock, out = FakeHub(failures=list(failures)), FakeClock(), io.StringIO()
    with pytest.raises(EventHubUnavailable, match="failed 3 times, after 0 events"):
        producer(hub, clock, out, attempts=3).run(events(10), 10)
    assert clock.sleeps == [1.0, 2.0]
    assert hub.attempts == 3
    assert "was never acknowledged" in out.getvalue()


def test_a_permanent_refusal_stops_at_once_and_says_what_to_fix() -> None:
    hub, clock, out = FakeHub(failures=[(unauthorized(), False)]), FakeClock(), io.StringIO()
    with pytest.raises(EventHubRefused, match="Azure Event Hubs Data Sender"):
        producer(hub, clock, out).run(events(10), 10)
    assert hub.attempts == 1
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("error", "transient", "stored"),
    [
        (amqp.MessageException(b"com.microsoft:server-busy", description="busy"), True, False),
        (amqp.MessageException(b"com.microsoft:timeout", description="slow"), True, True),
        (amqp.MessageSendFailed(amqp.ErrorCondition.InternalError, description="fault"), True, True),
        (amqp.MessageException(amqp.ErrorCondition.ClientError, description="not running"), True, True),
        (amqp.AMQPLinkError(amqp.ErrorCondition.LinkDetachForced, description="detached"), True, True),
        (amqp.AMQPConnectionError(amqp.ErrorCondition.SocketError, description="reset"), True, True),
        (TimeoutError("timed out"), True, True),
        (OSError("network unreachable"), True, True),
        (amqp.MessageSendFailed(amqp.ErrorCondition.LinkMessageSizeExceeded, description="big"), False, True),
        (amqp.MessageSendFailed(amqp.ErrorCondition.NotFound, description="no hub"), False, True),
        (amqp.AMQPLinkError(b"com.microsoft:entity-disabled", description="disabled"), False, True),
        (amqp.AuthenticationException(amqp.ErrorCondition.UnauthorizedAccess, description="no"), False, True),
    ],
)
def test_what_the_sdk_raises_is_classified(error: Exception, transient: bool, stored: bool) -> None:
    mapped = sdk_error(error)
    assert is_transient(mapped) is transient
    assert may_have_been_stored(mapped) is stored


def test_errors_that_are_not_the_sdks_are_never_retried() -> None:
    assert not is_transient(ValueError("a bug"))
    assert is_transient(OperationTimeoutError("Sending message timed out."))


# --------------------------------------------------------------------------- target and command


def test_a_namespace_name_is_fully_qualified() -> None:
    assert resolve_target(namespace="smoke-ns", eventhub="activity", connection_string=None) == Target(
        "smoke-ns.servicebus.windows.net", "activity"
    )
    fqdn = resolve_target(
        namespace="sb://ns.servicebus.chinacloudapi.cn/", eventhub="h", connection_string=None
    )
    assert fqdn.namespace == "ns.servicebus.chinacloudapi.cn"


def test_a_connection_string_names_the_hub_and_never_shows() -> None:
    target = resolve_target(namespace=None, eventhub=None, connection_string=CONNECTION)
    assert (target.namespace, target.eventhub) == ("smoke-ns.servicebus.windows.net", "activity")
    assert KEY not in repr(target)
    for namespace, eventhub in (("other-ns", None), (None, "other-hub")):
        with pytest.raises(ConfigError) as refused:
            resolve_target(namespace=namespace, eventhub=eventhub, connection_string=CONNECTION)
        assert KEY not in str(refused.value)


@pytest.mark.parametrize(
    ("namespace", "eventhub", "connection", "message"),
    [
        (None, "h", None, "pass --namespace"),
        ("ns", None, None, "pass --eventhub"),
        (None, "h", f"Endpoint=nowhere;{KEY}", "malformed"),
        (None, None, CONNECTION.replace(";EntityPath=activity", ""), "names no event hub"),
    ],
)
def test_incomplete_or_malformed_targets_are_refused(
    namespace: str | None, eventhub: str | None, connection: str | None, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        resolve_target(namespace=namespace, eventhub=eventhub, connection_string=connection)
    assert KEY not in str(refused.value)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m shared")
    register(root.add_subparsers(title="commands"))
    return root


def test_the_produce_command_takes_the_smoke_test_flags() -> None:
    flags = "--namespace ns --eventhub hub --events 5000 --rate 250 --defect-rate 0.02 --client-id abc"
    args = parser().parse_args(["produce", *flags.split()])
    assert (args.namespace, args.eventhub, args.events, args.rate) == ("ns", "hub", 5000, 250.0)
    assert (args.defect_rate, args.client_id, args.connection_string, args.seed) == (0.02, "abc", None, 7)
    assert callable(args.run)


@pytest.mark.parametrize(
    "flags", ["--rate 0", "--rate -3", "--events -1", "--defect-rate 1.5", "--attempts 0"]
)
def test_out_of_range_flags_are_usage_errors(flags: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["produce", *flags.split()])
    assert exited.value.code == 2
    assert "must be" in capsys.readouterr().err


def test_a_connection_string_from_stdin_is_used_and_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(CONNECTION + "\n"))
    args = parser().parse_args("produce --connection-string - --namespace elsewhere".split())
    with pytest.raises(ConfigError, match="is not the connection string's smoke-ns") as refused:
        args.run(args)
    assert KEY not in str(refused.value)


def test_the_real_client_fits_the_producer_and_an_unreachable_hub_is_a_clear_error() -> None:
    # RFC 6761: a .invalid name never resolves, so no connection is ever made.
    unreachable = CONNECTION.replace("smoke-ns.servicebus.windows.net", "tributary-smoke.invalid")
    target = resolve_target(namespace=None, eventhub=None, connection_string=unreachable)
    clock, out = FakeClock(), io.StringIO()
    with connect(target, retry_total=0) as client:
        with pytest.raises(
            EventHubUnavailable, match=r"opening a batch for key u-.* failed 2 times.*ConnectError"
        ):
            Producer(client, rate=10.0, attempts=2, clock=clock.clock(), out=out).run(events(3), 3)
    assert clock.sleeps == [1.0]  # the producer's backoff, between its two attempts
    assert "sent 0/3 events" in out.getvalue()
    assert KEY not in out.getvalue()


def test_bad_arguments_fail_before_anything_connects() -> None:
    with pytest.raises(ValueError, match="interval_ms"):
        activity_events(10, start=START, interval_ms=0)
    with pytest.raises(ValueError, match="rate"):
        Producer(FakeHub(), rate=0)
