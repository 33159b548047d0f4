"""Outbox relay: moves committed events from the ledger to the ``orders.events`` exchange.

An event is marked published only after RabbitMQ confirmed it (publisher confirms), so a crash or a broker
restart at any moment means the event is sent again, never lost; consumers dedupe on ``message_id`` (the
event id). ``mandatory`` plus an alternate exchange means an event nobody is bound for yet is parked in
``orders.events.unrouted`` instead of silently vanishing. Any number of relays may run (one per replica):
the ledger leases rows to one relay at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError, UnroutableError

from worker import failpoints, metrics
from worker.amqp import ConfirmedChannel
from worker.ledger.base import Ledger, OutboxRow

log = logging.getLogger(__name__)

UNROUTED_SUFFIX = ".unrouted"
OUTBOX_LEASE_SECONDS = 30.0


def declare_topology(channel: BlockingChannel, exchange: str) -> None:
    """The events exchange (durable topic) and the parking place for unroutable events."""
    unrouted = exchange + UNROUTED_SUFFIX
    channel.exchange_declare(unrouted, exchange_type="fanout", durable=True)
    channel.queue_declare(unrouted, durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_bind(unrouted, unrouted)
    channel.exchange_declare(
        exchange, exchange_type="topic", durable=True, arguments={"alternate-exchange": unrouted}
    )


def event_properties(row: OutboxRow) -> pika.BasicProperties:
    """What every published event carries: its id for consumers' dedupe, its type, persistence."""
    return pika.BasicProperties(
        message_id=row.event_id,
        type=row.event_type,
        content_type="application/json",
        delivery_mode=pika.DeliveryMode.Persistent,
        timestamp=int(row.created_at),
    )


class EventPublisher:
    """Events over one confirmed channel, with the events topology declared on every new channel."""

    def __init__(self, broker_url: str, exchange: str) -> None:
        self._exchange = exchange
        self._channel = ConfirmedChannel(broker_url, lambda channel: declare_topology(channel, exchange))

    def publish(self, row: OutboxRow) -> None:
        """Returns only once the broker confirmed the message; raises otherwise."""
        self._channel.open().basic_publish(
            exchange=self._exchange,
            routing_key=row.routing_key,
            body=row.body,
            properties=event_properties(row),
            mandatory=True,
        )

    def close(self) -> None:
        self._channel.close()


class OutboxRelay:
    def __init__(
        self,
        ledger: Ledger,
        publisher: EventPublisher,
        batch: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ledger = ledger
        self.publisher = publisher
        self.batch = batch
        self.clock = clock
        self.wakeup = threading.Event()

    def pass_once(self) -> int:
        """Publish one batch; returns how many events were confirmed."""
        rows = self.ledger.claim_outbox(self.clock(), self.batch, OUTBOX_LEASE_SECONDS)
        published: list[str] = []
        try:
            for row in rows:
                self.publisher.publish(row)
                published.append(row.event_id)
                metrics.child(metrics.EVENTS_PUBLISHED, row.event_type).inc()
            if published:
                failpoints.hit("relay_after_publish")
        except (AMQPError, OSError) as error:
            kind = "unroutable" if isinstance(error, UnroutableError) else type(error).__name__
            log.warning(
                "event publishing interrupted (%s); %d events will be retried",
                kind,
                len(rows) - len(published),
            )
            self.publisher.close()
            raise
        finally:
            if published:
                self.ledger.mark_published(published, self.clock())
            unpublished = [row.event_id for row in rows if row.event_id not in set(published)]
            if unpublished:
                self.ledger.release_outbox(unpublished)
        return len(published)

    def run(
        self,
        stop: threading.Event,
        idle_seconds: float = 0.05,
        error_backoff: float = 1.0,
        drain_seconds: float = 10.0,
    ) -> None:
        """Drain continuously; sleep briefly when idle, longer after a broker failure. On stop, publish
        what is already committed (for at most ``drain_seconds``), so a clean shutdown leaves no event
        waiting for the next relay."""
        while not stop.is_set():
            try:
                count = self.pass_once()
            except (AMQPError, OSError):
                stop.wait(error_backoff)
                continue
            except Exception:
                log.exception("outbox relay pass failed")
                stop.wait(error_backoff)
                continue
            if count < self.batch:
                self.wakeup.wait(idle_seconds)
                self.wakeup.clear()
        self._drain(drain_seconds)
        self.publisher.close()

    def _drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if self.pass_once() == 0:
                    return
            except Exception:
                log.warning("final outbox drain stopped; the next relay publishes the rest", exc_info=True)
                return
