"""order-worker: every role and operator task behind one command.

Roles (one image, chosen by sub-command): worker, scheduler (scheduler + outbox relay), webhooks.
Operator tasks: migrate, submit, status, resolve, emergency, dead-letters, events, schemas.
Development: sandbox (the partner simulator, when installed), run (everything on this machine), demo.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from worker.cli import actions, development, operators, roles
from worker.cli.common import configure_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="order-worker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Settings come from ORDER_WORKER_* environment variables (see README). "
        "Run 'order-worker COMMAND --help' for each command.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    roles.register(sub)
    operators.register(sub)
    actions.register(sub)
    development.register(sub)
    return parser


DELEGATED: dict[str, Callable[[argparse.Namespace], int]] = {"sandbox": development.cmd_sandbox}
"""Commands with their own argument parser: everything after the name is theirs (argparse's REMAINDER
cannot capture leading options)."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    configure_logging(os.environ.get("ORDER_WORKER_LOG_LEVEL", "INFO"))
    if argv and argv[0] in DELEGATED:
        return DELEGATED[argv[0]](argparse.Namespace(rest=argv[1:]))
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
