"""The SQLite adapter: one file shared by every process of one node.

SQLite has one writer at a time per file. Two mechanisms queue writers, one per scope:

* between processes (Dramatiq workers, scheduler, relay, webhook receiver): an exclusive ``flock`` on
  ``<file>-writer.lock``, taken before ``BEGIN IMMEDIATE`` and dropped after the COMMIT. SQLite's own
  busy handler polls, sleeping 1, 2, 5, 10 ... ms between tries, so a process that found the file locked
  stayed idle long after the lock was free; the kernel hands a released ``flock`` to its next waiter at
  once. ``BEGIN IMMEDIATE`` still takes SQLite's write lock before the first read of a transaction (a
  read-modify-write can never be overtaken), and ``busy_timeout`` still covers writers that do not take
  the lock file (an ``sqlite3`` shell, say). Like a row lock in PostgreSQL, the wait has no time limit:
  a holder only ever runs SQL, and the kernel drops the lock of a process that dies;
* between threads of one process: a process-wide mutex, so that only one thread per process queues on
  the lock file and the rest are handed the lock (and the open transaction) without a system call.

WAL mode lets readers (gauges, lookups) run beside the writer. Connections are pooled and each is used by
one thread at a time, which is what makes ``check_same_thread=False`` safe.

Durability is chosen per transaction. The commits that stand between a partner call and a double charge
(the intent to call, its outcome, anything a push told us, rejections) flush the WAL to disk at the
configured ``synchronous`` level (FULL by default). Bookkeeping that is redone anyway after a power cut
(claims, scheduler holds, outbox leases and publish marks, poll results) commits at NORMAL, which survives
any process crash and is flushed along by the next durable commit (the WAL is sequential). Fsync is the
cost of a commit on SQLite; this keeps it where it buys safety.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from worker.ledger.engine import Database, Dialect, Session

_SYNCHRONOUS = {"off": 0, "normal": 1, "full": 2, "extra": 3}


MIN_FREE_BYTES = 1 << 20
"""Below this much free space beside the ledger file, ``/readyz`` says the disk is full."""

_GROUP_LIMIT = 16
"""Most write units committed together (a bound on how long the first of them waits for the commit)."""


class _Group:
    """One open write transaction, shared by the writers that queued while it ran (group commit)."""

    __slots__ = ("conn", "database", "done", "error", "level", "members")

    def __init__(self, database: SqliteDatabase, conn: _Connection, level: int) -> None:
        self.database = database
        self.conn = conn
        self.level = level
        self.members = 0
        self.done: threading.Event | None = None
        """Created when a writer hands the transaction over and must wait for a later writer's COMMIT;
        a writer that commits its own unit has nothing to wait for."""
        self.error: BaseException | None = None


class _Unit:
    """One write unit, as a context manager: a class rather than a generator, because every ledger write
    goes through it and a generator-based one costs about as much as the rest of the bookkeeping here."""

    __slots__ = ("database", "first", "group", "level", "shareable")

    def __init__(self, database: SqliteDatabase, level: int, shareable: bool) -> None:
        self.database = database
        self.level = level
        self.shareable = shareable

    def __enter__(self) -> Session:
        group = self.group = self.database._enter(self.level, self.shareable)
        conn = group.conn
        # The first unit of a transaction needs no savepoint: if it fails, rolling the whole transaction
        # back undoes it alone. Every later unit runs in one, so that it can be undone without the others.
        self.first = group.members == 0
        if not self.first:
            try:
                conn.execute("SAVEPOINT ow_unit")
            except BaseException as exc:
                group.error = exc
                self.database._leave(group, self.shareable)
                raise
        return Session(conn.execute)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        group, conn = self.group, self.group.conn
        if exc is not None:
            # Undo this unit alone; if SQLite already rolled the whole transaction back, every unit in it
            # is lost and its writers are told so.
            try:
                if self.first or not conn.in_transaction:
                    group.error = exc
                else:
                    conn.execute("ROLLBACK TO ow_unit")
                    conn.execute("RELEASE ow_unit")
            except sqlite3.Error as undo:
                group.error = undo
            with contextlib.suppress(_GroupFailed):  # this writer's own exception says more
                self.database._leave(group, self.shareable)
            return
        if self.first:
            group.members += 1
        else:
            try:
                conn.execute("RELEASE ow_unit")
                group.members += 1
            except Exception as error:  # noqa: BLE001 - the unit is not in the transaction: fail the group
                group.error = error
        self.database._leave(group, self.shareable)


class _Gate:
    """The one writer of a file in this process at a time, and the transaction it may hand to the next.

    Writers queue here instead of on SQLite's busy handler (which sleeps in growing steps). A writer that
    finishes its unit while others are queued does not commit: it hands the open transaction to the next
    writer and waits; the last writer of the queue (or the sixteenth) commits once for all of them. Each
    unit after the first runs inside its own SAVEPOINT, so a unit that fails is undone alone (a failing
    first unit rolls back the transaction, which holds nothing else); each writer returns only
    after the COMMIT that contains its unit, so what a caller was told is durable still is. One fsync
    then covers many units: that is where an SQLite ledger spends its time under concurrent writers."""

    __slots__ = ("busy", "cond", "group", "key", "lock_fd", "users", "waiting")

    def __init__(self, key: tuple[int, str]) -> None:
        self.key = key
        self.cond = threading.Condition(threading.Lock())
        self.busy = False
        self.waiting = 0
        self.group: _Group | None = None
        self.users = 0
        # Opened by this process itself (a forked child opens its own): flock belongs to the open file
        # description, so a child holding an inherited one would keep a dead parent's lock alive.
        self.lock_fd = os.open(key[1] + "-writer.lock", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def lock_file(self) -> None:
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX)

    def unlock_file(self) -> None:
        fcntl.flock(self.lock_fd, fcntl.LOCK_UN)


_GATES: dict[tuple[int, str], _Gate] = {}
_GATES_GUARD = threading.Lock()


def _gate(path: str) -> _Gate:
    """One gate per file and process, shared by every ledger object opened on that file (a CLI command
    and a worker in one process, or tests)."""
    key = (os.getpid(), os.path.realpath(path))
    with _GATES_GUARD:
        gate = _GATES.get(key)
        if gate is None:
            gate = _GATES[key] = _Gate(key)
        gate.users += 1
        return gate


def _drop_gate(gate: _Gate) -> None:
    """Forget the gate when its last ledger object closes (tests open hundreds of files per process); a
    gate that a write is still running or queued on keeps its lock file open."""
    with _GATES_GUARD:
        gate.users -= 1
        if gate.users > 0 or gate.busy or gate.waiting or gate.group is not None:
            return
        del _GATES[gate.key]
    os.close(gate.lock_fd)


class _GroupFailed(sqlite3.OperationalError):
    """The shared transaction holding this writer's unit was rolled back or failed to commit."""


class _Connection(sqlite3.Connection):
    """Remembers its ``synchronous`` level, so switching costs nothing when it does not change."""

    sync_level = -1


class SqliteDialect(Dialect):
    name = "sqlite"
    blob_type = "BLOB"
    lock_row = ""  # BEGIN IMMEDIATE already holds the only write lock
    skip_locked = ""
    lock_key = ""  # BEGIN IMMEDIATE: a write transaction is the only writer

    def any_of(self, column: str) -> str:
        return f"{column} IN (SELECT value FROM json_each(?))"

    def list_param(self, values: Sequence[str]) -> Any:
        return json.dumps(list(values))

    def json_text(self, column: str, key: str) -> str:
        return f"json_extract(CAST({column} AS TEXT), '$.{key}')"


class SqliteDatabase(Database):
    dialect = SqliteDialect()

    def __init__(
        self,
        path: str,
        *,
        busy_timeout: float = 30.0,
        synchronous: str = "full",
        pool_size: int = 16,
    ) -> None:
        if path in ("", ":memory:") or path.startswith("file::memory:"):
            raise ValueError("the SQLite ledger needs a file that all processes share, not a memory database")
        if synchronous.lower() not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(_SYNCHRONOUS)}")
        self._durable_level = _SYNCHRONOUS[synchronous.lower()]
        self._relaxed_level = min(self._durable_level, _SYNCHRONOUS["normal"])
        if busy_timeout < 10:
            raise ValueError("busy_timeout below 10 s makes writers fail under ordinary contention")
        self.path = path
        self._busy_timeout = float(busy_timeout)
        self._pool_size = pool_size
        self._closed = False
        self._reset()

        _INSTANCES.add(self)

    def is_new(self) -> bool:
        return not os.path.exists(self.path)

    def probe(self) -> None:
        """A read, and room to write: reads go on when the file's filesystem is full, every commit fails,
        so a full disk must make ``/readyz`` say so by itself."""
        stats = os.statvfs(os.path.dirname(os.path.abspath(self.path)))
        if stats.f_bavail * stats.f_frsize < MIN_FREE_BYTES:
            raise OSError(errno.ENOSPC, "less than 1 MiB free beside the ledger file")
        super().probe()

    def _reset(self) -> None:
        self._pool_lock = threading.Lock()
        self._gate = _gate(self.path)
        self._idle: list[_Connection] = []

    def _forked(self) -> None:
        """In a forked child the parent's connections (and any mutex a parent thread held) are not ours.
        Closing an inherited handle would drop this process's POSIX locks on the file, so they are only
        forgotten, never closed."""
        _ORPHANS.extend(self._idle)
        self._reset()

    def _connect(self) -> _Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,  # pooled: one thread at a time, handed over under a lock
            cached_statements=256,
            factory=_Connection,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        self._enable_wal(conn)
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # Switching a fresh file to WAL needs a moment of exclusive access; processes starting together
        # may see "database is locked" before the busy handler applies.
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
                continue
            if str(mode).lower() != "wal":
                raise RuntimeError(f"SQLite refused WAL mode for {self.path!r} (got {mode!r})")
            return

    def _take_idle(self, level: int | None) -> _Connection | None:
        """An idle connection, preferably one already at ``level``: durable and relaxed writes alternate
        (a create commits relaxed, durable, durable), and switching costs a PRAGMA each time."""
        idle = self._idle
        if not idle:
            return None
        if level is not None:
            for index in range(len(idle) - 1, -1, -1):
                if idle[index].sync_level == level:
                    return idle.pop(index)
        return idle.pop()

    def _checkout(self, level: int | None = None) -> _Connection:
        if self._closed:
            raise RuntimeError("the ledger is closed")
        with self._pool_lock:
            conn = self._take_idle(level)
        return conn if conn is not None else self._connect()

    def _checkin(self, conn: _Connection) -> None:
        keep = not conn.in_transaction and not self._closed
        if keep:
            with self._pool_lock:
                keep = len(self._idle) < self._pool_size
                if keep:
                    self._idle.append(conn)
        if not keep:
            conn.close()

    # --- writes: one writer per file and process, units committed in groups -----------------------------

    def _enter(self, level: int, shareable: bool) -> _Group:
        """Become the gate's writer; returns the open transaction to run in (at ``level`` or stricter)."""
        gate = self._gate
        with gate.cond:
            gate.waiting += 1
            try:
                while gate.busy:
                    gate.cond.wait()
            finally:
                gate.waiting -= 1
            gate.busy = True
            group, gate.group = gate.group, None
        try:
            if group is not None and (not shareable or group.level < level or group.database is not self):
                group.database._finish(group)  # commit it for its writers, as they would have
                group = None
            if group is None:
                conn = self._checkout(level)
                try:
                    if conn.sync_level != level:  # only settable outside a transaction
                        conn.execute(f"PRAGMA synchronous = {level}")
                        conn.sync_level = level
                    self._gate.lock_file()
                    try:
                        conn.execute("BEGIN IMMEDIATE")
                    except BaseException:
                        self._gate.unlock_file()
                        raise
                except BaseException:
                    self._checkin(conn)
                    raise
                group = _Group(self, conn, level)
        except BaseException:
            self._release(None)
            raise
        return group

    def _release(self, group: _Group | None) -> None:
        gate = self._gate
        with gate.cond:
            gate.group = group
            gate.busy = False
            if gate.waiting:  # a writer counts itself under this lock before it waits
                gate.cond.notify()

    def _finish(self, group: _Group) -> None:
        """COMMIT (or, after a failure, roll back) the group, tell its writers, return its connection."""
        conn = group.conn
        try:
            if group.error is None:
                try:
                    conn.execute("COMMIT")
                except Exception as exc:  # noqa: BLE001 - every writer of the group is told, then raises
                    group.error = exc
            if group.error is not None and conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    conn.close()
        finally:
            self._gate.unlock_file()
            if group.done is not None:
                group.done.set()
            self._checkin(conn)

    def _leave(self, group: _Group, shareable: bool) -> None:
        """Hand the open transaction to a queued writer, or commit it; returns once this writer's unit is
        committed (raises when the transaction holding it failed)."""
        gate = self._gate
        with gate.cond:
            hand_over = (
                shareable and group.error is None and gate.waiting > 0 and group.members < _GROUP_LIMIT
            )
        if hand_over:
            done = group.done
            if done is None:
                done = group.done = threading.Event()  # before the next writer can see the group
            self._release(group)
            done.wait()
        else:
            try:
                self._finish(group)
            finally:
                self._release(None)
        if group.error is not None:
            raise _GroupFailed(f"the ledger transaction was not committed: {group.error}") from group.error

    def write(self, durable: bool = True) -> AbstractContextManager[Session]:
        return _Unit(self, self._durable_level if durable else self._relaxed_level, shareable=True)

    def single(self) -> AbstractContextManager[Session]:
        # A lone statement still takes the file's write lock; queue on the process mutex like any write.
        return self.write(durable=False)

    @contextmanager
    def read(self) -> Iterator[Session]:
        conn = self._checkout()
        try:
            yield Session(conn.execute)
        finally:
            self._checkin(conn)

    def migration(self) -> AbstractContextManager[Session]:
        # Its own transaction, never shared: BEGIN IMMEDIATE serialises migrating processes and SQLite DDL
        # is transactional.
        return _Unit(self, self._durable_level, shareable=False)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        _INSTANCES.discard(self)
        with self._pool_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        _drop_gate(self._gate)


_ORPHANS: list[sqlite3.Connection] = []
_INSTANCES: weakref.WeakSet[SqliteDatabase] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # Runs in the child right after fork, while it is still single-threaded (Dramatiq forks its workers).
    global _GATES_GUARD  # noqa: PLW0603 - the guard may have been held by a parent thread
    _GATES_GUARD = threading.Lock()
    inherited = list(_GATES.values())
    _GATES.clear()
    for gate in inherited:  # the parent's lock files: closing our copies leaves its locks alone
        with contextlib.suppress(OSError):
            os.close(gate.lock_fd)
    for database in list(_INSTANCES):
        database._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


def sqlite_from_url(url: str, **opts: Any) -> SqliteDatabase:
    """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``; options as query parameters
    (``busy_timeout`` seconds, ``synchronous``, ``pool_size``) or keyword arguments (which win)."""
    parts = urlsplit(url)
    if parts.netloc:
        raise ValueError("a SQLite ledger URL has no host: use sqlite:///relative.db or sqlite:////abs.db")
    path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
    options: dict[str, Any] = dict(parse_qsl(parts.query))
    options.update(opts)
    kwargs: dict[str, Any] = {}
    for key, value in options.items():
        if key == "busy_timeout":
            kwargs[key] = float(value)
        elif key == "pool_size":
            kwargs[key] = int(value)
        elif key == "synchronous":
            kwargs[key] = str(value)
        else:
            raise ValueError(f"unknown SQLite ledger option {key!r} (busy_timeout, synchronous, pool_size)")
    return SqliteDatabase(path, **kwargs)
