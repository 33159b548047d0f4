"""The only place the service relies on Dramatiq internals: its RabbitMQ consumer and queue arguments.

Everything else in the broker set-up uses Dramatiq's public API (middleware, ``set_encoder``, the
``consumer_class`` property). Three needs have no public hook, so they live here, small, where a Dramatiq
upgrade is checked (``tests/test_consumer_acks.py``, ``tests/test_batch_publishing.py``):

* The queue a message arrived on. Dramatiq acks through ``consumers[message.queue_name]``, trusting the
  queue the envelope names; an envelope naming another queue (a producer mistake, or the decoder's
  synthesised rejection, which names none) would kill the worker thread with a KeyError, or ack a delivery
  tag on the wrong channel. Only the consumer knows the arrival queue: the decoder sees bytes, and the
  middleware hooks (``before_process_message`` and the rest) see the message after the consumer thread has
  already routed it, without the queue it came from.
* Acks sent together. Dramatiq's consumer wakes its I/O loop once per ack; ``before_ack``/``after_ack``
  only observe an ack, they cannot change how it is sent. Overriding ``ack`` on the private
  ``_RabbitmqConsumer`` (whose ``known_tags``, ``connection`` and ``channel`` it uses) is the only way.
* Quorum queue arguments. ``RabbitmqBroker`` builds queue arguments in the private
  ``_build_queue_arguments`` and offers no option for ``x-queue-type`` or ``x-delivery-limit``.
* The order of a cluster's nodes. Dramatiq hands its ``parameters`` list to every connection it opens
  (each consumer's, each enqueueing thread's), in the order given, so every reconnect of a worker would
  try the same node first, the failed one included, and wait out its timeout when it hangs. The list is
  served in a fresh random order for each connection instead.
"""

from __future__ import annotations

import random
import threading
from typing import Any

import pika.exceptions
from dramatiq.broker import MessageProxy
from dramatiq.brokers.rabbitmq import RabbitmqBroker, _RabbitmqConsumer
from dramatiq.errors import ConnectionClosed

from worker.bus.topology import work_queue_arguments


class _ArrivalQueueConsumer(_RabbitmqConsumer):
    """Makes every message name the queue it actually arrived on, and sends acks together.

    An ack that finds one already waiting joins it: the loop wakes once and sends every ack due, as soon as
    it would have sent the first, so no ack waits longer than before. Measured on the 1 x 8 pipeline, the
    worker spends about 2.5 % less CPU per command and RabbitMQ 5-12 % less (``bench/README.md``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._ack_lock = threading.Lock()
        self._acks_due: list[int] = []

    def __next__(self) -> MessageProxy | None:
        message: MessageProxy | None = super().__next__()  # type: ignore[no-untyped-call]
        if message is not None and message.queue_name != self.queue_name:
            message._message = message._message.copy(queue_name=self.queue_name)
        return message

    def ack(self, message: MessageProxy) -> None:
        try:
            self.known_tags.remove(message._tag)
        except KeyError:
            self.logger.warning("Failed to ack message: not in known tags.")
            return
        with self._ack_lock:
            self._acks_due.append(message._tag)
            if len(self._acks_due) > 1:
                return  # the wake-up already asked for sends this ack too
        try:
            self.connection.add_callback_threadsafe(self._send_acks)
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as error:
            with self._ack_lock:
                self._acks_due.clear()  # the connection is gone; RabbitMQ delivers these messages again
            raise ConnectionClosed(error) from None  # type: ignore[no-untyped-call]

    def _send_acks(self) -> None:
        with self._ack_lock:
            tags, self._acks_due = self._acks_due, []
        for tag in tags:
            self.channel.basic_ack(tag)


class QuorumRabbitmqBroker(RabbitmqBroker):
    """Declares the work queues (and their delay queues) as quorum queues with a delivery limit."""

    def __init__(self, *, delivery_limit: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delivery_limit = delivery_limit

    @property
    def parameters(self) -> Any:
        """pika's parameters of every node, shuffled anew each time Dramatiq opens a connection."""
        nodes = self._nodes
        return random.sample(nodes, len(nodes)) if isinstance(nodes, list) else nodes

    @parameters.setter
    def parameters(self, value: Any) -> None:
        self._nodes = value

    @property
    def consumer_class(self) -> type[_RabbitmqConsumer]:
        return _ArrivalQueueConsumer

    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        return work_queue_arguments(queue_name, self.delivery_limit)
