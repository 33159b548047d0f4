"""The order ledger: the source of truth, one row per command_id.

``open_ledger(settings.ledger.ledger_url.get_secret_value())`` picks the engine from the URL scheme; both
run the same logic over an engine adapter, so one test suite proves both. The modules, by concern:

* ``base`` - the :class:`Ledger` contract and its records; ``migrations`` - the versioned schema;
* ``engine`` - the seam to an engine (Session, Dialect, Database); ``sqlite``, ``postgres`` - the adapters;
* ``rows`` - the ``orders`` columns and row <-> :class:`OrderRecord` mapping;
* ``rules`` - the order state machine as pure functions (no database);
* ``orders`` - order transitions (lock the row, apply a rule, write row and event), lookups, due scan;
* ``outbox`` - events awaiting publication; ``rejections`` - dead letters; ``pushes`` - push dedupe;
* ``held`` - verified pushes for orders not known yet, applied in the transaction that makes them known;
* ``budget`` - a partner's weight budget shared by every replica (policy in :mod:`worker.ratelimit`);
* ``views`` - what operators list: orders by state, stored events to send again;
* ``actions`` (rules in ``action_rules``) - operators' decisions on orders, intent before the partner call;
* ``sql`` - :class:`SqlLedger`, composed of those parts, plus migration, readiness, liveness and pruning;
* ``outage`` - which engine errors mean the ledger is out (unreachable, disk full), and the waiting with
  backoff that every role does instead of failing its work.

The parts are mixins over one :class:`Database` rather than collaborator objects: the contract is one
flat interface, so collaborators would need a forwarding method for each of its operations, and an order
change and its outbox event must share one transaction, which mixins get by sharing ``self._db``.
"""

from __future__ import annotations

from typing import Any

from worker.ledger.base import Ledger, UnknownOrderError

__all__ = ["EngineNotInstalledError", "Ledger", "UnknownOrderError", "open_ledger"]


class EngineNotInstalledError(ImportError):
    """The ledger URL names an engine whose driver is an optional extra that is not installed."""


def open_ledger(url: str, **opts: Any) -> Ledger:
    """Open (not migrate) the ledger at ``url``.

    * ``sqlite:///relative.db`` / ``sqlite:////absolute.db`` - options ``busy_timeout`` (seconds, >= 10,
      default 30), ``synchronous`` (``full`` default, ``normal``), ``pool_size`` (idle connections kept, 16).
    * ``postgresql://...`` (also ``postgres://``) - options ``pool_size`` (default 8, about the threads of
      one process), ``pool_min`` (1), ``pool_timeout`` (seconds to wait for a connection, 30),
      ``prepare_threshold`` (psycopg's; ``none`` behind a transaction-mode pgbouncer), ``schema``
      (search_path, created by ``migrate()``); other query parameters go to libpq, e.g.
      ``options=-csearch_path%3Dmyschema``.

    Options come from the URL's query string or keyword arguments (keywords win). Errors never repeat the
    URL, which may hold a password.
    """
    from worker.ledger.sql import SqlLedger

    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        from worker.ledger.sqlite import sqlite_from_url

        return SqlLedger(sqlite_from_url(url, **opts))
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        try:
            from worker.ledger.postgres import postgres_from_url
        except ImportError as error:
            if not (error.name or "").startswith("psycopg"):
                raise
            raise EngineNotInstalledError(
                "the ledger URL is a PostgreSQL one, but the PostgreSQL driver (psycopg, psycopg-pool) is "
                "not installed: install order-worker with its 'postgres' extra, "
                "e.g. pip install 'order-worker[postgres]'"
            ) from None

        return SqlLedger(postgres_from_url(url, **opts))
    raise ValueError(f"unsupported ledger URL scheme {scheme!r}: use sqlite:///PATH or postgresql://...")
