"""``order-worker``: every role and operator task behind one command.

Roles (one image, chosen by sub-command): ``worker``, ``scheduler`` (scheduler + outbox relay),
``webhooks``, ``sandbox``. Operator tasks: ``migrate``, ``submit``, ``status``, ``resolve``,
``dead-letters``, ``events``, ``schemas``. Development: ``run`` (everything on this machine) and ``demo``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

log = logging.getLogger("order-worker")


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pika").setLevel(logging.WARNING)


def _settings() -> Any:
    from worker.settings import get_settings

    try:
        return get_settings()
    except ValidationError as error:
        lines = [
            f"  {'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
            for e in error.errors(include_input=False)
        ]
        sys.exit(
            "order-worker: invalid settings (environment variables ORDER_WORKER_*):\n" + "\n".join(lines)
        )


def _migrate(settings: Any) -> None:
    from worker.ledger import open_ledger

    ledger = open_ledger(settings.ledger_url.get_secret_value())
    try:
        ledger.migrate()
    finally:
        ledger.close()


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        log.info("signal %d: finishing in-flight work, then exiting", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


# ---------------------------------------------------------------------------------------------- roles
def cmd_worker(args: argparse.Namespace) -> int:
    from worker.observability import port_problem

    settings = _settings()
    settings.check_production_safety()
    problem = port_problem(settings.metrics_host, settings.metrics_port)
    if problem:
        print(f"order-worker worker: {problem} (set ORDER_WORKER_METRICS_PORT)", file=sys.stderr)
        return 2
    if not args.no_migrate:
        _migrate(settings)
    metrics_dir = Path(
        os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="order-worker-metrics-")
    )
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "dramatiq_prom_db": str(metrics_dir)}
    command = dramatiq_command(
        (settings.create_queue, settings.poll_queue), args.processes, args.threads, args.shutdown_timeout
    )
    os.execve(sys.executable, command, env)  # noqa: S606 - our own interpreter
    return 0  # pragma: no cover - execve does not return


# How long Dramatiq's main process waits for its worker processes to report that they booted before it
# starts the fork process serving /metrics and /healthz. A worker process that dies while booting (a
# command that crashes the interpreter, taken the moment its consumers start; the OOM killer) never
# reports, and with Dramatiq's default of 30 s the main process then sat for 30 s with no health endpoint
# and without noticing the dead worker, which a liveness probe reads as a hang. Our only fork process
# serves HTTP and needs nothing from the workers, so it may start before they are up: the main process
# then sees the dead worker within a second and exits, and the pod is restarted as for any crash.
WORKER_FORK_TIMEOUT_MS = 1000


def dramatiq_command(
    queues: Sequence[str], processes: int, threads: int, shutdown_timeout: float
) -> list[str]:
    """The Dramatiq command line the worker role becomes (tests start it as the role does)."""
    return [
        sys.executable,
        "-m",
        "dramatiq",
        "worker.actors",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
        "--queues",
        *queues,
        "--worker-shutdown-timeout",
        str(int(shutdown_timeout * 1000)),
        "--worker-fork-timeout",
        str(WORKER_FORK_TIMEOUT_MS),
        "--fork-function",
        "worker.worker_http:serve_worker_http",
    ]


def cmd_scheduler(args: argparse.Namespace) -> int:
    from pika.adapters.blocking_connection import BlockingChannel

    from worker.bus.connection import broker_check
    from worker.bus.dead_letters import DeadLetterRescuer
    from worker.bus.publishing import CommandBatchPublisher
    from worker.bus.relay import EventPublisher, OutboxRelay
    from worker.bus.topology import declare_work_queues
    from worker.observability import all_of, serve_http
    from worker.runtime import get_runtime
    from worker.scheduler import Scheduler

    settings = _settings()
    if not args.no_migrate:
        _migrate(settings)
    runtime = get_runtime()
    queues = {"create_order": settings.create_queue, "poll_order": settings.poll_queue}

    def declare_queues(channel: BlockingChannel) -> None:
        declare_work_queues(channel, queues.values(), settings.delivery_limit)

    def ledger_ready() -> str | None:
        runtime.ledger.ping()
        return None

    serve_http(
        settings.metrics_host,
        settings.metrics_port,
        all_of(ledger_ready, broker_check(settings.broker_url.get_secret_value())),
    )
    stop = _stop_on_signals()
    threads = []
    closers = [runtime.close]
    if not args.no_relay:
        relay = OutboxRelay(
            runtime.ledger,
            EventPublisher(settings.broker_url.get_secret_value(), settings.events_exchange),
            settings.relay_batch,
        )
        threads.append(threading.Thread(target=relay.run, args=(stop,), name="relay"))
    if not args.no_scheduler:
        commands = CommandBatchPublisher(settings.broker_url.get_secret_value(), queues, declare_queues)
        closers.insert(0, commands.close)
        scheduler = Scheduler(settings, runtime.ledger, commands.publish)
        threads.append(threading.Thread(target=scheduler.run, args=(stop,), name="scheduler"))
        rescuer = DeadLetterRescuer(
            runtime.ledger, settings.broker_url.get_secret_value(), list(queues.values())
        )
        threads.append(threading.Thread(target=rescuer.run, args=(stop,), name="dead-letters"))
    for thread in threads:
        thread.start()
    log.info("scheduler/relay running (metrics on :%d)", settings.metrics_port)
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)
    for close in closers:
        close()
    return 0


def cmd_webhooks(args: argparse.Namespace) -> int:
    from worker.webhooks.server import main as webhooks_main

    return webhooks_main(args.rest)


def cmd_sandbox(args: argparse.Namespace) -> int:
    # The simulator is a separate distribution that production images do not carry: it is looked up by
    # name, so the product never imports it and a missing install is a clear message, not a traceback.
    try:
        simulator = importlib.import_module("order_worker_sandbox.__main__")
    except ModuleNotFoundError as error:
        if error.name is None or not error.name.startswith("order_worker_sandbox"):
            raise
        print(
            "order-worker sandbox: the partner simulator is not installed here; install it with "
            "'pip install ./sandbox' from a source checkout (production images do not carry it)",
            file=sys.stderr,
        )
        return 2
    return int(simulator.main(args.rest))


def cmd_migrate(args: argparse.Namespace) -> int:
    _migrate(_settings())
    print("ledger schema is up to date")
    return 0


# ---------------------------------------------------------------------------------------------- operators
def _parse_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            sys.exit(f"order-worker submit: --param takes KEY=VALUE, got {pair!r}")
        params[key] = (
            int(value)
            if value.isdigit() and key in {"energy_amount", "active", "exclusive", "afftax"}
            else value
        )
    return params


def cmd_submit(args: argparse.Namespace) -> int:
    from worker.bus.publishing import CommandProducer
    from worker.messages import CreateOrderCommand

    settings = _settings()
    params = json.loads(args.params_json) if args.params_json else _parse_params(args.param)
    kwargs: dict[str, Any] = {
        "command_id": args.command_id or f"cli-{uuid.uuid4().hex[:16]}",
        "provider": args.provider,
        "params": params,
    }
    if args.ref_code:
        kwargs["ref_code"] = args.ref_code
    if args.meta:
        kwargs["metadata"] = dict(item.split("=", 1) for item in args.meta)
    try:
        CreateOrderCommand.model_validate(kwargs).validated()
    except (ValidationError, ValueError) as error:
        from worker.pipeline import validation_summary

        reason = validation_summary(error) if isinstance(error, ValidationError) else str(error)
        print(f"order-worker submit: invalid command: {reason}", file=sys.stderr)
        return 2
    with CommandProducer(
        settings.broker_url.get_secret_value(), settings.create_queue, settings.poll_queue
    ) as producer:
        for _ in range(args.times):
            producer.create_order(kwargs, validate=False)
    print(json.dumps({"submitted": kwargs["command_id"], "times": args.times}))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from worker.ledger import open_ledger

    settings = _settings()
    ledger = open_ledger(settings.ledger_url.get_secret_value())
    record = ledger.get(args.command_id)
    ledger.close()
    if record is None:
        print(f"no order for command_id {args.command_id!r}", file=sys.stderr)
        return 1
    view = {
        "command_id": record.command_id,
        "provider": record.provider,
        "status": record.status,
        "provider_status": record.provider_status,
        "order_id": record.order_id,
        "untrackable": record.untrackable,
        "token_stored": record.sealed_token is not None,
        "attempts": record.attempts,
        "last_error": record.last_error.model_dump() if record.last_error else None,
        "next_action_at": record.next_action_at,
        "order": record.order,
    }
    print(json.dumps(view, indent=2))
    return 0


def cmd_resolve(args: argparse.Namespace) -> int:
    """Operator decision on an in_doubt order, recorded as an event (source ``reconcile``)."""
    from worker.runtime import get_runtime

    runtime = get_runtime()
    record = runtime.ledger.get(args.command_id)
    if record is None or record.status != "in_doubt":
        state = "unknown" if record is None else record.status
        print(f"order-worker resolve: {args.command_id!r} is not in_doubt (it is {state})", file=sys.stderr)
        return 1
    observation = None
    if args.serial:
        if record.provider != "itrx":
            print("order-worker resolve: --serial applies to itrx orders", file=sys.stderr)
            return 2
        observation = runtime.pipeline.itrx.fetch(args.serial)
    note = args.note or (
        "abandoned by operator" if args.abandon else f"operator matched serial {args.serial}"
    )
    events = runtime.ledger.resolve_in_doubt(args.command_id, observation, note, time.time())
    for event in events:
        print(event.model_dump_json())
    runtime.close()
    return 0


def cmd_dead_letters(args: argparse.Namespace) -> int:
    from worker.ledger import open_ledger

    ledger = open_ledger(_settings().ledger_url.get_secret_value())
    for row in ledger.dead_letters(args.limit):
        print(json.dumps(row, default=str))
    ledger.close()
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    from worker.bus.watcher import EventWatcher

    settings = _settings()
    with EventWatcher(
        settings.broker_url.get_secret_value(), settings.events_exchange, args.binding
    ) as watcher:
        for item in watcher.events():
            if item is not None:
                print(json.dumps(item[1]), flush=True)
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from worker.schemas import write_schemas

    for path in write_schemas(Path(args.out) if args.out else None):
        print(path)
    return 0


# ---------------------------------------------------------------------------------------------- development
def cmd_run(args: argparse.Namespace) -> int:
    from worker.devstack import run_stack

    return run_stack(demo_orders=0, speed=args.speed)


def cmd_demo(args: argparse.Namespace) -> int:
    from worker.devstack import run_stack

    return run_stack(demo_orders=args.orders, speed=args.speed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="order-worker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Settings come from ORDER_WORKER_* environment variables (see README). "
        "Run 'order-worker COMMAND --help' for each command.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("worker", help="run the Dramatiq worker (create_order, poll_order)")
    p.add_argument("--processes", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--threads", type=int, default=8, help="threads per process (default 8)")
    p.add_argument(
        "--shutdown-timeout", type=float, default=90.0, help="seconds to finish in-flight work on SIGTERM"
    )
    p.add_argument("--no-migrate", action="store_true", help="do not apply ledger migrations at start")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("scheduler", help="run the scheduler (due polls, stuck creates) and the outbox relay")
    p.add_argument("--no-relay", action="store_true", help="scheduler only")
    p.add_argument("--no-scheduler", action="store_true", help="outbox relay only")
    p.add_argument("--no-migrate", action="store_true", help="do not apply ledger migrations at start")
    p.set_defaults(func=cmd_scheduler)

    p = sub.add_parser(
        "webhooks", help="run the webhook/callback receiver (options: order-worker webhooks --help)"
    )
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_webhooks)

    p = sub.add_parser(
        "sandbox",
        help="run the local 0trace + itrx simulator (options: order-worker sandbox --help)",
        add_help=False,
    )
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_sandbox)

    p = sub.add_parser("migrate", help="apply ledger schema migrations and exit")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("submit", help="publish a create_order command")
    p.add_argument("--provider", choices=["0trace", "itrx"], required=True)
    p.add_argument("--command-id", help="8..128 chars of [A-Za-z0-9._:-] (default: random)")
    p.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="a create field (repeatable)"
    )
    p.add_argument("--params-json", help="all create fields as one JSON object")
    p.add_argument("--ref-code", help="0trace reference code")
    p.add_argument(
        "--meta", action="append", default=[], metavar="KEY=VALUE", help="metadata echoed in events"
    )
    p.add_argument("--times", type=int, default=1, help="publish the same command N times (idempotency demo)")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("status", help="show one order from the ledger (never the token)")
    p.add_argument("command_id")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "resolve", help="resolve an in_doubt order: the partner order found (--serial) or abandon"
    )
    p.add_argument("command_id")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--serial", help="the itrx serial this command created (it is queried, then recorded)")
    group.add_argument(
        "--abandon", action="store_true", help="no partner order exists: mark the order failed"
    )
    p.add_argument("--note", help="audit note carried in the event's error.reason (abandon) or logs")
    p.set_defaults(func=cmd_resolve)

    p = sub.add_parser("dead-letters", help="list rejected commands with their reasons")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_dead_letters)

    p = sub.add_parser("events", help="print events from the orders.events exchange as JSON lines")
    p.add_argument("--binding", default="#", help="routing-key pattern, e.g. 'order.0trace.*'")
    p.set_defaults(func=cmd_events)

    p = sub.add_parser("schemas", help="write the JSON Schemas of commands and events")
    p.add_argument("--out", help="directory (default: the package's schemas/)")
    p.set_defaults(func=cmd_schemas)

    p = sub.add_parser("run", help="development: sandbox + worker + scheduler + webhooks on this machine")
    p.add_argument("--speed", type=float, default=60.0, help="sandbox clock speed factor (default 60)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "demo", help="development: 'run' plus a producer submitting orders and printing their events"
    )
    p.add_argument("--orders", type=int, default=3, help="orders to submit (default 3)")
    p.add_argument("--speed", type=float, default=60.0, help="sandbox clock speed factor (default 60)")
    p.set_defaults(func=cmd_demo)
    return parser


_DELEGATED = {"sandbox": cmd_sandbox, "webhooks": cmd_webhooks}
"""Roles with their own argument parser: everything after the role name is theirs (argparse's REMAINDER
cannot capture leading options)."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in _DELEGATED:
        _configure_logging(os.environ.get("ORDER_WORKER_LOG_LEVEL", "INFO"))
        return _DELEGATED[argv[0]](argparse.Namespace(rest=argv[1:]))
    args = build_parser().parse_args(argv)
    _configure_logging(os.environ.get("ORDER_WORKER_LOG_LEVEL", "INFO"))
    result: int = args.func(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
