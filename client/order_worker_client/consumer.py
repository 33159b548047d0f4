"""Consuming order-worker's events at least once: a queue of the consumer's own, bound to the events
exchange, each event handed to a handler as an :class:`~order_worker_client.events.OrderEvent`.

What it guarantees, and how:

* **Nothing is acknowledged before the handler returns.** A handler that raises, a process that dies
  mid-handler, a broken connection: the broker still holds the event and delivers it again.
* **Redelivery is bounded.** The queue is a quorum queue with ``x-delivery-limit``: the broker counts
  every delivery (a crash counts too), and an event delivered ``max_deliveries`` times without being
  acknowledged goes to ``<queue>.dead`` instead of looping forever. A handler that raised is given the
  event again after ``retry_delay`` seconds (nack with requeue). Move parked events back with the
  broker's tools (e.g. a shovel) once the cause is fixed.
* **An event that does not parse is not lost.** It is rejected without requeue, so it goes to
  ``<queue>.dead`` at once (no redelivery can make it parse), and ``on_invalid`` is called with its
  message_id and the reason.
* **Deduplication on ``event_id``** (events are delivered at least once, and the service itself may
  publish an event twice): with ``seen`` set, an event whose id is already there is acknowledged without
  calling the handler, and an id is remembered only once the handler returned for it. ``SeenEvents`` is
  a protocol: :class:`RecentEvents` keeps a bounded window in memory; back it with your own store (the
  same transaction as the handler's own writes is best) to dedupe across restarts.
* ``prefetch``: how many unacknowledged events the broker sends ahead; at most that many are delivered
  again after a crash.

The exchange is declared passively when it exists, else with exactly the service's arguments
(:mod:`order_worker_client.topology`), so binding works whether or not the service has started.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError, ChannelClosedByBroker
from pydantic import ValidationError

from order_worker_client.brokers import broker_urls, describe_url
from order_worker_client.events import OrderEvent
from order_worker_client.producer import open_first
from order_worker_client.topology import (
    EVENTS_EXCHANGE,
    EVENTS_EXCHANGE_TYPE,
    event_routing_key,
    events_exchange_arguments,
)

log = logging.getLogger(__name__)

DEAD_SUFFIX = ".dead"
"""A consumer queue's dead-letter queue is named after it with this suffix."""
NOT_FOUND = 404


class SeenEvents(Protocol):
    """Where a consumer remembers the events it has handled; implement it over your own store."""

    def seen(self, event_id: str) -> bool:
        """True if the event was handled already."""
        ...

    def remember(self, event_id: str) -> None:
        """Called once the handler returned for the event."""
        ...


class RecentEvents:
    """The last ``capacity`` event ids handled, in memory: duplicates closer together than that are
    caught (a redelivery after a crash comes within ``prefetch`` events, a service's repeat soon after);
    nothing survives a restart."""

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def seen(self, event_id: str) -> bool:
        with self._lock:
            if event_id in self._ids:
                self._ids.move_to_end(event_id)
                return True
            return False

    def remember(self, event_id: str) -> None:
        with self._lock:
            self._ids[event_id] = None
            self._ids.move_to_end(event_id)
            while len(self._ids) > self.capacity:
                self._ids.popitem(last=False)

    def __len__(self) -> int:
        return len(self._ids)


def deduplicated(handler: Callable[[OrderEvent], None], seen: SeenEvents) -> Callable[[OrderEvent], None]:
    """``handler`` called once per ``event_id`` (as far as ``seen`` remembers), for use outside
    :class:`EventConsumer`; an event is remembered only when the handler returned."""

    def handle(event: OrderEvent) -> None:
        if seen.seen(event.event_id):
            return
        handler(event)
        seen.remember(event.event_id)

    return handle


class EventConsumer:
    """Consumes ``queue`` (declared durable, bound to the events exchange with ``bindings``) until
    :meth:`stop` is called; see the module's description for the guarantees.

    ``broker_url``: one AMQP URL or several, tried in turn, and again after a connection breaks.
    ``bindings``: routing keys to bind (``order.<provider>.<type>``, ``*`` and ``#`` as in topic
    exchanges); all events by default. ``max_deliveries`` is fixed when the queue is first declared:
    RabbitMQ refuses to redeclare a queue with other arguments."""

    def __init__(
        self,
        broker_url: str | Sequence[str],
        queue: str,
        handler: Callable[[OrderEvent], None],
        *,
        exchange: str = EVENTS_EXCHANGE,
        bindings: Sequence[str] = (event_routing_key("*", "*"),),
        prefetch: int = 16,
        max_deliveries: int = 5,
        retry_delay: float = 1.0,
        seen: SeenEvents | None = None,
        on_invalid: Callable[[str | None, str], None] | None = None,
        reconnect_delay: float = 1.0,
    ) -> None:
        if not queue:
            raise ValueError("a consumer needs a named queue: events wait there while it is down")
        if prefetch < 1 or max_deliveries < 1:
            raise ValueError("prefetch and max_deliveries must be at least 1")
        self._urls = broker_urls(broker_url)
        self._index = 0
        self.queue = queue
        self.dead_letter_queue = queue + DEAD_SUFFIX
        self.exchange = exchange
        self.bindings = list(bindings)
        self.prefetch = prefetch
        self.max_deliveries = max_deliveries
        self.retry_delay = retry_delay
        self.reconnect_delay = reconnect_delay
        self._handler = handler
        self._seen = seen
        self._on_invalid = on_invalid
        self._stop = threading.Event()
        self.handled = 0
        self.duplicates = 0
        self.failures = 0
        self.invalid = 0

    def queue_arguments(self) -> dict[str, Any]:
        """The consumer queue's arguments: quorum, bounded redelivery, dead letters to ``<queue>.dead``."""
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.max_deliveries - 1,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.dead_letter_queue,
        }

    def declare(self, channel: BlockingChannel) -> BlockingChannel:
        """Declares the exchange (passively if it exists), the queue, its dead-letter queue and bindings;
        returns the channel to go on with (a failed passive declaration closes the one it ran on)."""
        try:
            channel.exchange_declare(self.exchange, passive=True)
        except ChannelClosedByBroker as error:
            if error.reply_code != NOT_FOUND:
                raise
            channel = channel.connection.channel()
            channel.exchange_declare(
                self.exchange,
                exchange_type=EVENTS_EXCHANGE_TYPE,
                durable=True,
                arguments=events_exchange_arguments(self.exchange),
            )
        channel.queue_declare(self.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_declare(self.queue, durable=True, arguments=self.queue_arguments())
        for binding in self.bindings:
            channel.queue_bind(self.queue, self.exchange, routing_key=binding)
        return channel

    def stop(self) -> None:
        """Makes :meth:`run` return after the event in hand (thread-safe)."""
        self._stop.set()

    def run(self) -> None:
        """Consumes until :meth:`stop`; reconnects (next URL) after a broken connection. Raises what the
        handler cannot cause: a refused declaration (e.g. the queue exists with other arguments)."""
        while not self._stop.is_set():
            connection = None
            try:
                connection, self._index = open_first(self._urls, self._index)
                channel = self.declare(connection.channel())
                channel.basic_qos(prefetch_count=self.prefetch)
                for method, properties, body in channel.consume(self.queue, inactivity_timeout=0.2):
                    if self._stop.is_set():
                        break
                    if method is not None:
                        self._deliver(connection, channel, method, properties, body)
                channel.cancel()
            except ChannelClosedByBroker:
                raise
            except (AMQPError, OSError) as error:
                where = describe_url(self._urls[self._index])
                log.warning("event consumer lost %s (%s); reconnecting", where, type(error).__name__)
                self._index = (self._index + 1) % len(self._urls)
                self._stop.wait(self.reconnect_delay)
            finally:
                if connection is not None and connection.is_open:
                    with contextlib.suppress(AMQPError, OSError):
                        connection.close()

    def _deliver(
        self,
        connection: pika.BlockingConnection,
        channel: BlockingChannel,
        method: Any,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        tag = method.delivery_tag
        try:
            event = OrderEvent.model_validate(json.loads(body))
        except (ValueError, ValidationError) as error:
            self.invalid += 1
            reason = _invalid_reason(error)
            log.warning(
                "event %s does not parse (%s); parked in %s",
                properties.message_id,
                reason,
                self.dead_letter_queue,
            )
            if self._on_invalid is not None:
                self._on_invalid(properties.message_id, reason)
            channel.basic_reject(tag, requeue=False)
            return
        if self._seen is not None and self._seen.seen(event.event_id):
            self.duplicates += 1
            channel.basic_ack(tag)
            return
        try:
            self._handler(event)
        except Exception as error:  # noqa: BLE001 - any failure of the handler means "deliver again"
            self.failures += 1
            log.warning(
                "handler failed on event %s (%s); delivered again in %gs unless at the limit",
                event.event_id,
                type(error).__name__,
                self.retry_delay,
            )
            connection.sleep(self.retry_delay)
            channel.basic_nack(tag, requeue=True)
            return
        if self._seen is not None:
            self._seen.remember(event.event_id)
        self.handled += 1
        channel.basic_ack(tag)


def _invalid_reason(error: Exception) -> str:
    """Why a body was refused, without its values (an event's text stays out of logs)."""
    if isinstance(error, ValidationError):
        fields = sorted({".".join(str(part) for part in item["loc"]) or "body" for item in error.errors()})
        return "invalid fields: " + ", ".join(fields)
    return "not JSON"
