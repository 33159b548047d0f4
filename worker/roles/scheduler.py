"""The scheduler role: due polls and stuck creates from the ledger onto the bus, the outbox relay that
publishes events, and the dead-letter rescuer, as threads of one process (safe in every replica).
"""

from __future__ import annotations

import threading

from pika.adapters.blocking_connection import BlockingChannel

from worker.bus.connection import broker_check
from worker.bus.dead_letters import DeadLetterRescuer
from worker.bus.publishing import CommandBatchPublisher
from worker.bus.relay import EventPublisher, OutboxRelay
from worker.bus.topology import declare_work_queues
from worker.observability import all_of, serve_http
from worker.roles import log, stop_on_signals
from worker.runtime import get_runtime
from worker.scheduler import Scheduler, poll_paces
from worker.settings import Settings
from worker.settings_metrics import export_settings


def run(settings: Settings, *, relay: bool = True, scheduler: bool = True) -> None:
    """Serve /metrics, /healthz and /readyz and run the chosen loops until SIGTERM or SIGINT."""
    runtime = get_runtime()
    queues = {"create_order": settings.bus.create_queue, "poll_order": settings.bus.poll_queue}

    def declare_queues(channel: BlockingChannel) -> None:
        declare_work_queues(channel, queues.values(), settings.bus.delivery_limit)

    def ledger_ready() -> str | None:
        runtime.ledger.ping()
        return None

    serve_http(
        settings.serving.metrics_host,
        settings.serving.metrics_port,
        all_of(ledger_ready, broker_check(settings.bus.broker_url.get_secret_value())),
    )
    export_settings(settings)
    stop = stop_on_signals()
    threads = []
    closers = [runtime.close]
    if relay:
        outbox = OutboxRelay(
            runtime.ledger,
            EventPublisher(settings.bus.broker_url.get_secret_value(), settings.bus.events_exchange),
            settings.bus.relay_batch,
        )
        threads.append(threading.Thread(target=outbox.run, args=(stop,), name="relay"))
    if scheduler:
        commands = CommandBatchPublisher(settings.bus.broker_url.get_secret_value(), queues, declare_queues)
        closers.insert(0, commands.close)
        pipeline = runtime.pipeline
        paces = poll_paces(pipeline.partners.values(), pipeline.budgets)
        due = Scheduler(
            settings, runtime.ledger, commands.publish, paces=paces, providers=list(pipeline.partners)
        )
        threads.append(threading.Thread(target=due.run, args=(stop,), name="scheduler"))
        rescuer = DeadLetterRescuer(
            runtime.ledger, settings.bus.broker_url.get_secret_value(), list(queues.values())
        )
        threads.append(threading.Thread(target=rescuer.run, args=(stop,), name="dead-letters"))
    for thread in threads:
        thread.start()
    log.info("scheduler_running", with_relay=True, metrics_port=settings.serving.metrics_port)
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)
    for close in closers:
        close()
