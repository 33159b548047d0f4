"""The one way this service holds a blocking pika connection.

The event watcher, the dead-letter rescuer and the batch publisher's declarations each need the same
lifecycle, and a slip in any copy of it leaks a socket or reuses a broken channel: open on first use, run
the owner's declarations on every new channel, start afresh after a failure rather than reuse a channel in
an unknown state, and close without raising (a connection that broke is already as closed as its owner
needs). The batch publisher's confirm stream is one exception: it keeps many confirms in flight, which only
pika's asynchronous connection can, so its I/O loop lives beside it in ``worker.bus.publishing``. The
other is the command producer the CLI and the demo use: it is the client package's
(``order_worker_client.producer``), which producers install without this service.

A broker URL setting may name several nodes of a cluster (``worker.settings.broker_urls``).
:func:`connection_parameters` is the one place they become pika's parameters: every new connection gets
them in a fresh random order and pika's ``BlockingConnection`` tries each in turn, so the clients of a
service spread over the nodes, and a client whose node died reaches a surviving one on its next connection
without waiting for that node to refuse it first.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pika
from order_worker_client.brokers import broker_urls
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError

from worker.logs import get_logger

log = get_logger(__name__)


def connection_parameters(broker_url: str, *, shuffle: bool = True) -> list[pika.URLParameters]:
    """pika's parameters for every node a broker URL setting names, shuffled unless ``shuffle`` is off."""
    parameters = [pika.URLParameters(url) for url in broker_urls(broker_url)]
    if not parameters:
        raise ValueError("no broker URL given")
    if shuffle:
        random.shuffle(parameters)
    return parameters


class BlockingLink:
    """A blocking connection with one channel; use as a context manager or call ``open`` and ``close``."""

    def __init__(
        self,
        broker_url: str,
        *,
        confirm: bool = False,
        on_open: Callable[[BlockingChannel], None] | None = None,
    ) -> None:
        """``confirm``: publisher confirms, so that ``basic_publish`` returns once the broker has the
        message. ``on_open`` runs on every new channel (declarations the owner needs before using it)."""
        self._broker_url = broker_url
        connection_parameters(broker_url)  # a setting that names no node fails here, not on first use
        self._confirm = confirm
        self._on_open = on_open
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None

    def open(self) -> BlockingChannel:
        """The open channel, or a new one on a new connection when there is none or it broke."""
        if self._channel is None or not self._channel.is_open:
            self.close()
            self._connection = pika.BlockingConnection(connection_parameters(self._broker_url))
            try:
                channel = self._connection.channel()
                if self._confirm:
                    channel.confirm_delivery()
                if self._on_open is not None:
                    self._on_open(channel)
            except BaseException:
                self.close()
                raise
            self._channel = channel
        return self._channel

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except AMQPError:
                log.debug("amqp_close_failed", exc_info=True)

    def __enter__(self) -> BlockingChannel:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


def broker_check(broker_url: str) -> Callable[[], str | None]:
    """A readiness check (``worker.observability``): connects to any of the broker's nodes and leaves at
    once, and raises when none can be reached within about two seconds each, so a probe never hangs on a
    stalled broker."""

    def check() -> str | None:
        parameters = connection_parameters(broker_url)
        for each in parameters:
            each.socket_timeout = 2
            each.stack_timeout = 2
            each.blocked_connection_timeout = 2
        connection = pika.BlockingConnection(parameters)
        connection.close()
        return None

    return check
