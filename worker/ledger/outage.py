"""When the ledger cannot answer or cannot write: which errors mean that, and how every role waits for it.

A ledger that is out (PostgreSQL stopped or restarting, every session cut, the SQLite file's filesystem
full) is not a fault of the command being handled. Failing the command would spend its Dramatiq retries
and its quorum-queue deliveries until it is dead-lettered, though nothing is wrong with it; so callers
ask :func:`unavailable_reason` whether an error means the ledger is out, and then wait
(:class:`LedgerWaiter`) and try the same unit again instead of giving up on their work.

Reasons are fixed phrases with the engine's error code, never the driver's message, which can carry a
host, a user or a path.
"""

from __future__ import annotations

import errno
import random
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from worker.logs import get_logger

log = get_logger(__name__)

T = TypeVar("T")

_SQLITE_REASONS = {
    "SQLITE_FULL": "disk full: the ledger file's filesystem has no space left",
    "SQLITE_IOERR": "I/O error on the ledger file",
    "SQLITE_CANTOPEN": "the ledger file cannot be opened",
    "SQLITE_READONLY": "the ledger file is read-only",
}
# SQLSTATE classes of PostgreSQL that say the server or the session is gone, not that the statement is
# wrong: 08 connection exception, 57P admin/crash shutdown or "cannot connect now", 53 insufficient
# resources (53100 disk full), 58 system error (I/O); not 57014, a cancelled statement.
_PG_CLASSES = {"08": "connection lost", "57P": "server shutting down or restarting", "58": "system error"}


class LedgerUnavailable(Exception):
    """The ledger stayed out for longer than the caller was willing to wait; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"ledger unavailable: {reason}")
        self.reason = reason


def unavailable_reason(error: BaseException) -> str | None:
    """Why the ledger is out, when ``error`` (or an error it was raised from) says it is; else None."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        reason = _reason_of(current)
        if reason is not None:
            return reason
        current = current.__cause__ or current.__context__
    return None


def _reason_of(error: BaseException) -> str | None:
    if isinstance(error, LedgerUnavailable):
        return error.reason
    # PostgreSQL's driver is the postgres extra: its errors are looked for only once it was loaded (by the
    # PostgreSQL engine), since none can occur before.
    pool, psycopg = sys.modules.get("psycopg_pool"), sys.modules.get("psycopg")
    if pool is not None and isinstance(error, pool.PoolTimeout):
        return "PostgreSQL: no connection could be opened in time"
    if psycopg is not None and isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
        state = getattr(error, "sqlstate", None)
        if state is None:
            return "PostgreSQL: cannot connect or the connection was lost"
        if state == "53100":
            return f"PostgreSQL: disk full ({state})"
        if state.startswith("53"):
            return f"PostgreSQL: insufficient resources ({state})"
        what = _PG_CLASSES.get(state[:2]) or _PG_CLASSES.get(state[:3])
        return None if what is None else f"PostgreSQL: {what} ({state})"
    if isinstance(error, sqlite3.Error):
        name = getattr(error, "sqlite_errorname", None) or ""
        for prefix, reason in _SQLITE_REASONS.items():
            if name.startswith(prefix):
                return f"{reason} ({name})"
        return None
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return "disk full: the ledger file's filesystem has no space left (ENOSPC)"
    return None


class _Outage:
    """This process's view of the current outage, so one warning starts it (and one more for each new
    reason seen during it) and one line ends it, however many threads are waiting."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.since: float | None = None
        self.reasons: set[str] = set()

    def begin(self, reason: str, waiting: str) -> None:
        with self._lock:
            if reason in self.reasons:
                return
            first = self.since is None
            if self.since is None:
                self.since = time.monotonic()
            self.reasons.add(reason)
        log.warning(
            "ledger_unavailable" if first else "ledger_still_unavailable",
            reason=reason,
            waiting=waiting,
            next="waiting for the ledger, then the same work again",
        )

    def end(self) -> None:
        with self._lock:
            if self.since is None:
                return
            seconds, self.since = time.monotonic() - self.since, None
            self.reasons = set()
        log.warning("ledger_available_again", outage_seconds=round(seconds, 1))


OUTAGE = _Outage()

_wait_hooks: list[Callable[[], None]] = []


def on_every_wait(hook: Callable[[], None]) -> None:
    """Run ``hook`` in the waiting thread before each wait for the ledger (the worker restarts its actor
    time limit there: time spent waiting for the ledger is not time spent on the command)."""
    _wait_hooks.append(hook)


class LedgerWaiter:
    """Tries a unit of work again, with capped exponential backoff and jitter, while the ledger is out."""

    def __init__(
        self, first: float = 0.25, cap: float = 5.0, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.first = first
        self.cap = cap
        self.sleep = sleep

    def delay(self, attempt: int) -> float:
        """The wait before try ``attempt + 1`` (attempt counts from 1)."""
        base: float = min(self.cap, self.first * 2.0 ** (attempt - 1))
        return base * (0.75 + random.random() * 0.25)

    def hold(self, unit: Callable[[], T], waiting: str, deadline: float | None = None) -> T:
        """``unit()``, tried again while it fails because the ledger is out, until ``deadline``
        (``time.monotonic()``; None: no limit). Past it, raises :class:`LedgerUnavailable`. Any other
        error is raised at once."""
        attempt = 0
        while True:
            try:
                result = unit()
            except Exception as error:
                reason = unavailable_reason(error)
                if reason is None:
                    raise
                attempt += 1
                pause = self.delay(attempt)
                if deadline is not None and time.monotonic() + pause > deadline:
                    raise LedgerUnavailable(reason) from error
                OUTAGE.begin(reason, waiting)
                for hook in _wait_hooks:
                    hook()
                self.sleep(pause)
                continue
            if attempt:
                OUTAGE.end()
            return result

    def pause_after(self, error: BaseException, attempt: int, waiting: str) -> float | None:
        """For loops that handle their own errors: the seconds to wait after ``error`` (their
        ``attempt``-th failure in a row), or None when the error does not mean the ledger is out."""
        reason = unavailable_reason(error)
        if reason is None:
            return None
        OUTAGE.begin(reason, waiting)
        return self.delay(attempt)

    @staticmethod
    def recovered() -> None:
        """A loop's unit of work succeeded: if an outage was under way in this process, it is over."""
        if OUTAGE.since is not None:
            OUTAGE.end()
