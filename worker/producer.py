"""Publishing commands without Dramatiq: the exact envelope any AMQP client (Node, Go, ...) can send.

A command is a JSON object published to the default exchange with the queue name as routing key,
persistent, with publisher confirms and ``mandatory`` so a missing queue is an error, not a silent drop.
This module is both the Python helper and the reference the README's raw-AMQP example follows.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel

from worker.amqp import BatchPublisher, Outgoing
from worker.messages import CreateOrderCommand, PollOrderCommand
from worker.partners import registry

COMMAND_PROPERTIES = {"delivery_mode": pika.DeliveryMode.Persistent, "content_type": "application/json"}


def envelope(
    queue_name: str,
    actor_name: str,
    kwargs: dict[str, Any],
    message_id: str | None = None,
    options: dict[str, Any] | None = None,
) -> bytes:
    """The Dramatiq message format (version-stable since Dramatiq 1.0); ``options`` as the README's command
    contract allows."""
    return json.dumps(
        {
            "queue_name": queue_name,
            "actor_name": actor_name,
            "args": [],
            "kwargs": kwargs,
            "options": options or {},
            "message_id": message_id or str(uuid.uuid4()),
            "message_timestamp": int(time.time() * 1000),
        },
        separators=(",", ":"),
    ).encode()


class CommandProducer:
    """A confirmed channel for publishing commands; use as a context manager."""

    def __init__(
        self, broker_url: str, create_queue: str = "orders.create", poll_queue: str = "orders.poll"
    ) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(broker_url))
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        self.create_queue = create_queue
        self.poll_queue = poll_queue

    def __enter__(self) -> CommandProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()

    def publish_raw(self, queue_name: str, body: bytes) -> None:
        """Raises pika.exceptions.UnroutableError when the queue does not exist (no worker started yet)."""
        self.channel.basic_publish(
            exchange="",
            routing_key=queue_name,
            body=body,
            properties=pika.BasicProperties(**COMMAND_PROPERTIES),
            mandatory=True,
        )

    def create_order(self, command: CreateOrderCommand | dict[str, Any], validate: bool = True) -> None:
        """Validating here first saves a round trip through the rejection path for obvious mistakes."""
        if isinstance(command, CreateOrderCommand):
            kwargs = command.model_dump(mode="json", exclude_none=True)
        else:
            kwargs = command
            if validate:
                registry.check_command(CreateOrderCommand.model_validate(kwargs))
        self.publish_raw(self.create_queue, envelope(self.create_queue, "create_order", kwargs))

    def poll_order(self, command_id: str) -> None:
        PollOrderCommand(command_id=command_id)
        self.publish_raw(self.poll_queue, envelope(self.poll_queue, "poll_order", {"command_id": command_id}))


class CommandBatchPublisher:
    """Commands in batches confirmed at once (``worker.amqp.BatchPublisher``): how the scheduler hands out
    due polls and stuck creates, a few hundred per pass, without a broker round trip per command."""

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
