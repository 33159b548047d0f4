"""Where commands go and where events come from, with the exact declarations a client must match.

RabbitMQ refuses a declaration whose type or arguments differ from the existing exchange's or queue's
(``PRECONDITION_FAILED - inequivalent arg``), so a client either declares passively (it only checks that
the thing exists) or declares with exactly these arguments. The service declares them on start.
"""

from __future__ import annotations

from typing import Any

CREATE_QUEUE = "orders.create"
POLL_QUEUE = "orders.poll"
ACTIONS_QUEUE = "orders.actions"
QUOTES_QUEUE = "orders.quotes"
EVENTS_EXCHANGE = "orders.events"
EVENTS_EXCHANGE_TYPE = "topic"
UNROUTED_SUFFIX = ".unrouted"
"""The events exchange's alternate exchange (and its queue) is named after it with this suffix: an event
no queue is bound for yet is parked there instead of vanishing."""

ACTORS = {CREATE_QUEUE: "create_order", POLL_QUEUE: "poll_order", ACTIONS_QUEUE: "resolve_order"}
"""The Dramatiq actor each command queue's messages name (``actor_name`` in the envelope)."""


def events_exchange_arguments(exchange: str = EVENTS_EXCHANGE) -> dict[str, Any]:
    """The arguments the events exchange is declared with (durable, type ``topic``)."""
    return {"alternate-exchange": exchange + UNROUTED_SUFFIX}


def event_routing_key(provider: str = "*", event_type: str = "*") -> str:
    """``order.<provider>.<type>``: a binding key for the events of one partner and/or one type
    (``*`` matches any), e.g. ``event_routing_key("itrx")`` or ``event_routing_key(event_type="failed")``."""
    return f"order.{provider}.{event_type}"


QUOTES_MESSAGE_TTL_MS = 60_000
"""The quotes queue drops a request older than this (the longest timeout a request may ask for); each
request also expires after its own timeout."""


def quotes_queue_arguments() -> dict[str, Any]:
    """The arguments of the quotes queue (durable, classic). A quote request is worthless once its
    requester stopped waiting, so it is neither replicated (no quorum queue) nor persistent, and it
    expires instead of waiting for a service that is down."""
    return {"x-queue-type": "classic", "x-message-ttl": QUOTES_MESSAGE_TTL_MS}
