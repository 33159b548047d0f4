"""The client's own tests: they import ``order_worker_client`` and pika only, never the service, so that
they run in an environment where only the client package is installed (``deploy/client-check.sh``).
Tests marked ``rabbitmq`` use the real broker, each on queues and exchanges of its own."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pika
import pytest

BROKER_URL = os.environ.get("ORDER_WORKER_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


@pytest.fixture
def broker_url() -> str:
    parts = urlsplit(BROKER_URL)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout=2).close()
    except OSError:
        pytest.fail(
            f"RabbitMQ is not reachable at {parts.hostname}:{parts.port}; run 'bash deploy/dev.sh broker'"
        )
    return BROKER_URL


class Names:
    """Names of the test's own queues and exchanges; each is deleted (as both) afterwards."""

    def __init__(self) -> None:
        self.prefix = f"client-test-{uuid.uuid4().hex[:10]}"
        self.made: list[str] = []

    def __call__(self, suffix: str) -> str:
        name = f"{self.prefix}.{suffix}"
        self.made.append(name)
        return name


@pytest.fixture
def names(broker_url: str) -> Iterator[Names]:
    made = Names()
    yield made
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    for name in made.made:
        channel.queue_delete(name)
        channel.exchange_delete(name)
    connection.close()


def admin(broker_url: str) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.URLParameters(broker_url))
