"""Publishing with publisher confirms, so that an owner marks its work done only once the broker has it.

* ``BatchPublisher``: a whole batch in flight, confirmed at once; the outbox relay and the scheduler
  publish through it. It drops its connection after any error, and the next batch starts afresh rather
  than reusing a channel in an unknown state.
* ``CommandBatchPublisher``: commands through a ``BatchPublisher``, as the scheduler hands them out.

One command at a time (producers, the CLI, the demo) goes through the client package's
``order_worker_client.producer.CommandProducer``, the one producer API.

A one-at-a-time publisher (the dead-letter rescuer) uses ``worker.bus.connection.BlockingLink`` with
``confirm=True`` directly.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pika
from pika import spec
from pika.adapters.blocking_connection import BlockingChannel
from pika.channel import Channel
from pika.exceptions import AMQPConnectionError, AMQPError, ConnectionClosedByClient
from pika.frame import Method

from worker.bus.connection import BlockingLink, connection_parameters
from worker.bus.envelope import envelope
from worker.logs import get_logger

log = get_logger(__name__)

COMMAND_PROPERTIES = {"delivery_mode": pika.DeliveryMode.Persistent, "content_type": "application/json"}


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for ``BatchPublisher``, which publishes every message ``mandatory``: one with no route is
    returned, not dropped. ``properties.message_id`` must be set and unique in its batch: a returned
    message is recognised by it, since returns carry no tag."""

    exchange: str
    routing_key: str
    body: bytes
    properties: pika.BasicProperties


class BatchPublisher:
    """Publishes a whole batch, then waits once for the broker's confirms of all of it.

    The blocking channel waits for each confirm before sending the next message: a round trip and a
    separate quorum-queue append per message, and RabbitMQ spends about three times the CPU per message it
    spends on a batch confirmed together. pika's public way to keep confirms in flight is its asynchronous
    ``SelectConnection``; its IO loop runs here in a thread of its own, and callers hand batches over with
    ``add_callback_threadsafe``, the one thread-safe entry into that loop. A side benefit: the loop answers
    heartbeats while the caller is busy elsewhere.

    Any failure (connection or channel lost, confirms overdue) drops the connection and raises; the next
    batch starts on a fresh one, after ``prepare`` ran again on a short-lived blocking channel (declarations
    the owner needs before publishing).
    """

    def __init__(
        self,
        broker_url: str,
        prepare: Callable[[BlockingChannel], None] | None = None,
        confirm_timeout: float = 30.0,
        thread_name: str = "amqp-publisher",
    ) -> None:
        self._broker_url = broker_url
        self._nodes = connection_parameters(broker_url)  # this publisher's order of the nodes
        self._next_node = 0
        self._prepare = prepare
        self._confirm_timeout = confirm_timeout
        self._thread_name = thread_name
        self._link: _Link | None = None
        self._lock = threading.Lock()

    def publish(self, messages: Sequence[Outgoing]) -> list[bool]:
        """For each message, in order: True if the broker confirmed it and did not return it, False if it
        refused it (nack) or had no route for it (return); send those again later.

        Raises ``AMQPError`` (or ``TimeoutError`` when confirms are overdue) if the batch's fate is unknown:
        any of its messages may have reached the broker, so the caller must treat all of them as unsent
        and send them again, relying on its consumers to recognise a repeat."""
        if not messages:
            return []
        with self._lock:
            link = self._link
            if link is None or link.closed:
                if link is not None:
                    link.close()
                self._link = None
                if self._prepare is not None:
                    preparing = BlockingLink(self._broker_url, on_open=self._prepare)
                    try:
                        preparing.open()  # opening runs prepare
                    finally:
                        preparing.close()
                link = self._link = self._open_link()
            try:
                return link.publish(messages, self._confirm_timeout)
            except BaseException:
                self._link = None
                link.close()
                raise

    def _open_link(self) -> _Link:
        """A link to the first node that answers, starting after the node of the previous link (whose
        failure is why a new one is needed). pika's asynchronous connection takes one node's parameters,
        not a list as its blocking one does, so the nodes are tried here in turn."""
        failure: BaseException | None = None
        for _ in self._nodes:
            parameters = self._nodes[self._next_node % len(self._nodes)]
            self._next_node += 1
            try:
                return _Link(parameters, self._thread_name, self._confirm_timeout)
            except (AMQPError, OSError) as error:
                failure = error
        raise _as_amqp_error(failure, "no broker node answered")

    def close(self) -> None:
        with self._lock:
            link, self._link = self._link, None
        if link is not None:
            link.close()


class _Batch:
    def __init__(self, messages: Sequence[Outgoing]) -> None:
        self.messages = messages
        self.first_tag = 0
        self.unconfirmed: set[int] = set()
        self.nacked: set[int] = set()
        self.returned: set[str] = set()
        self.failure: BaseException | None = None
        self.done = threading.Event()

    def outcomes(self) -> list[bool]:
        return [
            self.first_tag + index not in self.nacked and message.properties.message_id not in self.returned
            for index, message in enumerate(self.messages)
        ]


class _Link:
    """One connection's life: its IO loop thread, its confirm-mode channel, the batch in flight. Every
    method whose name does not start with ``publish`` or ``close`` runs on the IO loop thread."""

    def __init__(self, parameters: pika.ConnectionParameters, thread_name: str, open_timeout: float) -> None:
        self.closed = False
        self._channel: Channel | None = None
        self._next_tag = 1
        self._batch: _Batch | None = None
        self._failure: BaseException | None = None
        self._ready = threading.Event()
        self._connection = pika.SelectConnection(
            parameters,
            on_open_callback=self._on_open,
            on_open_error_callback=self._on_open_error,
            on_close_callback=self._on_closed,
        )
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)
        self._thread.start()
        if not self._ready.wait(open_timeout):
            self.close()
            raise AMQPConnectionError(f"no confirm-mode channel within {open_timeout:g} s")
        if self._failure is not None or self.closed:
            self.close()
            raise _as_amqp_error(self._failure, "the connection closed while opening")

    def publish(self, messages: Sequence[Outgoing], timeout: float) -> list[bool]:
        batch = _Batch(messages)
        self._connection.ioloop.add_callback_threadsafe(lambda: self._send(batch))
        deadline = time.monotonic() + timeout
        # The loop thread may stop before it runs the callback; checking on it keeps that from costing
        # the whole timeout.
        while not batch.done.wait(0.2):
            if not self._thread.is_alive():
                raise _as_amqp_error(self._failure, "the connection closed")
            if time.monotonic() > deadline:
                raise TimeoutError(f"publisher confirms overdue after {timeout:g} s")
        if batch.failure is not None:
            raise batch.failure
        return batch.outcomes()

    def close(self) -> None:
        if self._thread.is_alive():
            self._connection.ioloop.add_callback_threadsafe(self._shut)
            self._thread.join(10.0)

    def _run(self) -> None:
        try:
            self._connection.ioloop.start()
        except Exception as error:  # a callback raised: nothing on this connection can be trusted now
            log.exception("amqp_publisher_failed")
            self._fail(error)
        finally:
            self._fail(self._failure)
            self._ready.set()
            if not self._connection.is_closed:
                log.debug("amqp_publisher_stopped_open")
            self._connection.ioloop.close()

    def _on_open(self, connection: Any) -> None:
        connection.channel(on_open_callback=self._on_channel)

    def _on_channel(self, channel: Channel) -> None:
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(
            ack_nack_callback=self._on_confirm, callback=lambda _frame: self._ready.set()
        )
        self._channel = channel

    def _on_open_error(self, connection: Any, error: BaseException) -> None:
        self._fail(error)
        self._connection.ioloop.stop()

    def _on_closed(self, connection: Any, reason: BaseException) -> None:
        if not isinstance(reason, ConnectionClosedByClient):
            log.warning("amqp_publishing_connection_lost", error=type(reason).__name__, next="reconnect")
        self._fail(reason)
        self._connection.ioloop.stop()

    def _on_channel_closed(self, channel: Channel, reason: BaseException) -> None:
        self._fail(reason)
        self._shut()

    def _shut(self) -> None:
        if self._connection.is_open:
            self._connection.close()  # its close callback stops the loop
        elif not self._connection.is_closing:
            self._connection.ioloop.stop()

    def _fail(self, reason: BaseException | None) -> None:
        """Marks the link closed and fails the batch in flight; the first reason is the one kept."""
        self.closed = True
        if reason is not None and self._failure is None:
            self._failure = _as_amqp_error(reason, "the connection failed")
        batch, self._batch = self._batch, None
        if batch is not None:
            batch.failure = _as_amqp_error(self._failure, "the connection closed")
            batch.done.set()

    def _send(self, batch: _Batch) -> None:
        channel = self._channel
        if self.closed or channel is None or not channel.is_open:
            batch.failure = _as_amqp_error(self._failure, "the channel is closed")
            batch.done.set()
            return
        self._batch = batch
        batch.first_tag = self._next_tag
        try:
            for message in batch.messages:
                channel.basic_publish(
                    message.exchange, message.routing_key, message.body, message.properties, mandatory=True
                )
                batch.unconfirmed.add(self._next_tag)
                self._next_tag += 1
        except AMQPError as error:
            self._fail(error)
            self._shut()

    def _on_confirm(self, frame: Method) -> None:
        batch = self._batch
        if batch is None:
            return
        method = frame.method
        tag: int = method.delivery_tag
        settled = [t for t in batch.unconfirmed if t <= tag] if method.multiple else [tag]
        batch.unconfirmed.difference_update(settled)
        if isinstance(method, spec.Basic.Nack):
            batch.nacked.update(settled)
        if not batch.unconfirmed:
            self._batch = None
            batch.done.set()

    def _on_return(
        self, channel: Channel, method: Any, properties: pika.BasicProperties, body: bytes
    ) -> None:
        # RabbitMQ sends a message's return before its confirm, so the batch is still in flight here.
        if self._batch is not None and properties.message_id is not None:
            self._batch.returned.add(properties.message_id)


def _as_amqp_error(reason: BaseException | None, fallback: str) -> BaseException:
    """What ``publish`` raises: an AMQP or socket error as it came, anything else by its type alone (its
    text could hold what a caller never meant to log)."""
    error: BaseException
    if reason is None:
        error = AMQPConnectionError(fallback)
    elif isinstance(reason, (AMQPError, OSError)):
        error = reason
    else:
        error = AMQPConnectionError(f"{fallback}: {type(reason).__name__}")
    return error


class CommandBatchPublisher:
    """Commands in batches confirmed at once (``BatchPublisher``): how the scheduler hands out due polls
    and stuck creates, a few hundred per pass, without a broker round trip per command."""

    def __init__(
        self,
        broker_url: str,
        queues: Mapping[str, str],
        prepare: Callable[[BlockingChannel], None] | None = None,
    ) -> None:
        """``queues``: actor name -> queue name. ``prepare`` runs on every new connection (declaring the
        queues, so that a command is not returned merely because no worker has started yet)."""
        self._queues = dict(queues)
        self._publisher = BatchPublisher(broker_url, prepare, thread_name="commands-amqp")

    def publish(self, commands: Sequence[tuple[str, dict[str, Any]]]) -> list[bool]:
        """Per command: True once the broker confirmed it. Raises when the batch's fate is unknown."""
        messages = []
        for actor_name, kwargs in commands:
            queue, message_id = self._queues[actor_name], str(uuid.uuid4())
            messages.append(
                Outgoing(
                    "",
                    queue,
                    envelope(queue, actor_name, kwargs, message_id),
                    pika.BasicProperties(message_id=message_id, **COMMAND_PROPERTIES),
                )
            )
        return self._publisher.publish(messages)

    def close(self) -> None:
        self._publisher.close()
