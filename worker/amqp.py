"""One confirmed AMQP channel, reopened after any failure: what the outbox relay and the dead-letter rescuer
publish through. Publisher confirms make ``basic_publish`` return only once the broker has the message, so
an owner can mark its work done right after; any error closes the connection, and the next ``open()``
starts afresh rather than reusing a channel in an unknown state."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError

log = logging.getLogger(__name__)


class ConfirmedChannel:
    def __init__(self, broker_url: str, on_open: Callable[[BlockingChannel], None] | None = None) -> None:
        """``on_open`` runs on every new channel (declarations the owner needs before publishing)."""
        self._parameters = pika.URLParameters(broker_url)
        self._on_open = on_open
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    def open(self) -> BlockingChannel:
        if self._channel is None or not self._channel.is_open:
            self.close()
            self._connection = pika.BlockingConnection(self._parameters)
            channel = self._connection.channel()
            channel.confirm_delivery()
            if self._on_open is not None:
                self._on_open(channel)
            self._channel = channel
        return self._channel

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except AMQPError:
                log.debug("closing a broken AMQP connection failed", exc_info=True)
