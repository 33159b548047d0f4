"""The event consumer against a real broker: typed events to the handler, acknowledged only after it
returned, redelivered after it raised, parked in ``<queue>.dead`` after the delivery limit or when the
body does not parse, deduplicated on ``event_id``."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pika
import pytest
from order_worker_client import EventConsumer, OrderEvent, RecentEvents
from order_worker_client.topology import events_exchange_arguments

from tests.client.unit.conftest import Names, admin

pytestmark = pytest.mark.rabbitmq


def _event(**overrides: Any) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "event_id": str(uuid.uuid4()),
        "type": "created",
        "seq": 1,
        "occurred_at": "2026-12-07T01:00:00.000Z",
        "command_id": f"cl-{uuid.uuid4().hex}",
        "provider": "itrx",
        "status": "processing",
        "source": "create",
        "some_future_field": {"ignored": True},
        **overrides,
    }


def _publish(broker_url: str, exchange: str, *bodies: dict[str, Any] | bytes) -> None:
    connection = admin(broker_url)
    channel = connection.channel()
    channel.confirm_delivery()
    for body in bodies:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        message_id = None if isinstance(body, bytes) else body["event_id"]
        channel.basic_publish(
            exchange, "order.itrx.created", raw, pika.BasicProperties(message_id=message_id), mandatory=True
        )
    connection.close()


def _depth(broker_url: str, queue: str) -> int:
    connection = admin(broker_url)
    try:
        count: int = connection.channel().queue_declare(queue, passive=True).method.message_count
        return count
    finally:
        connection.close()


def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextmanager
def running(consumer: EventConsumer) -> Iterator[EventConsumer]:
    failure: list[BaseException] = []

    def run() -> None:
        try:
            consumer.run()
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield consumer
    finally:
        consumer.stop()
        thread.join(15)
    assert not thread.is_alive()
    assert not failure, failure


def _bound(broker_url: str, consumer: EventConsumer) -> None:
    """Declares and binds the consumer's queue, so that events published before it runs wait there."""
    connection = admin(broker_url)
    consumer.declare(connection.channel())
    connection.close()


def test_the_handler_gets_typed_events_and_one_that_raised_gets_it_again(
    broker_url: str, names: Names
) -> None:
    exchange, queue = names("events"), names("consumer")
    names("consumer.dead")
    calls: Counter[str] = Counter()
    received: list[OrderEvent] = []

    def handler(event: OrderEvent) -> None:
        calls[event.event_id] += 1
        if event.seq == 2 and calls[event.event_id] == 1:
            raise RuntimeError("a transient failure")
        received.append(event)

    consumer = EventConsumer(broker_url, queue, handler, exchange=exchange, retry_delay=0.05)
    _bound(broker_url, consumer)
    events = [_event(seq=seq) for seq in (1, 2, 3)]
    _publish(broker_url, exchange, *events)
    with running(consumer):
        _until(lambda: len(received) == 3, 30, "three events handled")
    assert all(isinstance(event, OrderEvent) for event in received)
    assert {event.event_id for event in received} == {e["event_id"] for e in events}
    assert calls[events[1]["event_id"]] == 2 and consumer.failures == 1
    assert _depth(broker_url, queue) == 0 and _depth(broker_url, queue + ".dead") == 0


def test_an_event_the_handler_never_takes_is_parked_after_the_delivery_limit(
    broker_url: str, names: Names
) -> None:
    exchange, queue, dead = names("events"), names("consumer"), names("consumer.dead")
    calls: list[str] = []

    def handler(event: OrderEvent) -> None:
        calls.append(event.event_id)
        raise ValueError("never")

    consumer = EventConsumer(
        broker_url, queue, handler, exchange=exchange, max_deliveries=3, retry_delay=0.05
    )
    _bound(broker_url, consumer)
    event = _event()
    _publish(broker_url, exchange, event)
    with running(consumer):
        _until(lambda: _depth(broker_url, dead) == 1, 30, "the event in the dead-letter queue")
    assert calls == [event["event_id"]] * 3
    connection = admin(broker_url)
    method, _properties, body = connection.channel().basic_get(dead, auto_ack=True)
    connection.close()
    assert method is not None and json.loads(body)["event_id"] == event["event_id"]


def test_an_event_that_does_not_parse_is_parked_at_once_and_reported(broker_url: str, names: Names) -> None:
    exchange, queue, dead = names("events"), names("consumer"), names("consumer.dead")
    handled: list[str] = []
    invalid: list[tuple[str | None, str]] = []
    consumer = EventConsumer(
        broker_url,
        queue,
        lambda event: handled.append(event.event_id),
        exchange=exchange,
        on_invalid=lambda message_id, reason: invalid.append((message_id, reason)),
    )
    _bound(broker_url, consumer)
    broken = _event(type="no_such_type", provider_status="secret-value")
    good = _event()
    _publish(broker_url, exchange, b"{not json", broken, good)
    with running(consumer):
        _until(lambda: handled == [good["event_id"]] and len(invalid) == 2, 30, "the good event handled")
    assert invalid[0] == (None, "not JSON")
    assert (
        invalid[1][0] == broken["event_id"]
        and "type" in invalid[1][1]
        and "secret-value" not in invalid[1][1]
    )
    assert _depth(broker_url, dead) == 2 and consumer.invalid == 2


def test_a_repeated_event_reaches_the_handler_once(broker_url: str, names: Names) -> None:
    exchange, queue = names("events"), names("consumer")
    names("consumer.dead")
    handled: list[str] = []
    consumer = EventConsumer(
        broker_url,
        queue,
        lambda event: handled.append(event.event_id),
        exchange=exchange,
        seen=RecentEvents(10),
    )
    _bound(broker_url, consumer)
    first, second = _event(), _event()
    _publish(broker_url, exchange, first, first, second, first)
    with running(consumer):
        _until(lambda: consumer.handled + consumer.duplicates == 4, 30, "four deliveries")
    assert handled == [first["event_id"], second["event_id"]] and consumer.duplicates == 2


def test_binding_works_whether_or_not_the_service_declared_the_exchange(
    broker_url: str, names: Names
) -> None:
    exchange, queue = names("events"), names("consumer")
    names("consumer.dead")
    consumer = EventConsumer(broker_url, queue, lambda event: None, exchange=exchange)
    _bound(broker_url, consumer)  # no exchange yet: declared with the service's exact arguments
    connection = admin(broker_url)
    # what the service declares on start is accepted as equivalent (else PRECONDITION_FAILED)
    connection.channel().exchange_declare(
        exchange, exchange_type="topic", durable=True, arguments=events_exchange_arguments(exchange)
    )
    connection.close()
    _bound(broker_url, consumer)  # it exists now: declared passively


def test_recent_events_forget_the_oldest_beyond_their_capacity() -> None:
    seen = RecentEvents(capacity=2)
    for event_id in ("a", "b", "c"):
        seen.remember(event_id)
    assert not seen.seen("a") and seen.seen("b") and seen.seen("c") and len(seen) == 2
    with pytest.raises(ValueError):
        RecentEvents(0)
