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

import dramatiq
from dramatiq.encoder import JSONEncoder, MessageData
from dramatiq.middleware import AgeLimit, CurrentMessage, Retries, ShutdownNotifications, TimeLimit

from worker.bus.envelope import decode_command
from worker.bus.rabbitmq import QuorumRabbitmqBroker
from worker.settings import Settings

ACTOR_TIME_LIMIT_MS = 60_000


class CommandEncoder(JSONEncoder):
    """Decodes every body into *some* message: the real one, or a rejection of it."""

    def decode(self, data: bytes) -> MessageData:
        message: MessageData = decode_command(data)
        return message


def build_broker(settings: Settings) -> QuorumRabbitmqBroker:
    """The workers' broker; actors are declared on it by ``worker.actors``.

    Dramatiq's Callbacks and Pipelines middleware are left out on purpose: with them, a command's
    ``options`` (``on_success``, ``pipe_target``) would make the worker send messages of the producer's
    choosing to any actor, and every message would pay for two middleware that no command uses."""
    middleware = [
        AgeLimit(),
        TimeLimit(time_limit=ACTOR_TIME_LIMIT_MS),
        ShutdownNotifications(),
        Retries(max_retries=5, min_backoff=1_000, max_backoff=60_000),
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
