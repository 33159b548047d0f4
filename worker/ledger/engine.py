"""The engine seam: what the shared ledger logic needs from a database, and nothing more.

The engines differ in how a connection is obtained, how a write is serialised and a few SQL fragments;
each adapter (``sqlite.py``, ``postgres.py``) implements :class:`Database` and its :class:`Dialect`, and
everything above this seam is written once. SQL is written with ``?`` placeholders (the PostgreSQL adapter
rewrites them once per statement text); statement texts are constants, never built from values, so both
engines reuse prepared statements.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from worker import tracing


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchall(self) -> Any: ...


Execute = Callable[[str, Sequence[Any]], Cursor]


class Session:
    """One connection for the length of one unit of work (a transaction, or autocommit statements).

    Results are always fetched to the end: on SQLite a statement left half-read keeps its transaction
    (and so the file's write lock) open.
    """

    __slots__ = ("_execute",)

    def __init__(self, execute: Execute) -> None:
        self._execute = execute

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self._execute(sql, params).fetchall())

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        rows = self.rows(sql, params)
        return rows[0] if rows else None

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._execute(sql, params).rowcount


class Dialect(ABC):
    """The SQL fragments that differ between engines."""

    name: str
    blob_type: str
    lock_row: str
    """Appended to the SELECT of a row about to be modified (a row lock where the engine has them)."""
    skip_locked: str
    """Appended to the SELECT of queue-like rows, so concurrent takers skip each other's rows."""
    lock_key: str
    """A statement taking a lock on a text key (one parameter) until the transaction ends, for rows that do
    not exist yet; empty where a write transaction already excludes every other writer."""

    @abstractmethod
    def any_of(self, column: str) -> str:
        """A condition 'column is one of the list parameter', with one placeholder whatever the list size
        (so the statement text, and its prepared plan, does not vary with the batch size)."""

    @abstractmethod
    def list_param(self, values: Sequence[str]) -> Any: ...

    @abstractmethod
    def json_text(self, column: str, key: str) -> str:
        """The text value of a top-level ``key`` of the JSON document stored in a binary ``column``."""


class Database(ABC):
    """How the shared logic gets a connection. Three kinds of unit, because the engines differ in what
    is cheap: PostgreSQL saves two round trips when a single statement runs in autocommit, SQLite needs
    every write to queue behind its one writer."""

    dialect: Dialect

    @abstractmethod
    def write(self, durable: bool = True) -> AbstractContextManager[Session]:
        """A write transaction: committed on normal exit, rolled back on an exception.

        ``durable=False`` marks bookkeeping whose loss in a power cut is harmless because it is redone
        (claims, scheduler holds, outbox leases, poll results the next poll sees again). An engine may then
        skip the flush to disk at commit; the next durable commit flushes it along, in order."""

    @abstractmethod
    def single(self) -> AbstractContextManager[Session]:
        """Statements that each stand alone atomically (may write), with the durability of
        ``write(durable=False)``: callers use it for bookkeeping only."""

    @abstractmethod
    def read(self) -> AbstractContextManager[Session]:
        """Read-only statements; never waits for writers."""

    @abstractmethod
    def migration(self) -> AbstractContextManager[Session]:
        """A write transaction holding the lock that serialises ``migrate()`` across processes."""

    @abstractmethod
    def close(self) -> None: ...

    def is_new(self) -> bool:
        """Nothing exists yet at this address, and opening a connection would create it (a SQLite file)."""
        return False

    def probe(self) -> None:
        """Raise if the database could not take the ledger's work now (``/readyz``); answers quickly."""
        with self.read() as s:
            s.one("SELECT 1")


class TracedDatabase(Database):
    """Each write transaction of a traced unit of work (a command, a push) as a span of its own: the time
    spent waiting for the write lock and committing shows next to the partner call it follows."""

    def __init__(self, inner: Database) -> None:
        self.inner = inner
        self.dialect = inner.dialect
        self._attributes = {"db.system.name": inner.dialect.name}

    @contextmanager
    def write(self, durable: bool = True) -> Iterator[Session]:
        with tracing.child_span("ledger transaction", self._attributes), self.inner.write(durable) as session:
            yield session

    def single(self) -> AbstractContextManager[Session]:
        return self.inner.single()

    def read(self) -> AbstractContextManager[Session]:
        return self.inner.read()

    def migration(self) -> AbstractContextManager[Session]:
        return self.inner.migration()

    def close(self) -> None:
        self.inner.close()

    def is_new(self) -> bool:
        return self.inner.is_new()

    def probe(self) -> None:
        self.inner.probe()


class Part:
    """A concern of :class:`~worker.ledger.sql.SqlLedger` (orders, outbox, ...): each one runs its units
    of work on the one database the ledger was opened on, so an order change and its outbox event can
    share a transaction."""

    _db: Database

    def _take(self, take: str, params: tuple[Any, ...], hold: str, until: float) -> list[tuple[Any, ...]]:
        """Queue-like rows (due orders, outbox events): ``take`` selects free ones, keyed by their first
        column, and ``hold`` keeps them until ``until``, in one transaction, so concurrent takers never get
        one row twice. A lost hold only makes the row free again, so its commit need not be durable."""
        with self._db.write(durable=False) as tx:
            rows = tx.rows(take, params)
            if rows:
                tx.run(hold, (until, self._db.dialect.list_param([row[0] for row in rows])))
        return rows


def delete_before(s: Session, table: str, key: str, column: str, before: float, limit: int) -> int:
    """Delete at most ``limit`` rows of ``table`` whose ``column`` lies before ``before`` (one bounded
    batch, so a prune never holds the write lock for long)."""
    return s.run(
        f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE {column} < ? LIMIT ?)",
        (before, limit),
    )
