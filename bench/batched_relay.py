"""A what-if, bench only: the outbox relay with batched publisher confirms, to size a proposed change.

``worker.relay.EventPublisher.publish`` waits for the broker's confirm of each event before sending the
next (pika's BlockingChannel with ``confirm_delivery()``): one round trip and one quorum-queue append per
event. This prototype publishes a whole claimed batch, then waits once for the confirms (``multiple``
acks), and marks published only what was confirmed (nacked or returned events are released, as the real
relay releases unpublished rows). Same ledger calls, same exchange, properties and ``mandatory`` flag.

It runs in place of ``order-worker scheduler`` for the "pipeline, batched relay" row (the scheduler half
is idle in those runs anyway: poll intervals are an hour). Not production code: the proposal is for
``worker/relay.py``.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel

from worker import metrics
from worker.ledger.base import Ledger, OutboxRow
from worker.relay import OUTBOX_LEASE_SECONDS, declare_topology, event_properties


class BatchedPublisher:
    def __init__(self, broker_url: str, exchange: str) -> None:
        self._parameters = pika.URLParameters(broker_url)
        self._exchange = exchange
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._acked = 0  # highest delivery tag confirmed (contiguous from 1, acks may be 'multiple')
        self._nacked: set[int] = set()
        self._returned: set[str] = set()
        self._next_tag = 1

    def _open(self) -> BlockingChannel:
        if self._channel is None or not self._channel.is_open:
            self._connection = pika.BlockingConnection(self._parameters)
            channel = self._connection.channel()
            declare_topology(channel, self._exchange)
            channel._impl.confirm_delivery(ack_nack_callback=self._on_confirm)
            channel.add_on_return_callback(self._on_return)
            self._connection.process_data_events(0)
            self._channel = channel
            self._acked, self._next_tag = 0, 1
        return self._channel

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        tags = range(self._acked + 1, method.delivery_tag + 1) if method.multiple else [method.delivery_tag]
        if isinstance(method, pika.spec.Basic.Nack):
            self._nacked.update(tags)
        self._acked = max(self._acked, method.delivery_tag)

    def _on_return(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        self._returned.add(properties.message_id)

    def publish_batch(self, rows: list[OutboxRow]) -> list[str]:
        """Publish every row, wait for all confirms; returns the event ids the broker took."""
        channel = self._open()
        assert self._connection is not None
        first = self._next_tag
        for row in rows:
            channel.basic_publish(
                exchange=self._exchange,
                routing_key=row.routing_key,
                body=row.body,
                properties=event_properties(row),
                mandatory=True,
            )
            self._next_tag += 1
        last = self._next_tag - 1
        deadline = time.monotonic() + 30
        while self._acked < last:
            if time.monotonic() > deadline:
                raise TimeoutError("no confirms within 30 s")
            self._connection.process_data_events(time_limit=0.05)
        failed = {rows[tag - first].event_id for tag in self._nacked if first <= tag <= last}
        self._nacked.clear()
        failed |= self._returned
        self._returned.clear()
        return [row.event_id for row in rows if row.event_id not in failed]

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            connection.close()


def relay_forever(ledger: Ledger, publisher: BatchedPublisher, batch: int, stop: threading.Event) -> None:
    while not stop.is_set():
        rows = ledger.claim_outbox(time.time(), batch, OUTBOX_LEASE_SECONDS)
        if not rows:
            stop.wait(0.05)
            continue
        confirmed = publisher.publish_batch(rows)
        if confirmed:
            ledger.mark_published(confirmed, time.time())
            for row in rows:
                metrics.EVENTS_PUBLISHED.labels(row.event_type).inc()
        missing = [row.event_id for row in rows if row.event_id not in set(confirmed)]
        if missing:
            ledger.release_outbox(missing)


def main() -> None:
    from worker.observability import serve_http
    from worker.runtime import get_runtime
    from worker.settings import get_settings

    settings = get_settings()
    runtime = get_runtime()
    runtime.ledger.migrate()
    serve_http("127.0.0.1", settings.metrics_port, lambda: None)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    publisher = BatchedPublisher(settings.broker_url.get_secret_value(), settings.events_exchange)
    relay_forever(runtime.ledger, publisher, settings.relay_batch, stop)
    runtime.close()


if __name__ == "__main__":
    main()
