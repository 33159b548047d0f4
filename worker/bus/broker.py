"""The Dramatiq broker the workers consume with, assembled from Dramatiq's public parts.

* The decoder (``CommandEncoder``, installed with ``dramatiq.set_encoder``): Dramatiq's own nacks a body
  it cannot parse, which silently dead-letters it with no reason. This one turns any undecodable or
  unknown message into a call of the ``reject_malformed`` actor, which writes a dead-letter record and a
  ``rejected`` event saying why (``worker.bus.envelope``).
* The middleware: Dramatiq's, chosen for what commands may ask of the worker (``build_broker``).
* Quorum queues and the consumer that acks on the queue a message arrived on need Dramatiq internals;
  they are isolated in ``worker.bus.rabbitmq``.
"""

from __future__ import annotations

import threading
from typing import Any

import dramatiq
from dramatiq.encoder import JSONEncoder, MessageData
from dramatiq.middleware import AgeLimit, CurrentMessage, Retries, ShutdownNotifications, TimeLimit

from worker.bus.envelope import decode_command
from worker.bus.rabbitmq import QuorumRabbitmqBroker
from worker.ledger.outage import LedgerUnavailable
from worker.settings import Settings

ACTOR_TIME_LIMIT_MS = 60_000


class CommandEncoder(JSONEncoder):
    """Decodes every body into *some* message: the real one, or a rejection of it."""

    def decode(self, data: bytes) -> MessageData:
        message: MessageData = decode_command(data)
        return message


class RestartableTimeLimit(TimeLimit):
    """Dramatiq's actor time limit, which the thread it limits can restart.

    The limit is there for a command stuck on something (a call that never ends); a command waiting for
    the ledger to come back is not stuck, and interrupting it would hand back a partner's answer that was
    never recorded. The worker restarts its limit before each wait (``worker.ledger.outage``)."""

    def restart(self) -> None:
        self.manager.add_timeout(threading.get_ident(), self.time_limit)  # type: ignore[no-untyped-call]


class LedgerPatientRetries(Retries):
    """Dramatiq's retries, except that a command handed back because the ledger stayed out
    (``LedgerUnavailable``) is sent again without counting a retry: an outage is nobody's failure, and
    counting it would dead-letter healthy commands after a long enough one."""

    def after_process_message(
        self, broker: Any, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        if isinstance(exception, LedgerUnavailable):
            message.options["retries"] = message.options.get("retries", 0) - 1  # Retries adds it back
        super().after_process_message(broker, message, result=result, exception=exception)  # type: ignore[no-untyped-call]


def build_broker(settings: Settings) -> QuorumRabbitmqBroker:
    """The workers' broker; actors are declared on it by ``worker.actors``.

    Dramatiq's Callbacks and Pipelines middleware are left out on purpose: with them, a command's
    ``options`` (``on_success``, ``pipe_target``) would make the worker send messages of the producer's
    choosing to any actor, and every message would pay for two middleware that no command uses."""
    middleware = [
        AgeLimit(),
        RestartableTimeLimit(time_limit=ACTOR_TIME_LIMIT_MS),
        ShutdownNotifications(),
        LedgerPatientRetries(max_retries=5, min_backoff=1_000, max_backoff=60_000),
        CurrentMessage(),
    ]
    broker = QuorumRabbitmqBroker(
        url=settings.bus.broker_urls(),  # pika tries each node in turn (order: worker.bus.rabbitmq)
        confirm_delivery=True,
        delivery_limit=settings.bus.delivery_limit,
        middleware=middleware,
    )
    dramatiq.set_encoder(CommandEncoder())
    dramatiq.set_broker(broker)
    return broker
