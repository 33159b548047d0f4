"""Asking the service for a price: AMQP request/reply over RabbitMQ's direct reply-to.

The reply comes back on the pseudo-queue ``amq.rabbitmq.reply-to``: no queue is declared per client or
per request, and a reply for a requester that has gone is dropped by the broker. The request is published
``mandatory`` with publisher confirms, so when no queue ``orders.quotes`` exists (no quote service was
ever started) the broker returns it at once and :class:`QuoteUnroutable` is raised instead of a timeout.
The request expires in the queue after its timeout (``expiration``), so a service that comes back late
does not spend a partner call on a question nobody waits for.

:class:`QuoteClient` holds one connection for many quotes; :func:`quote` is a single question.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.exceptions import UnroutableError
from pydantic import ValidationError

from order_worker_client.quotes import QUOTE_REPLY, Quote, QuoteError, QuoteRequest
from order_worker_client.topology import QUOTES_QUEUE

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
SENT_AT_HEADER = "sent_at_ms"
"""Request header: the requester's clock (unix milliseconds, an integer) when it sent the request, from
which the service works out how much of ``timeout_seconds`` is left."""


class QuoteFailed(Exception):
    """No quote: ``code`` says why (a :class:`~order_worker_client.quotes.QuoteErrorCode` value, ``timeout``
    or ``no_quote_service``), ``reason`` says it in words."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"


class QuoteRefused(QuoteFailed):
    """The service answered with a :class:`~order_worker_client.quotes.QuoteError`."""

    def __init__(self, error: QuoteError) -> None:
        super().__init__(error.code.value, error.reason)
        self.error = error
        self.retry_after = error.retry_after


class QuoteTimeout(QuoteFailed):
    """No reply within the timeout (no service is consuming the queue, or it is overloaded)."""

    def __init__(self, timeout: float) -> None:
        super().__init__("timeout", f"no quote reply within {timeout:g}s")


class QuoteUnroutable(QuoteFailed):
    """The broker returned the request: the quote queue does not exist, so no quote service runs."""

    def __init__(self, queue: str) -> None:
        super().__init__("no_quote_service", f"the broker has no queue {queue!r} to take the request")


class QuoteClient:
    """Quotes over one connection. Not thread-safe (pika's blocking connection is not): one per thread.

    Give ``connection`` to share a connection you own (this client opens a channel on it and leaves the
    connection open on :meth:`close`), else the client connects to ``broker_url``.
    """

    def __init__(
        self,
        broker_url: str = DEFAULT_BROKER_URL,
        *,
        connection: BlockingConnection | None = None,
        queue: str = QUOTES_QUEUE,
    ) -> None:
        self.queue = queue
        self._owns_connection = connection is None
        self._connection = connection or pika.BlockingConnection(pika.URLParameters(broker_url))
        self._channel: BlockingChannel = self._connection.channel()
        self._channel.confirm_delivery()
        # Direct reply-to needs the consumer, in no-ack mode, before the first request is published.
        self._channel.basic_consume(DIRECT_REPLY_TO, self._on_reply, auto_ack=True)
        self._waiting: str | None = None
        self._reply: bytes | None = None

    def __enter__(self) -> QuoteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._channel.is_open:
            self._channel.close()
        if self._owns_connection and self._connection.is_open:
            self._connection.close()

    def quote(
        self,
        provider: str,
        params: Mapping[str, Any],
        timeout: float = 5.0,
        *,
        account: str | None = None,
    ) -> Quote:
        """A price from ``provider`` for ``params`` within ``timeout`` seconds. Raises
        :class:`QuoteRefused`, :class:`QuoteTimeout`, :class:`QuoteUnroutable`, pydantic's
        ``ValidationError`` for a request that cannot be sent, or pika's errors when the broker is lost."""
        request = QuoteRequest(
            provider=provider, account=account, params=dict(params), timeout_seconds=timeout
        )
        return self.ask(request)

    def ask(self, request: QuoteRequest) -> Quote:
        """:meth:`quote` for a ready request."""
        timeout = request.timeout_seconds
        deadline = time.monotonic() + timeout
        correlation_id = uuid.uuid4().hex
        properties = pika.BasicProperties(
            content_type="application/json",
            reply_to=DIRECT_REPLY_TO,
            correlation_id=correlation_id,
            expiration=str(max(1, int(timeout * 1000))),
            headers={SENT_AT_HEADER: int(time.time() * 1000)},
            type="quote_request",
        )
        self._waiting, self._reply = correlation_id, None
        try:
            try:
                self._channel.basic_publish(
                    "", self.queue, request.model_dump_json().encode(), properties, mandatory=True
                )
            except UnroutableError:
                raise QuoteUnroutable(self.queue) from None
            while self._reply is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise QuoteTimeout(timeout)
                self._connection.process_data_events(time_limit=remaining)
            body = self._reply
        finally:
            self._waiting = None
        return _parsed(body)

    def _on_reply(
        self,
        channel: BlockingChannel,
        method: Any,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        # A reply to an earlier request that timed out carries another correlation id: dropped.
        if self._waiting is not None and properties.correlation_id == self._waiting:
            self._reply = body


def _parsed(body: bytes) -> Quote:
    try:
        reply = QUOTE_REPLY.validate_json(body)
    except ValidationError:
        raise QuoteFailed("invalid_reply", "the quote reply is not a Quote or a QuoteError") from None
    if isinstance(reply, QuoteError):
        raise QuoteRefused(reply)
    return reply


def quote(
    provider: str,
    params: Mapping[str, Any],
    timeout: float = 5.0,
    *,
    broker_url: str = DEFAULT_BROKER_URL,
    connection: BlockingConnection | None = None,
    account: str | None = None,
    queue: str = QUOTES_QUEUE,
) -> Quote:
    """One quote on a connection of its own (or on ``connection``); see :meth:`QuoteClient.quote`. For
    many quotes keep a :class:`QuoteClient`: connecting costs more than the quote."""
    with QuoteClient(broker_url, connection=connection, queue=queue) as client:
        return client.quote(provider, params, timeout, account=account)
