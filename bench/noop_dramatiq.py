"""The ceiling: a Dramatiq actor that does nothing, loaded by ``python -m dramatiq bench.noop_dramatiq``.

``BENCH_BROKER`` chooses the broker: ``stock`` is Dramatiq's own RabbitmqBroker with its default middleware
and classic queues (what a new Dramatiq user gets); ``order-worker`` is the broker order-worker runs on
(quorum queues with a delivery limit, publisher confirms, its middleware list, its encoder), so the
difference between the two rows is the price of that configuration alone, before any pipeline work.
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq

QUEUE = os.environ.get("BENCH_QUEUE", "bench.noop")
URL = os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def make_broker(kind: str) -> Any:
    if kind == "order-worker":
        from pydantic import SecretStr

        from worker.bus.broker import build_broker
        from worker.settings import Settings

        return build_broker(Settings(bus={"broker_url": SecretStr(URL)}))
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    broker = RabbitmqBroker(url=URL)
    dramatiq.set_broker(broker)
    return broker


KIND = os.environ.get("BENCH_BROKER", "stock")
# order-worker's encoder turns unknown actor names into rejections, so there the no-op wears a known name.
ACTOR = "poll_order" if KIND == "order-worker" else "noop"
broker = make_broker(KIND)


@dramatiq.actor(actor_name=ACTOR, queue_name=QUEUE, max_retries=0)
def noop(*args: Any, **kwargs: Any) -> None:
    """Nothing: the cost of receiving, decoding, dispatching and acking one message."""
