"""What RabbitMQ spends to hand out one command and take its ack: the worker's quorum queue against the
classic queue the Celery peer uses, at the pace of the pipeline's rows and flat out.

The 2 x 8 rows fill both cores, so their rates follow their CPU per command over every process, RabbitMQ's
included. The order-worker's command queues are quorum queues (replicated; a delivery limit dead-letters
a command that keeps killing workers), declared here by ``worker.bus.topology.declare_work_queues`` exactly as
the worker declares them. Each queue is loaded with N messages of ~300 bytes, then consumed by one
consumer with the worker's prefetch (8 threads x 2), which acks every message on its own, as Dramatiq
does: paced at RATE acks per second (each ack its own round trip, as at the pipeline's rates), and
unpaced. Only the consuming and acking is measured; RabbitMQ's CPU comes from its processes' CPU times::

    .venv/bin/python -m bench.queue_cost [--messages 6000] [--rate 900]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

import pika
from dramatiq.common import dq_name, xq_name

from bench.common import BROKER_URL, Broker, CpuMeter, rabbitmq_processes
from worker.bus.topology import declare_work_queues

PREFETCH = 16  # Dramatiq's consumer prefetch for 8 worker threads


def _declare(channel: Any, queue: str, kind: str) -> None:
    if kind == "quorum":
        declare_work_queues(channel, [queue], delivery_limit=5)
    else:
        channel.queue_declare(queue, durable=True)


def _consume(channel: Any, connection: Any, queue: str, messages: int, rate: float | None) -> float:
    """Consume and ack every message; returns the wall time taken."""
    channel.basic_qos(prefetch_count=PREFETCH)
    started = time.perf_counter()
    deliveries = channel.consume(queue, inactivity_timeout=5)
    for done, (method, _properties, _body) in enumerate(deliveries, start=1):
        if method is None:
            raise RuntimeError(f"{queue}: no delivery for 5 s after {done - 1} of {messages} messages")
        if rate:
            due = started + done / rate
            while (wait := due - time.perf_counter()) > 0:
                connection.process_data_events(wait)
        channel.basic_ack(method.delivery_tag)
        if done >= messages:
            break
    channel.cancel()
    connection.process_data_events(0.2)  # let the last acks reach the broker inside the measurement
    return time.perf_counter() - started


def measure(kind: str, messages: int, rate: float | None) -> dict[str, Any]:
    queue = f"b{uuid.uuid4().hex[:10]}.{kind}"
    body = b'{"kwargs":{"command_id":"' + b"x" * 260 + b'"}}'
    rabbit = CpuMeter(rabbitmq_processes())
    connection = pika.BlockingConnection(pika.URLParameters(BROKER_URL))
    try:
        channel = connection.channel()
        _declare(channel, queue, kind)
        channel.confirm_delivery()
        for _ in range(messages):
            channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))
        time.sleep(0.5)  # let the queue settle after loading
        before = rabbit()
        took = _consume(channel, connection, queue, messages, rate)
        spent = rabbit() - before
    finally:
        if connection.is_open:
            connection.close()
        broker = Broker()
        broker.delete_queues(queue, dq_name(queue), xq_name(queue))
        broker.close()
    return {
        "messages_per_s": round(messages / took),
        "rabbitmq_cpu_us_per_message": round(spent / messages * 1e6, 1),
    }


def run(messages: int = 6000, rate: float = 900.0) -> dict[str, Any]:
    out: dict[str, Any] = {"messages": messages, "paced_rate_per_s": rate, "prefetch": PREFETCH}
    for pace, paced_rate in (("paced", rate), ("unpaced", None)):
        for kind in ("classic", "quorum"):
            out[f"{kind}_{pace}"] = measure(kind, messages, paced_rate)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=6000)
    parser.add_argument("--rate", type=float, default=900.0, help="acks per second in the paced runs")
    args = parser.parse_args()
    print(json.dumps(run(args.messages, args.rate)))


if __name__ == "__main__":
    main()
