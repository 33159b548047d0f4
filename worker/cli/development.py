"""Development commands: the partner simulator, and the whole stack on this machine (``run``, ``demo``)."""

from __future__ import annotations

import argparse
import importlib
import sys


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


def cmd_run(args: argparse.Namespace) -> int:
    from worker.devstack import Ports, run_stack

    ports = Ports(args.sandbox_port, args.webhooks_port, args.metrics_port)
    return run_stack(demo_orders=getattr(args, "orders", 0), speed=args.speed, ports=ports)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sandbox",
        help="run the local 0trace + itrx simulator (options: order-worker sandbox --help)",
        add_help=False,
    )
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_sandbox)

    run = sub.add_parser("run", help="development: sandbox + worker + scheduler + webhooks on this machine")
    demo = sub.add_parser(
        "demo", help="development: 'run' plus a producer submitting orders and printing their events"
    )
    demo.add_argument("--orders", type=int, default=3, help="orders to submit (default 3)")
    for p in (run, demo):
        p.add_argument("--speed", type=float, default=60.0, help="sandbox clock speed factor (default 60)")
        p.add_argument("--sandbox-port", type=int, default=8090, help="the simulator's port (default 8090)")
        p.add_argument(
            "--webhooks-port", type=int, default=8091, help="the webhook receiver's (default 8091)"
        )
        p.add_argument(
            "--metrics-port",
            type=int,
            default=9191,
            help="the worker's /metrics; the scheduler's is the next",
        )
        p.set_defaults(func=cmd_run)
