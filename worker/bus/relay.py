"""Outbox relay: moves committed events from the ledger to the ``orders.events`` exchange.

An event is marked published only after RabbitMQ confirmed it (publisher confirms), so a crash or a broker
restart at any moment means the event is sent again, never lost; consumers dedupe on ``message_id`` (the
event id). A claimed batch goes out whole and its confirms are awaited once
(``worker.bus.publishing.BatchPublisher``): RabbitMQ spends about a third of the CPU it spends when each
event is confirmed before the next is sent.

``mandatory`` plus an alternate exchange (``worker.bus.topology``) means an event nobody is bound for yet
is parked in ``orders.events.unrouted`` instead of silently vanishing. Any number of relays may run (one
per replica): the ledger leases rows to one relay at a time. Events go out in outbox order, but an event
the broker refuses (a nack, rare) is sent again after the rest of its batch, and the relays of several
replicas publish side by side: consumers order an order's events by ``previous_status`` -> ``status``, not
by arrival.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import pika
from pika.exceptions import AMQPError

from worker import failpoints, metrics, tracing
from worker.bus.publishing import BatchPublisher, Outgoing
from worker.bus.topology import declare_events_exchange
from worker.ledger.base import Ledger, OutboxRow
from worker.ledger.outage import LedgerWaiter
from worker.logs import get_logger

log = get_logger(__name__)

OUTBOX_LEASE_SECONDS = 30.0


def event_properties(row: OutboxRow) -> pika.BasicProperties:
    """What every published event carries: its id for consumers' dedupe, its type, the command it answers
    as ``correlation_id``, persistence, and the W3C ``traceparent``/``tracestate`` headers of the trace
    that wrote it, when there was one."""
    return pika.BasicProperties(
        message_id=row.event_id,
        type=row.event_type,
        correlation_id=row.command_id,
        content_type="application/json",
        delivery_mode=pika.DeliveryMode.Persistent,
        timestamp=int(row.created_at),
        headers=tracing.from_text(row.trace_context),
    )


class EventPublisher:
    """Events in batches confirmed at once, with the events topology declared on every new connection.

    ``to_queue`` sends them to that one existing queue instead (through the default exchange), for a
    consumer that needs events again without every other consumer receiving them twice."""

    def __init__(self, broker_url: str, exchange: str, to_queue: str | None = None) -> None:
        self._exchange = exchange
        self._to_queue = to_queue
        self._publisher = BatchPublisher(
            broker_url, lambda channel: declare_events_exchange(channel, exchange), thread_name="relay-amqp"
        )

    def publish(self, rows: Sequence[OutboxRow]) -> list[bool]:
        """Per row: True once the broker confirmed it. Raises when the batch's fate is unknown."""
        if self._to_queue is not None:
            queue = self._to_queue
            return self._publisher.publish(
                [Outgoing("", queue, row.body, event_properties(row)) for row in rows]
            )
        return self._publisher.publish(
            [Outgoing(self._exchange, row.routing_key, row.body, event_properties(row)) for row in rows]
        )

    def close(self) -> None:
        self._publisher.close()


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
        self.waiter = LedgerWaiter()

    def pass_once(self) -> int:
        """Publish one batch; returns how many events were confirmed."""
        rows = self.ledger.claim_outbox(self.clock(), self.batch, OUTBOX_LEASE_SECONDS)
        if not rows:
            return 0
        confirmed: list[str] = []
        try:
            outcomes = self.publisher.publish(rows)
            for row, taken in zip(rows, outcomes, strict=True):
                if taken:
                    confirmed.append(row.event_id)
                    metrics.child(metrics.EVENTS_PUBLISHED, row.event_type).inc()
                    with tracing.carried(tracing.from_text(row.trace_context)):
                        log.debug("event_published", event_id=row.event_id, type=row.event_type)
            if confirmed:
                failpoints.hit("relay_after_publish")
            if len(confirmed) < len(rows):
                log.warning("events_refused", events=len(rows) - len(confirmed), next="retry")
        except (AMQPError, OSError) as error:
            log.warning(
                "event_publishing_interrupted", error=type(error).__name__, events=len(rows), next="retry"
            )
            raise
        finally:
            if confirmed:
                self.ledger.mark_published(confirmed, self.clock())
            if len(confirmed) < len(rows):
                taken_ids = set(confirmed)
                self.ledger.release_outbox([row.event_id for row in rows if row.event_id not in taken_ids])
        return len(confirmed)

    def run(
        self,
        stop: threading.Event,
        idle_seconds: float = 0.05,
        error_backoff: float = 1.0,
        drain_seconds: float = 10.0,
    ) -> None:
        """Drain continuously; sleep briefly when idle, longer after a broker failure, backed off while the
        ledger is out (one warning, not one per pass). On stop, publish what is already committed (for at
        most ``drain_seconds``), so a clean shutdown leaves no event waiting for the next relay."""
        failures = 0
        while not stop.is_set():
            try:
                count = self.pass_once()
            except Exception as error:
                failures += 1
                pause = self.waiter.pause_after(error, failures, "the outbox relay")
                if pause is not None:
                    stop.wait(pause)
                elif isinstance(error, AMQPError | OSError):
                    stop.wait(error_backoff)
                else:
                    log.exception("relay_pass_failed")
                    stop.wait(error_backoff)
                continue
            if failures:
                failures = 0
                self.waiter.recovered()
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
                log.warning("final_drain_stopped", next="the next relay publishes the rest", exc_info=True)
                return
