"""The roles as commands: ``worker``, ``scheduler``, ``webhooks``, and ``migrate`` (every role runs it)."""

from __future__ import annotations

import argparse
import sys

from worker.cli.common import check_partners, load_settings


def cmd_worker(args: argparse.Namespace) -> int:
    from worker.observability import port_problem
    from worker.roles import migrate, worker

    settings = load_settings()
    check_partners(settings)
    problem = port_problem(settings.serving.metrics_host, settings.serving.metrics_port)
    if problem:
        print(f"order-worker worker: {problem} (set ORDER_WORKER_METRICS_PORT)", file=sys.stderr)
        return 2
    if not args.no_migrate:
        migrate(settings)
    worker.run(settings, args.processes, args.threads, args.shutdown_timeout)
    return 1  # pragma: no cover - run() replaces this process


def cmd_scheduler(args: argparse.Namespace) -> int:
    from worker.roles import migrate, scheduler

    settings = load_settings()
    check_partners(settings)
    if not args.no_migrate:
        migrate(settings)
    scheduler.run(settings, relay=not args.no_relay, scheduler=not args.no_scheduler)
    return 0


def cmd_webhooks(args: argparse.Namespace) -> int:
    from worker.roles import webhooks

    settings = load_settings()
    check_partners(settings)
    host = args.host if args.host is not None else settings.serving.webhooks_host
    port = args.port if args.port is not None else settings.serving.webhooks_port
    webhooks.run(settings, host, port, args.threads)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from worker.roles import migrate

    migrate(load_settings())
    print("ledger schema is up to date")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
        "webhooks",
        help="run the push receiver: POST /webhooks/<provider> for every installed partner",
        description="Receive partner pushes (POST /webhooks/<provider>, e.g. /webhooks/0trace and "
        "/webhooks/itrx), verify them on the raw bytes and apply them through the ledger. "
        "Also serves /metrics, /healthz, /readyz and /openapi.yaml.",
    )
    p.add_argument("--host", help="bind address (default: ORDER_WORKER_WEBHOOKS_HOST, 0.0.0.0)")
    p.add_argument("--port", type=int, help="port (default: ORDER_WORKER_WEBHOOKS_PORT, 8091)")
    p.add_argument("--threads", type=int, default=8, help="threads applying pushes to the ledger (default 8)")
    p.set_defaults(func=cmd_webhooks)

    p = sub.add_parser("migrate", help="apply ledger schema migrations and exit")
    p.set_defaults(func=cmd_migrate)
