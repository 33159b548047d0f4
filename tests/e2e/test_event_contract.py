"""The events as a consumer meets them: bound the way the README says, with a plain AMQP client (pika, no
order-worker code), read with the properties and body fields the contract promises."""

from __future__ import annotations

import json
import time
from contextlib import closing
from datetime import datetime
from decimal import Decimal
from typing import Any

import pika
import pytest
from order_worker_client.events import SCHEMA_VERSION, OrderEvent
from order_worker_client.orders import ZeroTraceOrder, typed_order
from order_worker_client.topology import EVENTS_EXCHANGE_TYPE, events_exchange_arguments
from pika.exceptions import ChannelClosedByBroker

from tests.support.partners import zerotrace_command
from tests.support.stack import Stack


def _events_for(
    channel: Any, queue: str, command_id: str, count: int, timeout: float
) -> list[tuple[Any, dict[str, Any]]]:
    seen: list[tuple[Any, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout
    for method, properties, body in channel.consume(queue, inactivity_timeout=0.5):
        if method is not None:
            event = json.loads(body)
            channel.basic_ack(method.delivery_tag)
            if event["command_id"] == command_id:
                seen.append((properties, event))
        if len(seen) >= count or time.monotonic() > deadline:
            break
    channel.cancel()
    return seen


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_a_queue_bound_as_the_readme_says_receives_events_with_their_properties(stack: Stack) -> None:
    stack.start_worker()
    stack.start_scheduler()
    with closing(pika.BlockingConnection(pika.URLParameters(stack.broker_url))) as connection:
        channel = connection.channel()
        channel.exchange_declare(  # as the service declares it: the same type and arguments are accepted
            stack.exchange,
            exchange_type=EVENTS_EXCHANGE_TYPE,
            durable=True,
            arguments=events_exchange_arguments(stack.exchange),
        )
        channel.exchange_declare(stack.exchange, passive=True)
        habit = connection.channel()
        with pytest.raises(ChannelClosedByBroker) as refused:
            habit.exchange_declare(stack.exchange, exchange_type="topic", durable=True)
        assert refused.value.reply_code == 406 and "alternate-exchange" in refused.value.reply_text

        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(queue, stack.exchange, routing_key="order.0trace.*")

        command = zerotrace_command()
        with stack.producer() as producer:
            producer.create_order(command)
        ((properties, body),) = _events_for(channel, queue, command["command_id"], 1, timeout=60)

    assert properties.message_id == body["event_id"]
    assert properties.type == body["type"] == "created"
    assert properties.correlation_id == command["command_id"]
    assert properties.content_type == "application/json" and properties.delivery_mode == 2
    assert body["schema_version"] == SCHEMA_VERSION and body["seq"] == 1
    assert datetime.fromisoformat(body["occurred_at"]).utcoffset() is not None
    assert body["occurred_at"].endswith("Z")

    event = OrderEvent.model_validate({**body, "a_field_added_later": {"nested": True}})
    assert event.event_id == body["event_id"] and event.seq == 1
    order = typed_order(event.provider, event.order)
    assert isinstance(order, ZeroTraceOrder) and order.id == body["order_id"]
    assert Decimal(order.from_amount or "nan") == Decimal(command["params"]["amount"])
