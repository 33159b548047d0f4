"""The worker's consumer sends the acks that fall due together in one wake-up of its I/O loop."""

from __future__ import annotations

import threading
from typing import Any

from dramatiq import Message
from dramatiq.broker import MessageProxy

from worker.bus.rabbitmq import _ArrivalQueueConsumer


class _Recorder:
    """Stands in for pika's connection and channel: what the consumer asked the I/O loop to do."""

    def __init__(self) -> None:
        self.callbacks: list[Any] = []
        self.acked: list[int] = []

    def add_callback_threadsafe(self, callback: Any) -> None:
        self.callbacks.append(callback)

    def basic_ack(self, tag: int) -> None:
        self.acked.append(tag)


def test_acks_due_together_wake_the_consumer_loop_once() -> None:
    consumer = _ArrivalQueueConsumer.__new__(_ArrivalQueueConsumer)  # no constructor: it would connect
    recorder = _Recorder()
    consumer.connection = consumer.channel = recorder  # type: ignore[assignment]
    consumer._ack_lock, consumer._acks_due = threading.Lock(), []
    consumer.known_tags = {1, 2, 3, 4}
    messages = [MessageProxy(Message("orders.create", "create_order", (), {}, {})) for _ in range(4)]
    for tag, message in enumerate(messages, start=1):
        message._tag = tag  # type: ignore[attr-defined]
    for message in messages[:3]:
        consumer.ack(message)
    assert len(recorder.callbacks) == 1 and recorder.acked == []
    recorder.callbacks.pop()()
    assert recorder.acked == [1, 2, 3]
    consumer.ack(messages[3])  # a later ack asks for its own wake-up
    assert len(recorder.callbacks) == 1
    recorder.callbacks.pop()()
    assert recorder.acked == [1, 2, 3, 4] and consumer.known_tags == set()
