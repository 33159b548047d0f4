"""order-worker: every role and operator task behind one command.

Roles (one image, chosen by sub-command): worker, scheduler (scheduler + outbox relay), webhooks.
Operator tasks: migrate, submit, resolve, emergency, settings, schemas; status, orders, dead-letters, events,
republish.
Development: sandbox (the partner simulator, when installed), run (everything on this machine), demo.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

from worker.cli import actions, development, inspection, operators, roles
from worker.logs import configure_from_environment


def _version() -> str:
    try:
        return version("order-worker")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="order-worker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Settings come from ORDER_WORKER_* environment variables (see README). "
        "Run 'order-worker COMMAND --help' for each command.",
    )
    parser.add_argument("--version", action="version", version=f"order-worker {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    roles.register(sub)
    operators.register(sub)
    inspection.register(sub)
    actions.register(sub)
    development.register(sub)
    return parser


DELEGATED: dict[str, Callable[[argparse.Namespace], int]] = {"sandbox": development.cmd_sandbox}
"""Commands with their own argument parser: everything after the name is theirs (argparse's REMAINDER
cannot capture leading options)."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    configure_from_environment()
    if argv and argv[0] in DELEGATED:
        return DELEGATED[argv[0]](argparse.Namespace(rest=argv[1:]))
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
