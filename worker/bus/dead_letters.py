"""The dead-letter rescuer: a second chance for dead-lettered commands, and a durable answer for poison.

It runs beside the scheduler (``order-worker scheduler``); the rejection it writes for a poison goes
through ``worker.rejections``, as every other refusal does.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError, ChannelClosedByBroker

from worker import metrics
from worker.bus.connection import BlockingLink
from worker.bus.envelope import loose_fields
from worker.bus.topology import dead_letter_queue
from worker.ledger.base import Ledger
from worker.ledger.outage import LedgerWaiter
from worker.logs import get_logger
from worker.rejections import record_rejection

log = get_logger(__name__)


class DeadLetterRescuer:
    """Second chance for dead-lettered commands, so a poison message cannot take innocent ones with it.

    The quorum queues dead-letter a message once it was delivered ``delivery_limit`` times without an ack.
    A message that kills the worker process every time gets there, as it should; but every crash also
    hands back the messages that worker had prefetched, and their delivery counts rise with the poison's.
    Left alone, such innocent commands would land in ``<queue>.XQ`` beside it and, when they had never
    been claimed in the ledger, be lost without any answer to the producer.

    This drains every ``<queue>.XQ``, one message at a time:

    * a command the ledger already knows (claimed) is dropped: the ledger owns it and the scheduler
      re-drives it; a dead-lettered ``poll_order`` is dropped too (the ledger schedules the next poll);
    * any other message is published again, alone, marked ``x-order-worker-rescues: 1``, and the rescuer
      waits until it is claimed (or something else dies) before rescuing the next one: alone, an innocent
      command completes;
    * a message dead-lettered again after its rescue is a poison: it gets a durable answer (a dead-letter
      record and a ``rejected`` event, code ``poison``) and is not sent again.
    """

    HEADER = "x-order-worker-rescues"

    def __init__(
        self,
        ledger: Ledger,
        broker_url: str,
        queues: list[str],
        clock: Callable[[], float] = time.time,
        wait_seconds: float = 30.0,
    ) -> None:
        self.ledger = ledger
        self.queues = queues
        self.clock = clock
        self.wait_seconds = wait_seconds
        self._amqp = BlockingLink(broker_url, confirm=True)
        self._waiter = LedgerWaiter()

    def close(self) -> None:
        self._amqp.close()

    def run(self, stop: threading.Event, idle_seconds: float = 1.0, error_backoff: float = 2.0) -> None:
        while not stop.is_set():
            try:
                handled = self.pass_once(stop)
            except (AMQPError, OSError):
                self.close()
                stop.wait(error_backoff)
                continue
            except Exception as error:
                # A ledger that is out leaves the message in the dead-letter queue (the channel closes
                # before its ack); it is handled once the ledger answers.
                pause = self._waiter.pause_after(error, 1, "the dead-letter rescuer")
                if pause is None:
                    log.exception("dead_letter_pass_failed")
                self.close()
                stop.wait(error_backoff if pause is None else max(pause, error_backoff))
                continue
            if not handled:
                stop.wait(idle_seconds)
        self.close()

    def pass_once(self, stop: threading.Event | None = None) -> int:
        handled = 0
        for queue in self.queues:
            channel = self._amqp.open()
            try:
                method, properties, body = channel.basic_get(dead_letter_queue(queue), auto_ack=False)
            except ChannelClosedByBroker:  # the queue is not declared yet (no worker started)
                self.close()
                continue
            if method is None:
                continue
            wait_for = self._handle(channel, queue, properties, body)
            channel.basic_ack(method.delivery_tag)
            handled += 1
            if wait_for is not None:
                # method.message_count: what was left behind it, i.e. what had died before the rescue
                self._await_claim(wait_for, queue, method.message_count, stop)
        return handled

    def _handle(
        self, channel: BlockingChannel, queue: str, properties: pika.BasicProperties, body: bytes
    ) -> str | None:
        """Decide about one dead-lettered message; returns a command_id to wait for after a rescue."""
        fields = loose_fields(body)
        found = fields.get("kwargs")
        kwargs: dict[str, Any] = found if isinstance(found, dict) else {}
        command_id = kwargs.get("command_id") if isinstance(kwargs.get("command_id"), str) else None
        if fields.get("actor_name") == "poll_order":
            log.info("dead_letter_dropped", reason="a poll command; the ledger schedules the next poll")
            return None
        if command_id is not None and self.ledger.get(command_id) is not None:
            log.info("dead_letter_dropped", command_id=command_id, reason="the ledger holds the order")
            return None
        headers = dict(properties.headers or {})
        rescues = headers.get(self.HEADER, 0)
        rescues = rescues if isinstance(rescues, int) else 0
        if rescues >= 1:
            self._reject_poison(queue, body, kwargs, command_id, rescues)
            return None
        headers = {k: v for k, v in headers.items() if not str(k).startswith("x-")}
        headers[self.HEADER] = rescues + 1
        channel.basic_publish(
            exchange="",
            routing_key=queue,
            body=body,
            properties=pika.BasicProperties(
                delivery_mode=pika.DeliveryMode.Persistent,
                content_type=properties.content_type or "application/json",
                headers=headers,
            ),
            mandatory=True,
        )
        metrics.DEAD_LETTERS.labels("rescued").inc()
        log.warning(
            "dead_letter_sent_again_alone",
            command_id=command_id,
            unreadable_body=command_id is None,
            next_death="rejected as poison",
        )
        return command_id

    def _await_claim(
        self, command_id: str | None, queue: str, waiting: int, stop: threading.Event | None
    ) -> None:
        """Let the rescued message run alone: until the ledger has it, something new dies (the dead-letter
        queue grows beyond the ``waiting`` messages already there), or time is up."""
        if command_id is None:
            return
        deadline = time.monotonic() + self.wait_seconds
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            if self.ledger.get(command_id) is not None:
                return
            channel = self._amqp.open()
            if channel.queue_declare(dead_letter_queue(queue), passive=True).method.message_count > waiting:
                return
            time.sleep(0.2)

    def _reject_poison(
        self, queue: str, body: bytes, kwargs: dict[str, Any], command_id: str | None, rescues: int
    ) -> None:
        digest = hashlib.sha256(body).hexdigest()
        record_rejection(
            self.ledger,
            f"poison:{digest}",
            kwargs,
            "poison",
            "the command crashed the worker on every delivery, also when sent again alone; "
            "it was not processed",
            {"queue": queue, "body_sha256": digest, "body_bytes": len(body), "rescues": rescues},
            self.clock(),
            with_metadata=False,
        )
        log.error("poison_command_rejected", command_id=command_id, reason="crashed every delivery")
