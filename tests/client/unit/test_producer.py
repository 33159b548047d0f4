"""The producer against a real broker: confirmed, mandatory, the message format the service expects, and
a clear exception (never a silent drop) when the broker has no queue for a command or refuses it."""

from __future__ import annotations

import json
import socket
import uuid
from typing import Any

import pika
import pytest
from order_worker_client import (
    BrokerUnavailableError,
    CommandNackedError,
    CommandProducer,
    CommandUnroutableError,
    PublishError,
)
from order_worker_client.brokers import broker_urls, describe_url

from tests.client.unit.conftest import Names, admin

pytestmark = pytest.mark.rabbitmq


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _command() -> dict[str, object]:
    return {"command_id": f"cl-{uuid.uuid4().hex}", "provider": "itrx", "params": {"energy_amount": 65000}}


def _get(broker_url: str, queue: str) -> tuple[pika.BasicProperties, dict[str, Any]]:
    connection = admin(broker_url)
    try:
        method, properties, body = connection.channel().basic_get(queue, auto_ack=True)
        assert method is not None, f"nothing in {queue}"
        return properties, json.loads(body)
    finally:
        connection.close()


def _declare(broker_url: str, *queues: str, **arguments: object) -> None:
    connection = admin(broker_url)
    for queue in queues:
        connection.channel().queue_declare(queue, durable=True, arguments=dict(arguments) or None)
    connection.close()


def test_commands_arrive_in_the_envelope_persistent_with_their_message_id(
    broker_url: str, names: Names
) -> None:
    create, poll, actions = names("create"), names("poll"), names("actions")
    _declare(broker_url, create, poll, actions)
    command = _command()
    with CommandProducer(broker_url, create, poll, actions) as producer:
        created = producer.create_order(
            command, trace_context={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}
        )
        polled = producer.poll_order(str(command["command_id"]))
        resolved = producer.resolve_order(
            {
                "action_id": f"act-{uuid.uuid4().hex}",
                "command_id": command["command_id"],
                "choice": "EXCHANGE",
            }
        )
    properties, body = _get(broker_url, create)
    assert properties.delivery_mode == 2 and properties.content_type == "application/json"
    assert properties.message_id == created == body["message_id"]
    assert body["queue_name"] == create and body["actor_name"] == "create_order"
    assert body["kwargs"] == command and body["args"] == []
    assert body["options"] == {"trace_context": {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}}
    properties, body = _get(broker_url, poll)
    assert (body["actor_name"], body["kwargs"], body["message_id"]) == (
        "poll_order",
        {"command_id": command["command_id"]},
        polled,
    )
    properties, body = _get(broker_url, actions)
    assert body["actor_name"] == "resolve_order" and properties.message_id == resolved


def test_a_command_for_a_missing_queue_raises_instead_of_vanishing(broker_url: str, names: Names) -> None:
    with (
        CommandProducer(broker_url, names("nowhere")) as producer,
        pytest.raises(CommandUnroutableError) as raised,
    ):
        producer.create_order(_command())
    assert names.prefix in str(raised.value) and "start the service" in str(raised.value)
    assert isinstance(raised.value, PublishError)


def test_a_refused_command_raises(broker_url: str, names: Names) -> None:
    """A queue at its length limit with ``reject-publish`` overflow nacks what it cannot take."""
    full = names("full")
    _declare(broker_url, full, **{"x-max-length": 1, "x-overflow": "reject-publish"})
    with CommandProducer(broker_url, full) as producer:
        producer.create_order(_command())
        with pytest.raises(CommandNackedError):
            producer.create_order(_command())


def test_an_invalid_command_is_refused_before_publishing(broker_url: str, names: Names) -> None:
    queue = names("create")
    _declare(broker_url, queue)
    with CommandProducer(broker_url, queue) as producer:
        with pytest.raises(ValueError, match="command_id"):
            producer.create_order({"command_id": "short", "provider": "itrx", "params": {}})
        producer.create_order({"command_id": "short", "provider": "itrx", "params": {}}, validate=False)
    assert _get(broker_url, queue)[1]["kwargs"]["command_id"] == "short"


def test_broker_urls_are_tried_in_turn(broker_url: str, names: Names) -> None:
    queue = names("create")
    _declare(broker_url, queue)
    dead = f"amqp://guest:secret-pw@127.0.0.1:{_free_port()}/%2F"
    with CommandProducer([dead, broker_url], queue) as producer:
        producer.create_order(_command())
    assert _get(broker_url, queue)[1]["actor_name"] == "create_order"


def test_no_reachable_broker_is_a_clear_error_without_credentials() -> None:
    dead = [f"amqp://guest:secret-pw@127.0.0.1:{_free_port()}/%2F" for _ in range(2)]
    with CommandProducer(dead) as producer, pytest.raises(BrokerUnavailableError) as raised:
        producer.create_order(_command())
    text = str(raised.value)
    assert "no broker reachable" in text and "127.0.0.1" in text and "secret-pw" not in text


def test_a_broken_connection_is_replaced_and_the_command_sent(broker_url: str, names: Names) -> None:
    queue = names("create")
    _declare(broker_url, queue)
    with CommandProducer(broker_url, queue) as producer:
        producer.create_order(_command())
        # the connection dies under the producer (as when the broker node goes away)
        producer.channel.connection._impl._transport._sock.shutdown(socket.SHUT_RDWR)
        producer.create_order(_command())
    connection = admin(broker_url)
    try:
        depth = connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()
    assert depth >= 2


def test_broker_urls_and_their_description() -> None:
    assert broker_urls("amqp://a") == ["amqp://a"]
    assert broker_urls(["amqp://a", "amqp://b"]) == ["amqp://a", "amqp://b"]
    with pytest.raises(ValueError):
        broker_urls([])
    assert describe_url("amqps://u:p@rabbit.internal/vhost") == "rabbit.internal:5671"
    assert describe_url("amqp://u:p@10.0.0.1:5673/%2F") == "10.0.0.1:5673"
