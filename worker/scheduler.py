"""Scheduler: turns the ledger's due times into commands on the bus.

Delays live in the ledger (``next_action_at``), not in worker memory, so 100k open orders cost rows, not
RAM, and a lost poll message only delays an order until the next pass. Several schedulers may run: the
ledger hands each due row to one of them (SKIP LOCKED) and holds it until the command had time to run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError, ChannelClosedByBroker

from worker import metrics
from worker.amqp import ConfirmedChannel
from worker.ledger.base import DueOrder, Ledger
from worker.messages import EventError
from worker.partners import registry
from worker.settings import Settings
from worker.status import Status

log = logging.getLogger(__name__)

Dispatch = Callable[[Sequence[tuple[str, dict[str, Any]]]], list[bool]]
"""dispatch([(actor_name, kwargs), ...]) -> per command, whether the broker took it; raises when that is
unknown (``worker.producer.CommandBatchPublisher.publish``)."""


class Scheduler:
    def __init__(
        self, settings: Settings, ledger: Ledger, dispatch: Dispatch, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.dispatch = dispatch
        self.clock = clock

    def pass_once(self) -> int:
        """Hands out one batch of due orders as one batch of commands; returns how many were due.

        The ledger holds every row it hands out, so a command the broker refused, or a batch whose fate is
        unknown, costs only a wait: the row is due again when its hold ends. The hold only matters then;
        the actor sets the real next time when it runs."""
        now = self.clock()
        due = self.ledger.take_due(now, self.settings.scheduler_batch, self.settings.submit_stuck_seconds)
        if due:
            refused = self.dispatch([_command(order) for order in due]).count(False)
            if refused:
                log.warning(
                    "the broker refused %d of %d due commands; they go out again in %g s",
                    refused,
                    len(due),
                    self.settings.submit_stuck_seconds,
                )
        return len(due)

    def sample_gauges(self) -> None:
        metrics.OUTBOX_BACKLOG.set(self.ledger.outbox_backlog())
        oldest = self.ledger.outbox_oldest_created_at()
        metrics.OUTBOX_OLDEST.set(0.0 if oldest is None else max(0.0, self.clock() - oldest))
        for (provider, status), count in self.ledger.count_by_status().items():
            metrics.ORDERS.labels(provider, status).set(count)

    def run(self, stop: threading.Event, gauge_every: float = 5.0, prune_every: float = 60.0) -> None:
        last_gauges = last_prune = 0.0
        while not stop.is_set():
            started = self.clock()
            try:
                handed_out = self.pass_once()
                if started - last_gauges >= gauge_every:
                    self.sample_gauges()
                    last_gauges = started
                if started - last_prune >= prune_every:
                    self.ledger.prune(started - self.settings.retention_seconds)
                    last_prune = started
            except Exception:
                log.exception("scheduler pass failed")
                handed_out = 0
            if handed_out < self.settings.scheduler_batch:
                stop.wait(self.settings.scheduler_interval)


def _command(order: DueOrder) -> tuple[str, dict[str, Any]]:
    if order.status == Status.SUBMITTING:
        return "create_order", order.command
    return "poll_order", {"command_id": order.command_id}


class DeadLetterRescuer:
    """Second chance for dead-lettered commands, so a poison message cannot take innocent ones with it.

    The quorum queues dead-letter a message once it was delivered ``DELIVERY_LIMIT`` times without an ack.
    A message that kills the worker process every time gets there, as it should; but every crash also
    hands back the messages that worker had prefetched, and their delivery counts rise with the poison's.
    Before this, such innocent commands landed in ``<queue>.XQ`` beside it and, when they had never been
    claimed in the ledger, were lost without any answer to the producer.

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
        self._amqp = ConfirmedChannel(broker_url)

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
            except Exception:
                log.exception("dead-letter rescue pass failed")
                self.close()
                stop.wait(error_backoff)
                continue
            if not handled:
                stop.wait(idle_seconds)
        self.close()

    def pass_once(self, stop: threading.Event | None = None) -> int:
        handled = 0
        for queue in self.queues:
            channel = self._amqp.open()
            try:
                method, properties, body = channel.basic_get(f"{queue}.XQ", auto_ack=False)
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
        fields = _envelope(body)
        found = fields.get("kwargs")
        kwargs: dict[str, Any] = found if isinstance(found, dict) else {}
        command_id = kwargs.get("command_id") if isinstance(kwargs.get("command_id"), str) else None
        if fields.get("actor_name") == "poll_order":
            log.info("dropped a dead-lettered poll command; the ledger schedules the next poll")
            return None
        if command_id is not None and self.ledger.get(command_id) is not None:
            log.info("dropped a dead-lettered create of %s: the ledger already holds it", command_id)
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
            "a dead-lettered command (%s) was sent again alone; if it dies again it is rejected as poison",
            command_id or "unreadable body",
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
            if channel.queue_declare(f"{queue}.XQ", passive=True).method.message_count > waiting:
                return
            time.sleep(0.2)

    def _reject_poison(
        self, queue: str, body: bytes, kwargs: dict[str, Any], command_id: str | None, rescues: int
    ) -> None:
        digest = hashlib.sha256(body).hexdigest()
        provider = kwargs.get("provider") if kwargs.get("provider") in registry.names() else None
        events = self.ledger.record_rejection(
            f"poison:{digest}",
            command_id[:128] if command_id else None,
            provider,
            EventError(
                code="poison",
                reason="the command crashed the worker on every delivery, also when sent again alone; "
                "it was not processed",
            ),
            {},
            {"queue": queue, "body_sha256": digest, "body_bytes": len(body), "rescues": rescues},
            self.clock(),
        )
        if events:
            metrics.REJECTIONS.labels("poison").inc()
            metrics.DEAD_LETTERS.labels("poison").inc()
        log.error("a command crashed the worker on every delivery; rejected as poison (%s)", command_id)


def _envelope(body: bytes) -> dict[str, Any]:
    try:
        fields = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return {}
    return fields if isinstance(fields, dict) else {}
