"""Batched publisher confirms, and the relay and scheduler publishing built on them, against the real
RabbitMQ.

The broker's own refusals are provoked for real: a queue full under ``x-overflow: reject-publish`` nacks,
a mandatory message with no route comes back, a publish to a missing exchange closes the channel.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPConnectionError, ChannelClosedByBroker

from tests.ledger.helpers import T0, created
from tests.support.stack import RABBITMQ_URL, require_service
from worker.bus.envelope import parse_envelope
from worker.bus.publishing import BatchPublisher, CommandBatchPublisher, Outgoing
from worker.bus.rabbitmq import QuorumRabbitmqBroker
from worker.bus.relay import EventPublisher, OutboxRelay
from worker.bus.topology import UNROUTED_SUFFIX, declare_work_queues
from worker.ledger.base import Ledger
from worker.processes import free_port


@pytest.fixture(scope="module")
def admin() -> Iterator[BlockingChannel]:
    require_service("127.0.0.1", 5672, f"RabbitMQ ({RABBITMQ_URL})", "Run 'bash deploy/dev.sh broker'.")
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    yield connection.channel()
    connection.close()


@pytest.fixture
def names(admin: BlockingChannel) -> Iterator[Callable[[str], str]]:
    """Unique exchange/queue names, deleted afterwards."""
    made: list[str] = []

    def make(kind: str) -> str:
        made.append(f"t{uuid.uuid4().hex[:10]}.{kind}")
        return made[-1]

    yield make
    for name in made:
        admin.queue_delete(name)
        admin.exchange_delete(name)
        admin.queue_delete(name + UNROUTED_SUFFIX)
        admin.exchange_delete(name + UNROUTED_SUFFIX)


def message(exchange: str, routing_key: str, body: bytes = b"{}") -> Outgoing:
    return Outgoing(exchange, routing_key, body, pika.BasicProperties(message_id=str(uuid.uuid4())))


def drain(admin: BlockingChannel, queue: str) -> list[tuple[str, bytes]]:
    got = []
    while True:
        method, properties, body = admin.basic_get(queue, auto_ack=True)
        if method is None:
            return got
        got.append((properties.message_id, body))


def direct_with_queue(admin: BlockingChannel, exchange: str, queue: str, **arguments: object) -> None:
    admin.exchange_declare(exchange, exchange_type="direct", durable=False, auto_delete=False)
    admin.queue_declare(queue, arguments=dict(arguments) or None)
    admin.queue_bind(queue, exchange, routing_key="routed")


def test_a_batch_is_confirmed_whole_and_arrives_in_order(
    admin: BlockingChannel, names: Callable[[str], str]
) -> None:
    exchange, queue = names("x"), names("q")
    direct_with_queue(admin, exchange, queue)
    publisher = BatchPublisher(RABBITMQ_URL)
    try:
        batch = [message(exchange, "routed", str(i).encode()) for i in range(300)]
        assert publisher.publish(batch) == [True] * 300
        assert publisher.publish([]) == []
        assert publisher.publish(batch[:2]) == [True, True]  # the same connection serves the next batch
    finally:
        publisher.close()
    arrived = drain(admin, queue)
    assert [body for _, body in arrived[:300]] == [str(i).encode() for i in range(300)]
    assert [mid for mid, _ in arrived] == [m.properties.message_id for m in batch + batch[:2]]


def test_nacked_and_returned_messages_are_reported_one_by_one(
    admin: BlockingChannel, names: Callable[[str], str]
) -> None:
    exchange, queue = names("x"), names("q")
    direct_with_queue(admin, exchange, queue, **{"x-max-length": 3, "x-overflow": "reject-publish"})
    publisher = BatchPublisher(RABBITMQ_URL)
    try:
        batch = [message(exchange, "routed") for _ in range(5)]
        batch.insert(1, message(exchange, "nowhere"))  # mandatory, no binding: returned
        assert publisher.publish(batch) == [True, False, True, True, False, False]
    finally:
        publisher.close()
    assert len(drain(admin, queue)) == 3


def test_a_closed_channel_fails_the_batch_and_the_next_batch_reconnects(
    admin: BlockingChannel, names: Callable[[str], str]
) -> None:
    exchange, queue = names("x"), names("q")
    direct_with_queue(admin, exchange, queue)
    prepared: list[int] = []
    publisher = BatchPublisher(RABBITMQ_URL, prepare=lambda channel: prepared.append(channel.channel_number))
    threads_before = threading.active_count()
    try:
        assert publisher.publish([message(exchange, "routed")]) == [True]
        with pytest.raises(ChannelClosedByBroker) as failure:
            publisher.publish([message(exchange, "routed"), message(names("missing"), "routed")])
        assert failure.value.reply_code == 404
        assert publisher.publish([message(exchange, "routed")]) == [True]
        assert len(prepared) == 2  # once per connection
        assert threading.active_count() == threads_before + 1  # the failed connection's loop thread is gone
    finally:
        publisher.close()
    assert threading.active_count() == threads_before
    # Whatever the failed batch held is unknown to the caller; the batches around it arrived.
    assert len(drain(admin, queue)) in (2, 3)


def test_an_unreachable_broker_raises_promptly_and_leaves_no_thread() -> None:
    threads_before = threading.active_count()
    publisher = BatchPublisher(f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F?connection_attempts=1")
    with pytest.raises(AMQPConnectionError):
        publisher.publish([message("any", "any")])
    publisher.close()
    assert threading.active_count() == threads_before


def test_scheduler_commands_go_out_in_one_batch_as_dramatiq_envelopes(
    admin: BlockingChannel, names: Callable[[str], str]
) -> None:
    create_queue, poll_queue = names("create"), names("poll")
    admin.queue_declare(poll_queue)
    declared: list[str] = []
    publisher = CommandBatchPublisher(
        RABBITMQ_URL,
        {"create_order": create_queue, "poll_order": poll_queue},
        prepare=lambda channel: declared.append("once"),
    )
    try:
        outcomes = publisher.publish(
            [
                ("poll_order", {"command_id": "cmd-1"}),
                ("create_order", {"command_id": "cmd-2"}),  # its queue does not exist: returned
                ("poll_order", {"command_id": "cmd-3"}),
            ]
        )
    finally:
        publisher.close()
    assert outcomes == [True, False, True]
    assert declared == ["once"]
    arrived = drain(admin, poll_queue)
    assert [json.loads(body)["kwargs"] for _, body in arrived] == [
        {"command_id": "cmd-1"},
        {"command_id": "cmd-3"},
    ]
    for message_id, body in arrived:
        envelope = json.loads(body)
        assert not isinstance(parse_envelope(body), tuple)  # what the worker's decoder accepts
        assert (envelope["queue_name"], envelope["actor_name"]) == (poll_queue, "poll_order")
        assert envelope["message_id"] == message_id


def test_relay_marks_confirmed_events_published_and_releases_refused_ones(
    admin: BlockingChannel, names: Callable[[str], str], ledger: Ledger
) -> None:
    exchange, full = names("events"), names("full")
    for i in range(5):
        created(ledger, f"cmd-relay-{i:04}", now=T0 + i)
    publisher = EventPublisher(RABBITMQ_URL, exchange)
    relay = OutboxRelay(ledger, publisher, batch=10, clock=lambda: T0 + 100)
    try:
        admin.queue_declare(full, arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
        assert relay.pass_once() == 5  # nobody is bound yet: parked in the unrouted queue, and confirmed
        assert ledger.outbox_backlog() == 0
        assert len(drain(admin, exchange + UNROUTED_SUFFIX)) == 5

        for i in range(5, 9):
            created(ledger, f"cmd-relay-{i:04}", now=T0 + i)
        admin.queue_bind(full, exchange, routing_key="#")
        assert relay.pass_once() == 2  # the full queue nacks the rest
        assert ledger.outbox_backlog() == 2
        assert [row.event_id for row in ledger.claim_outbox(T0 + 101, 10, 30)] != []  # released, not leased
    finally:
        publisher.close()


def test_relay_releases_the_whole_batch_when_the_broker_is_unreachable(ledger: Ledger) -> None:
    for i in range(3):
        created(ledger, f"cmd-down-{i:04}", now=T0 + i)
    publisher = EventPublisher(f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F?connection_attempts=1", "ev")
    relay = OutboxRelay(ledger, publisher, batch=10, clock=lambda: T0 + 100)
    with pytest.raises(AMQPConnectionError):
        relay.pass_once()
    assert len(ledger.claim_outbox(T0 + 101, 10, 30)) == 3  # not left leased to a relay that failed


@pytest.mark.parametrize("first", ["publisher", "worker"])
def test_publisher_and_worker_declare_work_queues_alike(
    admin: BlockingChannel, names: Callable[[str], str], first: str
) -> None:
    """RabbitMQ refuses a declaration whose arguments differ (PRECONDITION_FAILED), so a scheduler that
    declares the queues before any worker started must declare exactly what the worker will."""
    queue = names("work")
    worker_broker = QuorumRabbitmqBroker(url=RABBITMQ_URL, delivery_limit=5)
    try:
        with pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL)) as connection:
            if first == "worker":
                worker_broker.declare_queue(queue, ensure=True)
                declare_work_queues(connection.channel(), [queue], 5)
            else:
                declare_work_queues(connection.channel(), [queue], 5)
                worker_broker.declare_queue(queue, ensure=True)
            check = connection.channel()
            for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
                check.queue_declare(name, passive=True)
            with pytest.raises(ChannelClosedByBroker) as refused:  # the check can fail: other arguments
                check.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
            assert refused.value.reply_code == 406
    finally:
        worker_broker.close()
        for name in (f"{queue}.DQ", f"{queue}.XQ"):
            admin.queue_delete(name)
