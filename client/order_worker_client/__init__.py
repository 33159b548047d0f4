"""order-worker's message contract for producers and consumers in Python.

* :mod:`order_worker_client.commands`: the commands (create, poll, resolve) and their message format;
* :mod:`order_worker_client.events`: the events, read leniently so that new fields never break a consumer;
* :mod:`order_worker_client.topology`: queue and exchange names, and the exchange's exact arguments.

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

__all__ = [
    "SCHEMA_VERSION",
    "CreateOrderCommand",
    "EventType",
    "OrderEvent",
    "PollOrderCommand",
    "ResolveOrderCommand",
    "Source",
    "Status",
    "envelope",
]
