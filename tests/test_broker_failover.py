"""Clients given several broker URLs move to another node when theirs goes away, without being told.

Two TCP proxies in front of the shared broker stand for two nodes of a cluster: pausing one (it resets its
connections and refuses new ones) is what a client sees when its node dies. The cluster itself (three
real nodes killed and frozen under load) is the reliability scenario ``tests/reliability/test_cluster.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pika
import pytest
from order_worker_client.brokers import broker_urls
from order_worker_client.producer import CommandProducer

from tests.support.faults import TcpFaultProxy
from tests.support.stack import RABBITMQ_URL
from worker.bus.connection import connection_parameters
from worker.bus.publishing import BatchPublisher, Outgoing


@pytest.fixture
def nodes() -> Iterator[list[TcpFaultProxy]]:
    port = urlsplit(RABBITMQ_URL).port or 5672
    proxies = [TcpFaultProxy(port), TcpFaultProxy(port)]
    yield proxies
    for proxy in proxies:
        proxy.close()


@pytest.fixture
def queue() -> Iterator[str]:
    name = f"t{uuid.uuid4().hex[:10]}.failover"
    with pika.BlockingConnection(connection_parameters(RABBITMQ_URL)) as connection:
        connection.channel().queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
    yield name
    with pika.BlockingConnection(connection_parameters(RABBITMQ_URL)) as connection:
        connection.channel().queue_delete(name)


def cluster_url(proxies: list[TcpFaultProxy]) -> str:
    parts = urlsplit(RABBITMQ_URL)
    credentials = parts.netloc.rpartition("@")[0]
    return ",".join(f"{parts.scheme}://{credentials}@127.0.0.1:{p.port}{parts.path}" for p in proxies)


def depth(queue: str) -> int:
    with pika.BlockingConnection(connection_parameters(RABBITMQ_URL)) as connection:
        count: int = connection.channel().queue_declare(queue, passive=True).method.message_count
    return count


def the_node_in_use(proxies: list[TcpFaultProxy]) -> TcpFaultProxy:
    used = [proxy for proxy in proxies if proxy.live]
    assert len(used) == 1, f"expected one node in use, found {len(used)}"
    return used[0]


def test_the_client_producer_resends_on_a_surviving_node(nodes: list[TcpFaultProxy], queue: str) -> None:
    with CommandProducer(broker_urls(cluster_url(nodes))) as producer:
        producer.publish_raw(queue, b'{"first": true}')
        died = the_node_in_use(nodes)
        died.pause()
        producer.publish_raw(queue, b'{"second": true}')
        assert the_node_in_use(nodes) is not died
    assert depth(queue) == 2


def test_the_batch_publisher_reconnects_to_a_surviving_node(nodes: list[TcpFaultProxy], queue: str) -> None:
    publisher = BatchPublisher(cluster_url(nodes))

    def batch() -> list[Outgoing]:
        return [
            Outgoing("", queue, b"{}", pika.BasicProperties(message_id=str(uuid.uuid4()), delivery_mode=2))
            for _ in range(3)
        ]

    try:
        assert publisher.publish(batch()) == [True] * 3
        died = the_node_in_use(nodes)
        died.pause()
        outcomes: list[bool] | None = None
        for _ in range(2):  # the batch in flight when the node died fails; the next one goes elsewhere
            try:
                outcomes = publisher.publish(batch())
                break
            except pika.exceptions.AMQPError:
                continue
        assert outcomes == [True] * 3
        assert the_node_in_use(nodes) is not died
    finally:
        publisher.close()
    assert depth(queue) == 6


def test_a_client_connects_while_one_node_is_down(nodes: list[TcpFaultProxy], queue: str) -> None:
    nodes[0].pause()
    for _ in range(5):  # whichever order the nodes come in
        with CommandProducer(broker_urls(cluster_url(nodes))) as producer:
            producer.publish_raw(queue, b"{}")
    assert depth(queue) == 5
