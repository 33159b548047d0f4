"""What batching publisher confirms is worth: the relay's publisher given one event per batch, against the
same publisher given the relay's batch size.

Publishes N events of ~1 KB to a fresh events exchange (declared by
``worker.bus.topology.declare_events_exchange``, so unrouted events land in its quorum queue, like events
nobody has bound yet) twice through ``worker.bus.relay.EventPublisher``: one event per call (each waits for
its own confirm, as a relay without batching would), then batches of 200 (the default
``ORDER_WORKER_RELAY_BATCH``). Reports events/s, RabbitMQ CPU and the publisher's CPU per event::

    .venv/bin/python -m bench.relay_confirms [--events 3000]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

from order_worker_client.topology import UNROUTED_SUFFIX

from bench.common import BROKER_URL, Broker, CpuMeter, rabbitmq_processes
from worker.bus.relay import EventPublisher
from worker.ledger.base import OutboxRow


def run(events: int = 3000, batch: int = 200) -> dict[str, Any]:
    exchange = f"b{uuid.uuid4().hex[:10]}.events"
    body = b'{"event":"' + b"x" * 1000 + b'"}'
    rows = [
        OutboxRow(
            event_id=str(uuid.uuid4()),
            routing_key="order.0trace.created",
            event_type="created",
            body=body,
            created_at=time.time(),
        )
        for _ in range(events)
    ]
    rabbit = CpuMeter(rabbitmq_processes())
    out: dict[str, Any] = {"events": events, "batch": batch}
    publisher = EventPublisher(BROKER_URL, exchange)
    try:
        publisher.publish(rows[:1])  # connect and declare outside the measurement
        for name, size in (("one_by_one", 1), ("batched", batch)):
            r0, p0, t0 = rabbit(), time.process_time(), time.perf_counter()
            for start in range(0, events, size):
                publisher.publish(rows[start : start + size])
            r1, p1, t1 = rabbit(), time.process_time(), time.perf_counter()
            out[name] = {
                "events_per_s": round(events / (t1 - t0)),
                "rabbitmq_cpu_us_per_event": round((r1 - r0) / events * 1e6, 1),
                "publisher_cpu_us_per_event": round((p1 - p0) / events * 1e6, 1),
            }
    finally:
        publisher.close()
        broker = Broker()
        broker.delete_queues(exchange + UNROUTED_SUFFIX)
        broker.delete_exchanges(exchange, exchange + UNROUTED_SUFFIX)
        broker.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    args = parser.parse_args()
    print(json.dumps(run(args.events)))


if __name__ == "__main__":
    main()
