"""Every queue and exchange the service uses, declared from one definition.

RabbitMQ refuses a declaration whose arguments differ from the existing queue's, so whoever declares
first (a publisher before any worker started, the scheduler, a test) must declare exactly what the worker
will; keeping each declaration in one function here is what guarantees that.

* Work queues are quorum queues with ``x-delivery-limit``: a message that kills the worker every time (so
  it can never be nacked by code) is dead-lettered by RabbitMQ after N deliveries instead of looping
  forever. Each has Dramatiq's delay queue (``.DQ``) and dead-letter queue (``.XQ``).
* The quotes queue is a classic queue whose requests expire (``x-message-ttl``, and each request's own
  ``expiration``): a quote nobody waits for any more is worth nothing, so it is not replicated either.
* The events exchange is a durable topic exchange whose alternate exchange parks an event nobody is bound
  for yet in ``<exchange>.unrouted`` instead of letting it vanish.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL
from dramatiq.common import dq_name, xq_name
from order_worker_client.topology import (
    EVENTS_EXCHANGE_TYPE,
    UNROUTED_SUFFIX,
    events_exchange_arguments,
    quotes_queue_arguments,
)
from pika.adapters.blocking_connection import BlockingChannel


def work_queue_arguments(queue_name: str, delivery_limit: int) -> dict[str, Any]:
    """The arguments of a work queue and of its delay queue (both dead-letter into the ``.XQ`` queue)."""
    return {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": xq_name(queue_name),
        "x-queue-type": "quorum",
        "x-delivery-limit": delivery_limit,
    }


def dead_letter_queue(queue_name: str) -> str:
    """Where RabbitMQ dead-letters the messages of a work queue."""
    return xq_name(queue_name)


def declare_work_queues(channel: BlockingChannel, queue_names: Iterable[str], delivery_limit: int) -> None:
    """Each queue with its delay and dead-letter queues, exactly as the worker's broker declares them."""
    for name in queue_names:
        arguments = work_queue_arguments(name, delivery_limit)
        channel.queue_declare(name, durable=True, arguments=arguments)
        channel.queue_declare(dq_name(name), durable=True, arguments=arguments)
        channel.queue_declare(xq_name(name), durable=True, arguments={"x-message-ttl": DEAD_MESSAGE_TTL})


def declare_quotes_queue(channel: BlockingChannel, queue_name: str) -> None:
    """The queue quote requests arrive on, as the quote service declares it."""
    channel.queue_declare(queue_name, durable=True, arguments=quotes_queue_arguments())


def declare_events_exchange(channel: BlockingChannel, exchange: str) -> None:
    """The events exchange (durable topic) and the parking place for unroutable events."""
    unrouted = exchange + UNROUTED_SUFFIX
    channel.exchange_declare(unrouted, exchange_type="fanout", durable=True)
    channel.queue_declare(unrouted, durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_bind(unrouted, unrouted)
    channel.exchange_declare(
        exchange,
        exchange_type=EVENTS_EXCHANGE_TYPE,
        durable=True,
        arguments=events_exchange_arguments(exchange),
    )
