"""Dramatiq's command line, with order-worker's logging in its main process and every process it forks.

Left to itself, Dramatiq configures prose logging at a level of its own (``--verbose``) in each process,
ignoring ``ORDER_WORKER_LOG_LEVEL``. The worker role therefore starts Dramatiq through this module with
``--skip-logging``: logging is configured here, before Dramatiq forks, and the worker and fork processes
inherit it. Their lines still travel through Dramatiq's pipes to the main process, because our handler
writes to whatever ``sys.stderr`` is in each process.
"""

from __future__ import annotations

import sys

from dramatiq.cli import main as dramatiq_main

from worker.logs import configure_from_environment


def main() -> int:
    configure_from_environment()
    code: int = dramatiq_main()  # type: ignore[no-untyped-call]  # Dramatiq ships no annotations
    return code


if __name__ == "__main__":
    sys.exit(main())
