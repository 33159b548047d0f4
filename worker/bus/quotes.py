"""The quote service on the bus: a pika consumer on the quotes queue, answering to each request's
``reply_to`` with its ``correlation_id``.

Dramatiq actors never see a message's AMQP properties, so request/reply cannot be an actor: each worker
process runs this consumer in a thread of its own (started by :class:`QuoteServing`, a Dramatiq
middleware, after the process booted). Requests are answered by a small thread pool (a partner call may
take seconds); the prefetch equals the pool's size, so a busy process leaves further requests to the
others. pika's connection belongs to its thread, so a pool thread hands its reply back through
``add_callback_threadsafe``; the reply is published, then the request acked. A request whose process dies
before the reply is redelivered (a quote is only a read), unless it expired meanwhile.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dramatiq
import pika
from dramatiq.middleware import Middleware
from order_worker_client.quoting import SENT_AT_HEADER
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError

from worker.bus.topology import declare_quotes_queue
from worker.logs import get_logger

log = get_logger(__name__)

Handler = Callable[[bytes, float], bytes]
"""``(request body, seconds it waited before arriving) -> reply body``; never raises."""

RECONNECT_SECONDS = 2.0
SHUTDOWN_SECONDS = 5.0


class QuoteConsumer:
    """Consumes ``queue`` until :meth:`stop`, reconnecting after a broker failure."""

    def __init__(self, broker_url: str, queue: str, handler: Handler, threads: int) -> None:
        self._parameters = pika.URLParameters(broker_url)
        self.queue = queue
        self._handler = handler
        self._threads = threads
        self._stopping = threading.Event()
        self.consuming = threading.Event()
        """Set while the consumer is registered on the queue (tests and readiness wait for it)."""
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="quote-consumer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = SHUTDOWN_SECONDS) -> None:
        """Stop taking requests, answer those in hand (within ``timeout``), close the connection."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout + 1.0)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._serve()
            except AMQPError as error:
                log.warning("quote_consumer_lost", error=type(error).__name__, retry_in=RECONNECT_SECONDS)
            except Exception:
                log.exception("quote_consumer_crashed", retry_in=RECONNECT_SECONDS)
            self.consuming.clear()
            self._stopping.wait(RECONNECT_SECONDS)

    def _serve(self) -> None:
        connection = pika.BlockingConnection(self._parameters)
        pool = ThreadPoolExecutor(self._threads, thread_name_prefix="quote")
        pending: set[int] = set()  # delivery tags of requests taken and not yet answered
        try:
            channel = connection.channel()
            declare_quotes_queue(channel, self.queue)
            channel.basic_qos(prefetch_count=self._threads)
            on_request = functools.partial(self._on_request, connection, pool, pending)
            tag = channel.basic_consume(self.queue, on_request)
            self.consuming.set()
            log.info("quote_consumer_started", queue=self.queue, threads=self._threads)
            while not self._stopping.is_set():
                connection.process_data_events(time_limit=0.5)
            channel.basic_cancel(tag)
            # Requests in hand are answered: their replies come back through this connection's loop.
            deadline = time.monotonic() + SHUTDOWN_SECONDS
            while pending and time.monotonic() < deadline:
                connection.process_data_events(time_limit=0.1)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            if connection.is_open:
                try:
                    connection.close()
                except AMQPError:
                    log.debug("amqp_close_failed", exc_info=True)

    def _on_request(
        self,
        connection: pika.BlockingConnection,
        pool: ThreadPoolExecutor,
        pending: set[int],
        channel: BlockingChannel,
        method: Any,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        tag = method.delivery_tag
        if not properties.reply_to:
            log.warning("quote_request_without_reply_to")  # nobody to answer: dropped
            channel.basic_ack(tag)
            return
        waited = _waited(properties)
        reply_to, correlation_id = properties.reply_to, properties.correlation_id

        def answer() -> None:
            reply = self._handler(body, waited)
            connection.add_callback_threadsafe(
                functools.partial(_reply, channel, pending, tag, reply_to, correlation_id, reply)
            )

        pending.add(tag)
        pool.submit(answer)


def _reply(
    channel: BlockingChannel,
    pending: set[int],
    tag: int,
    reply_to: str,
    correlation_id: str | None,
    reply: bytes,
) -> None:
    """On the connection's thread: the reply, then the request's ack."""
    pending.discard(tag)
    if not channel.is_open:
        return  # the request is redelivered to another consumer
    properties = pika.BasicProperties(content_type="application/json", correlation_id=correlation_id)
    channel.basic_publish("", reply_to, reply, properties)
    channel.basic_ack(tag)


def _waited(properties: pika.BasicProperties) -> float:
    """Seconds since the requester sent the request, by its clock (0 when it did not say or the clocks
    disagree so much that the figure means nothing)."""
    headers = properties.headers or {}
    sent_at = headers.get(SENT_AT_HEADER)
    if isinstance(sent_at, bool) or not isinstance(sent_at, int):
        return 0.0
    waited = time.time() - sent_at / 1000
    return waited if 0.0 <= waited < 3600 else 0.0


class QuoteServing(Middleware):
    """Runs a :class:`QuoteConsumer` in each worker process, from boot to shutdown.

    ``consumer`` is called in the worker process after it booted (so the connection, like everything
    else per process, is made after the fork)."""

    def __init__(self, consumer: Callable[[], QuoteConsumer]) -> None:
        self._factory = consumer
        self.consumer: QuoteConsumer | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.consumer = self._factory()
        self.consumer.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.consumer is not None:
            self.consumer.stop()
