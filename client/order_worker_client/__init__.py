"""order-worker's message contract for producers and consumers in Python.

* :mod:`order_worker_client.commands`: the commands (create, poll, resolve) and their message format;
* :mod:`order_worker_client.events`: the events, read leniently so that new fields never break a consumer;
* :mod:`order_worker_client.topology`: queue and exchange names, and the exchange's exact arguments;
* :mod:`order_worker_client.quotes` and :mod:`order_worker_client.quoting`: price quotes over the bus.
* :mod:`order_worker_client.producer`: publishing commands, confirmed (:class:`CommandProducer`);
* :mod:`order_worker_client.consumer`: consuming events at least once (:class:`EventConsumer`).

It needs pika and pydantic only. Other languages build against the AsyncAPI document the service ships
(``order-worker schemas asyncapi``).
"""

from order_worker_client.commands import (
    CreateOrderCommand,
    PollOrderCommand,
    ResolveOrderCommand,
    envelope,
)
from order_worker_client.consumer import EventConsumer, RecentEvents, SeenEvents, deduplicated
from order_worker_client.events import SCHEMA_VERSION, EventType, OrderEvent, Source, Status
from order_worker_client.producer import (
    BrokerUnavailableError,
    CommandNackedError,
    CommandProducer,
    CommandUnroutableError,
    PublishError,
)
from order_worker_client.quotes import Quote, QuoteAmount, QuoteError, QuoteErrorCode, QuoteRequest
from order_worker_client.quoting import (
    QuoteClient,
    QuoteFailed,
    QuoteRefused,
    QuoteTimeout,
    QuoteUnroutable,
    quote,
)

__all__ = [
    "SCHEMA_VERSION",
    "BrokerUnavailableError",
    "CommandNackedError",
    "CommandProducer",
    "CommandUnroutableError",
    "CreateOrderCommand",
    "EventConsumer",
    "EventType",
    "OrderEvent",
    "PollOrderCommand",
    "PublishError",
    "Quote",
    "QuoteAmount",
    "QuoteClient",
    "QuoteError",
    "QuoteErrorCode",
    "QuoteFailed",
    "QuoteRefused",
    "QuoteRequest",
    "QuoteTimeout",
    "QuoteUnroutable",
    "RecentEvents",
    "ResolveOrderCommand",
    "SeenEvents",
    "Source",
    "Status",
    "deduplicated",
    "envelope",
    "quote",
]
