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
    from worker.devstack import run_stack

    return run_stack(demo_orders=0, speed=args.speed)


def cmd_demo(args: argparse.Namespace) -> int:
    from worker.devstack import run_stack

    return run_stack(demo_orders=args.orders, speed=args.speed)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sandbox",
        help="run the local 0trace + itrx simulator (options: order-worker sandbox --help)",
        add_help=False,
    )
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_sandbox)

    p = sub.add_parser("run", help="development: sandbox + worker + scheduler + webhooks on this machine")
    p.add_argument("--speed", type=float, default=60.0, help="sandbox clock speed factor (default 60)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "demo", help="development: 'run' plus a producer submitting orders and printing their events"
    )
    p.add_argument("--orders", type=int, default=3, help="orders to submit (default 3)")
    p.add_argument("--speed", type=float, default=60.0, help="sandbox clock speed factor (default 60)")
    p.set_defaults(func=cmd_demo)
