"""order-worker's message contract for producers and consumers in Python.

* :mod:`order_worker_client.commands`: the commands (create, poll, resolve) and their message format;
* :mod:`order_worker_client.events`: the events, read leniently so that new fields never break a consumer;
* :mod:`order_worker_client.topology`: queue and exchange names, and the exchange's exact arguments;
* :mod:`order_worker_client.quotes` and :mod:`order_worker_client.quoting`: price quotes over the bus.

It needs pika and pydantic only. Other languages build against the AsyncAPI document the service ships
(``order-worker schemas asyncapi``).
"""

from order_worker_client.commands import (
    CreateOrderCommand,
    PollOrderCommand,
    ResolveOrderCommand,
    envelope,
)
from order_worker_client.events import SCHEMA_VERSION, EventType, OrderEvent, Source, Status
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
    "CreateOrderCommand",
    "EventType",
    "OrderEvent",
    "PollOrderCommand",
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
    "ResolveOrderCommand",
    "Source",
    "Status",
    "envelope",
    "quote",
]
