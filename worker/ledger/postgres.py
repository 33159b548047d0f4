"""The PostgreSQL adapter: any number of replicas on any number of nodes share one database.

There is no leader. Transitions lock their one order row (``SELECT ... FOR UPDATE``), so a poll and a
webhook seeing the same change queue on the row and the second finds nothing left to do. Queue-like scans
(due orders, outbox) use ``FOR UPDATE SKIP LOCKED``, so concurrent schedulers and relays each take rows
nobody else holds. Single statements run in autocommit (no BEGIN/COMMIT round trips); connections come
from a pool sized like the process's thread count, and psycopg prepares statements after a few uses.
"""

from __future__ import annotations

import os
import re
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from worker.ledger.engine import Cursor, Database, Dialect, Session

# Every replica migrating a database takes this transaction-scoped advisory lock first.
_MIGRATION_LOCK = 0x6F72_6465_72  # "order"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_OWN_OPTIONS = ("pool_size", "pool_min", "pool_timeout", "prepare_threshold", "schema")
PROBE_TIMEOUT = 3.0
RECONNECT_TIMEOUT = 10.0


@lru_cache(maxsize=1024)
def _pg_sql(sql: str) -> str:
    """The shared SQL uses ``?`` placeholders; psycopg wants ``%s`` (and a literal % doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresDialect(Dialect):
    name = "postgresql"
    blob_type = "BYTEA"
    lock_row = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    lock_key = "SELECT pg_advisory_xact_lock(hashtextextended(?, 0))"

    def any_of(self, column: str) -> str:
        return f"{column} = ANY(?)"

    def list_param(self, values: Sequence[str]) -> Any:
        return list(values)

    def json_text(self, column: str, key: str) -> str:
        return f"(convert_from({column}, 'UTF8')::jsonb ->> '{key}')"


class PostgresDatabase(Database):
    dialect = PostgresDialect()

    def __init__(
        self,
        conninfo: str,
        *,
        pool_size: int = 8,
        pool_min: int = 1,
        pool_timeout: float = 30.0,
        prepare_threshold: int | None = 5,
        schema: str | None = None,
    ) -> None:
        try:
            params = conninfo_to_dict(conninfo)
        except psycopg.ProgrammingError as exc:
            password = urlsplit(conninfo).password
            detail = str(exc).replace(password, "***") if password else str(exc)
            raise ValueError(f"invalid PostgreSQL ledger URL: {detail}") from None
        if schema is not None:
            if not _IDENTIFIER.match(schema):
                raise ValueError("schema must be a plain identifier (letters, digits, underscore)")
            params["options"] = f"{params.get('options') or ''} -csearch_path={schema}".strip()
        params.setdefault("application_name", "order-worker")
        params.setdefault("connect_timeout", "10")
        self._conninfo = make_conninfo("", **params)
        self.schema = schema
        self._pool_args: dict[str, Any] = {
            "min_size": min(pool_min, pool_size),
            "max_size": pool_size,
            "timeout": pool_timeout,
            # The pool's own reconnection backs off 1, 2, 4, ... s for this long, then leaves the next
            # attempt to the next caller that needs a connection. With its default (5 min) the backoff
            # reaches 32 s within a minute's outage, and the ledger could stay out that long after the
            # server is back; callers here wait for the ledger with their own capped backoff anyway.
            "reconnect_timeout": RECONNECT_TIMEOUT,
            "kwargs": {"autocommit": True, "prepare_threshold": prepare_threshold},
        }
        self._reopen_lock = threading.Lock()
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = self._open_pool()
        _INSTANCES.add(self)

    def _open_pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        return ConnectionPool(self._conninfo, open=True, name="order-worker-ledger", **self._pool_args)

    def _forked(self) -> None:
        """A pool's sockets and threads do not survive fork; the parent keeps using its own, the child
        opens a new one on first use. The inherited pool stays referenced, never collected: finalising
        its connections here could say goodbye to the server on sockets the parent still uses."""
        if self._pool is not None:
            _ORPHANS.append(self._pool)
        self._pool = None
        self._reopen_lock = threading.Lock()

    @contextmanager
    def _connection(self, timeout: float | None = None) -> Iterator[psycopg.Connection[Any]]:
        pool = self._pool
        if pool is None:
            with self._reopen_lock:
                if self._pool is None:
                    self._pool = self._open_pool()
                pool = self._pool
        with pool.connection(timeout=timeout) as conn:
            yield conn

    def probe(self) -> None:
        """``SELECT 1`` on a pooled connection, waiting at most ``PROBE_TIMEOUT`` for one: a stopped
        server must make ``/readyz`` say so within seconds, not after the pool's full timeout."""
        try:
            with self._connection(PROBE_TIMEOUT) as conn:
                conn.execute("SELECT 1").fetchall()
        except PoolTimeout:
            raise
        except psycopg.OperationalError:
            # A pooled session cut while idle (the pool discards it now): one more, on a fresh one, so a
            # cut session does not turn the replica unready while the server is up.
            with self._connection(PROBE_TIMEOUT) as conn:
                conn.execute("SELECT 1").fetchall()

    @staticmethod
    def _session(conn: psycopg.Connection[Any]) -> Session:
        def execute(sql: str, params: Sequence[Any]) -> Cursor:
            return conn.execute(_pg_sql(sql), params)

        return Session(execute)

    @contextmanager
    def write(self, durable: bool = True) -> Iterator[Session]:
        # Every commit is durable here: PostgreSQL's group commit already shares one WAL flush among the
        # concurrent committers, and relaxing it would cost a SET LOCAL round trip.
        with self._connection() as conn, conn.transaction():
            yield self._session(conn)

    @contextmanager
    def single(self) -> Iterator[Session]:
        with self._connection() as conn:
            yield self._session(conn)

    def read(self) -> AbstractContextManager[Session]:
        return self.single()

    @contextmanager
    def migration(self) -> Iterator[Session]:
        with self.write() as tx:
            tx.one("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
            if self.schema is not None:
                tx.run(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            yield tx

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()


_ORPHANS: list[ConnectionPool[Any]] = []
_INSTANCES: weakref.WeakSet[PostgresDatabase] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for database in list(_INSTANCES):
        database._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


def postgres_from_url(url: str, **opts: Any) -> PostgresDatabase:
    """A libpq URL (``postgresql://user@host:5432/db?...``). The ledger's own options are taken out of the
    query string (``pool_size``, ``pool_min``, ``pool_timeout``, ``prepare_threshold``, ``schema``) or
    given as keyword arguments (which win); everything else, such as
    ``options=-csearch_path%3Dmyschema`` or ``sslmode``, goes to libpq unchanged."""
    parts = urlsplit(url)
    scheme = "postgresql" if parts.scheme.startswith("postgres") else parts.scheme
    query = parse_qsl(parts.query, keep_blank_values=True)
    options: dict[str, Any] = {key: value for key, value in query if key in _OWN_OPTIONS}
    options.update(opts)
    # quote, not quote_plus: libpq decodes %20 but takes a '+' literally ("-c a=1 -c b=2" must survive).
    libpq = urlencode([(key, value) for key, value in query if key not in _OWN_OPTIONS], quote_via=quote)
    conninfo = urlunsplit((scheme, parts.netloc, parts.path, libpq, parts.fragment))
    kwargs: dict[str, Any] = {}
    for key, value in options.items():
        if key in ("pool_size", "pool_min"):
            kwargs[key] = int(value)
        elif key == "pool_timeout":
            kwargs[key] = float(value)
        elif key == "prepare_threshold":
            kwargs[key] = None if value in (None, "", "none", "None") else int(value)
        elif key == "schema":
            kwargs[key] = str(value)
        else:
            raise ValueError(f"unknown PostgreSQL ledger option {key!r} ({', '.join(_OWN_OPTIONS)})")
    return PostgresDatabase(conninfo, **kwargs)
