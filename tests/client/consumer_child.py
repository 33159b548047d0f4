"""A consumer process for ``test_stack``: the client's EventConsumer with a handler that records every
call, fails on some events the first time it sees them in this process, and (with ``--hang-at N``) stops
forever inside its N-th call so that the test can kill it there.

Everything goes to files the test reads: ``calls`` (one line per handler call, written before the
handler's work), ``done`` (one line per event the handler finished, written by the store once the
handler returned) and ``hung`` (the event it hangs in). ``done`` is also the dedupe store across
restarts: a ``SeenEvents`` over a file, as a user would back it with their own database.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from order_worker_client import EventConsumer, OrderEvent


class FileSeenEvents:
    """A store that survives the process: one line per event handled (appended and flushed to disk)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ids = set(path.read_text().split()) if path.exists() else set()

    def seen(self, event_id: str) -> bool:
        return event_id in self.ids

    def remember(self, event_id: str) -> None:
        with self.path.open("a") as handle:
            handle.write(event_id + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.ids.add(event_id)


def _append(path: Path, line: str) -> None:
    with path.open("a") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", required=True)
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--hang-at", type=int, default=0)
    args = parser.parse_args()
    calls_file, hung_file = args.dir / "calls", args.dir / "hung"
    failed_once: set[str] = set()
    calls = 0

    def handler(event: OrderEvent) -> None:
        nonlocal calls
        calls += 1
        _append(calls_file, event.event_id)
        if calls == args.hang_at:
            _append(hung_file, event.event_id)
            threading.Event().wait()  # stuck inside the handler until killed
        if event.event_id[0] in "0123" and event.event_id not in failed_once:
            failed_once.add(event.event_id)
            raise RuntimeError("the handler fails on this event the first time")

    consumer = EventConsumer(
        args.broker,
        args.queue,
        handler,
        exchange=args.exchange,
        prefetch=8,
        max_deliveries=10,
        retry_delay=0.05,
        seen=FileSeenEvents(args.dir / "done"),
    )
    signal.signal(signal.SIGTERM, lambda *_: consumer.stop())
    consumer.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
