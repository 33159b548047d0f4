"""Publishing commands to order-worker from Python: the producer API.

Every command is a Dramatiq message (:func:`order_worker_client.commands.envelope`) published to the
default exchange with its queue's name as routing key, persistent, ``content_type`` JSON and a
``message_id``, on a channel with publisher confirms and ``mandatory``: ``publish`` returns once the broker
has written the command, and raises when it refused it (nack) or had no queue to put it in (return).
Nothing is dropped without the caller knowing.

Sending a command again is always safe: the service recognises a repeated create by its ``command_id``
and a repeated decision by its ``action_id``. That is why a publish whose connection broke is sent again
on the next broker URL (a confirm that never came leaves the command's fate unknown), and why a caller
may retry anything this module raises.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError, NackError, UnroutableError

from order_worker_client.brokers import broker_urls, describe_url
from order_worker_client.commands import (
    CreateOrderCommand,
    PollOrderCommand,
    ResolveOrderCommand,
    envelope,
)
from order_worker_client.topology import ACTIONS_QUEUE, ACTORS, CREATE_QUEUE, POLL_QUEUE

TraceContextSource = Callable[[], Mapping[str, str] | None]
"""Returns the W3C trace context (``traceparent``, ``tracestate``) a command should carry, or None."""


class PublishError(Exception):
    """A command was not accepted by the broker; sending it again is safe."""


class BrokerUnavailableError(PublishError):
    """No broker URL gave a usable connection (or every one broke while publishing): the command may or
    may not have reached the broker, so send it again once one is reachable."""


class CommandUnroutableError(PublishError):
    """The broker has no queue by the command's routing key (returned message): the service has not
    declared its queues yet (it does on start), or the queue name is wrong."""


class CommandNackedError(PublishError):
    """The broker refused the command (negative confirm), e.g. a queue at its length limit."""


def open_first(
    urls: Sequence[str], start: int = 0, socket_timeout: float = 10.0
) -> tuple[pika.BlockingConnection, int]:
    """A connection to the first of ``urls`` (starting at ``start``, wrapping round) that accepts one,
    and its index; raises BrokerUnavailableError naming the hosts tried (not the credentials).

    A URL's own ``socket_timeout`` and ``blocked_connection_timeout`` query parameters win; without them a
    dead host costs ``socket_timeout`` seconds, and a broker that blocks publishers (a resource alarm)
    fails the publish after 30 s instead of hanging it."""
    failures = []
    for offset in range(len(urls)):
        index = (start + offset) % len(urls)
        parameters = pika.URLParameters(urls[index])
        query = urlsplit(urls[index]).query
        if "socket_timeout" not in query:
            parameters.socket_timeout = socket_timeout
        if "blocked_connection_timeout" not in query:
            parameters.blocked_connection_timeout = max(socket_timeout, 30.0)
        try:
            return pika.BlockingConnection(parameters), index
        except (AMQPError, OSError) as error:
            failures.append(f"{describe_url(urls[index])} ({type(error).__name__})")
    raise BrokerUnavailableError("no broker reachable: " + ", ".join(failures))


class CommandProducer:
    """A confirmed channel for publishing commands; use as a context manager.

    ``broker_url``: one AMQP URL or a sequence of them, tried in turn when connecting and again when a
    connection breaks. The connection opens on first use.
    ``trace_context``: where a command's trace context comes from when the call gives none; by default the
    current OpenTelemetry span's when ``opentelemetry`` is installed, so the service's spans and events
    join the producer's trace."""

    def __init__(
        self,
        broker_url: str | Sequence[str],
        create_queue: str = CREATE_QUEUE,
        poll_queue: str = POLL_QUEUE,
        actions_queue: str = ACTIONS_QUEUE,
        *,
        trace_context: TraceContextSource | None = None,
        socket_timeout: float = 10.0,
    ) -> None:
        self._urls = broker_urls(broker_url)
        self._index = 0
        self._socket_timeout = socket_timeout
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._trace_context = trace_context or current_otel_context
        self.create_queue = create_queue
        self.poll_queue = poll_queue
        self.actions_queue = actions_queue

    def __enter__(self) -> CommandProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def channel(self) -> BlockingChannel:
        """The open confirm-mode channel (connecting when there is none), e.g. to declare queues."""
        if self._channel is None or not self._channel.is_open:
            self.close()
            connection, self._index = open_first(self._urls, self._index, self._socket_timeout)
            try:
                channel = connection.channel()
                channel.confirm_delivery()
            except BaseException:
                _close_quietly(connection)
                raise
            self._connection, self._channel = connection, channel
        return self._channel

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            _close_quietly(connection)

    def publish_raw(self, queue_name: str, body: bytes, message_id: str | None = None) -> str:
        """Publishes ``body`` to ``queue_name`` and returns its message_id once the broker confirmed it.

        Raises CommandUnroutableError (no such queue), CommandNackedError (refused) or
        BrokerUnavailableError (no broker URL worked: each is tried once after a broken connection)."""
        message_id = message_id or str(uuid.uuid4())
        properties = pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent,
            content_type="application/json",
            message_id=message_id,
        )
        broken: list[str] = []
        # The connection in hand may have died since the last publish: after it breaks, every URL gets
        # one fresh try.
        for _ in range(len(self._urls) + 1):
            try:
                channel = self.channel
            except BrokerUnavailableError as error:
                raise BrokerUnavailableError(f"{error}; the command was not sent") from None
            try:
                channel.basic_publish("", queue_name, body, properties, mandatory=True)
                return message_id
            except UnroutableError:
                raise CommandUnroutableError(
                    f"no queue {queue_name!r} on the broker (message {message_id}): start the service, "
                    "which declares its queues, or check the queue name"
                ) from None
            except NackError:
                raise CommandNackedError(
                    f"the broker refused message {message_id} for queue {queue_name!r}"
                ) from None
            except (AMQPError, OSError) as error:
                broken.append(f"{describe_url(self._urls[self._index])} ({type(error).__name__})")
                self.close()
                self._index = (self._index + 1) % len(self._urls)
        raise BrokerUnavailableError(
            f"connection lost while publishing message {message_id} ({', '.join(broken)}): its fate is "
            "unknown; sending the command again is safe"
        )

    def create_order(
        self,
        command: CreateOrderCommand | Mapping[str, Any],
        validate: bool = True,
        trace_context: Mapping[str, str] | None = None,
    ) -> str:
        """Publishes a create; returns the message_id. A mapping is checked against the command model
        first (``validate``), which saves a round trip through the service's rejection path; which
        providers and params a deployment accepts is checked by the service."""
        if isinstance(command, CreateOrderCommand):
            kwargs = command.model_dump(mode="json", exclude_none=True)
        else:
            kwargs = dict(command)
            if validate:
                CreateOrderCommand.model_validate(kwargs)
        return self._send(self.create_queue, ACTORS[CREATE_QUEUE], kwargs, trace_context)

    def poll_order(self, command_id: str, trace_context: Mapping[str, str] | None = None) -> str:
        """Asks the service to poll the partner for the order now; returns the message_id."""
        kwargs = PollOrderCommand(command_id=command_id).model_dump(mode="json")
        return self._send(self.poll_queue, ACTORS[POLL_QUEUE], kwargs, trace_context)

    def resolve_order(
        self,
        command: ResolveOrderCommand | Mapping[str, Any],
        trace_context: Mapping[str, str] | None = None,
    ) -> str:
        """An operator's choice on an ``action_required`` order (validated here; the partner's choices are
        checked by the service, which knows the order's partner); returns the message_id."""
        if not isinstance(command, ResolveOrderCommand):
            command = ResolveOrderCommand.model_validate(dict(command))
        kwargs = command.model_dump(mode="json", exclude_none=True)
        return self._send(self.actions_queue, ACTORS[ACTIONS_QUEUE], kwargs, trace_context)

    def _send(
        self, queue: str, actor: str, kwargs: dict[str, Any], trace_context: Mapping[str, str] | None
    ) -> str:
        context = trace_context if trace_context is not None else self._trace_context()
        options = {"trace_context": dict(context)} if context else {}
        message_id = str(uuid.uuid4())
        return self.publish_raw(queue, envelope(queue, actor, kwargs, message_id, options), message_id)


def current_otel_context() -> Mapping[str, str] | None:
    """The current OpenTelemetry span's W3C context, or None (no span, or OpenTelemetry not installed).
    The service ignores a context it cannot parse, so this never costs a command."""
    try:
        from opentelemetry.trace import get_current_span
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        return None
    if not get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier or None


def _close_quietly(connection: pika.BlockingConnection) -> None:
    if connection.is_open:
        with contextlib.suppress(AMQPError, OSError):
            connection.close()
