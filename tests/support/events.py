"""Commands in and events out across broker failures: publishing that resends until confirmed, and a
witness that sees every event even when the broker crashes in between."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pika
from pika.exceptions import AMQPError

from tests.support.stack import wait_until
from worker.bus.connection import connection_parameters
from worker.bus.envelope import envelope
from worker.bus.topology import declare_events_exchange


def publish_reliably(
    broker_url: str,
    queue: str,
    bodies: Iterable[bytes],
    deadline_seconds: float = 300.0,
    confirmed_at: list[float] | None = None,
) -> int:
    """Publish each body with confirms; reconnect (to any node ``broker_url`` names) and resend (at least
    once) across broker failures.

    Returns how many publishes had to be repeated. A command published twice is fine by contract.
    ``confirmed_at`` gets the monotonic time of each confirmed publish.
    """
    repeats = 0
    pending = list(bodies)
    deadline = time.monotonic() + deadline_seconds
    connection: pika.BlockingConnection | None = None
    index = 0
    while index < len(pending):
        if time.monotonic() > deadline:
            raise AssertionError(f"could not publish {len(pending) - index} commands before the deadline")
        try:
            if connection is None or connection.is_closed:
                parameters = connection_parameters(broker_url)
                for each in parameters:
                    each.socket_timeout = 5
                    each.blocked_connection_timeout = 10
                connection = pika.BlockingConnection(parameters)
                channel = connection.channel()
                channel.confirm_delivery()
            channel.basic_publish(
                exchange="",
                routing_key=queue,
                body=pending[index],
                properties=pika.BasicProperties(
                    delivery_mode=pika.DeliveryMode.Persistent, content_type="application/json"
                ),
                mandatory=True,
            )
            index += 1
            if confirmed_at is not None:
                confirmed_at.append(time.monotonic())
        except (AMQPError, OSError):
            repeats += 1
            with contextlib.suppress(Exception):
                if connection is not None and connection.is_open:
                    connection.close()
            connection = None
            time.sleep(0.25)
    if connection is not None and connection.is_open:
        connection.close()
    return repeats


def create_bodies(queue: str, commands: Iterable[dict[str, Any]]) -> list[bytes]:
    return [envelope(queue, "create_order", command) for command in commands]


class EventWitness:
    """A durable quorum queue bound to the events exchange, drained by a thread that reconnects.

    It is declared before any event is published, so no event can pass by it; it survives a broker
    crash like any durable queue. Deliveries are deduplicated on ``event_id`` (= message_id).
    """

    def __init__(self, broker_url: str, exchange: str, queue: str | None = None) -> None:
        self.broker_url = broker_url
        self.exchange = exchange
        self.queue = queue or f"{exchange}.witness"
        self.events: dict[str, dict[str, Any]] = {}
        self.deliveries = 0
        self.duplicates = 0
        self.mismatched_ids = 0
        self.reconnects = 0
        self.first_seen_at: list[float] = []  # monotonic time each new event arrived
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._declare()
        self._thread = threading.Thread(target=self._run, name="event-witness", daemon=True)
        self._thread.start()

    def _channel(self) -> tuple[pika.BlockingConnection, Any]:
        parameters = connection_parameters(self.broker_url)
        for each in parameters:
            each.socket_timeout = 5
        connection = pika.BlockingConnection(parameters)
        channel = connection.channel()
        declare_events_exchange(channel, self.exchange)
        channel.queue_declare(self.queue, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_bind(self.queue, self.exchange, routing_key="#")
        return connection, channel

    def _declare(self) -> None:
        connection, _ = self._channel()
        connection.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            connection = None
            try:
                connection, channel = self._channel()
                channel.basic_qos(prefetch_count=500)
                for method, properties, body in channel.consume(self.queue, inactivity_timeout=0.2):
                    if self._stop.is_set():
                        break
                    if method is None:
                        continue
                    self._record(properties.message_id, json.loads(body))
                    channel.basic_ack(method.delivery_tag)
            except (AMQPError, OSError, ValueError):
                self.reconnects += 1
                self._stop.wait(0.5)
            finally:
                if connection is not None:
                    with contextlib.suppress(Exception):
                        connection.close()

    def _record(self, message_id: str | None, event: dict[str, Any]) -> None:
        with self._lock:
            self.deliveries += 1
            if message_id != event.get("event_id"):
                self.mismatched_ids += 1
            if event["event_id"] in self.events:
                self.duplicates += 1
            else:
                self.events[event["event_id"]] = event
                self.first_seen_at.append(time.monotonic())

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.events.values())

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float, what: str) -> None:
        wait_until(lambda: predicate(self.snapshot()), timeout, what, interval=0.25)

    def close(self, delete: bool = True) -> None:
        self._stop.set()
        self._thread.join(10)
        if delete:
            with contextlib.suppress(AMQPError, OSError):
                connection = pika.BlockingConnection(connection_parameters(self.broker_url))
                connection.channel().queue_delete(self.queue)
                connection.close()


def by_command(events: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    chains: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event.get("command_id"):
            chains.setdefault(event["command_id"], []).append(event)
    return chains


def transition_duplicates(events: Iterable[dict[str, Any]]) -> int:
    """Transitions reported under more than one event id: same order, type, previous and new status."""
    keys = Counter(
        (e.get("command_id"), e["type"], e.get("previous_status"), e.get("status"))
        for e in events
        if e["type"] != "rejected"
    )
    return sum(n - 1 for n in keys.values() if n > 1)


@contextlib.contextmanager
def witness(broker_url: str, exchange: str) -> Iterator[EventWitness]:
    watcher = EventWitness(broker_url, exchange)
    try:
        yield watcher
    finally:
        watcher.close()
