"""The order ledger: the source of truth, one row per command_id.

``open_ledger(settings.ledger_url.get_secret_value())`` picks the backend from the URL scheme; both run the
same logic (:mod:`worker.ledger.sql`) over an engine adapter.
"""

from __future__ import annotations

from typing import Any

from worker.ledger.base import Ledger, UnknownOrderError

__all__ = ["Ledger", "UnknownOrderError", "open_ledger"]


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
        from worker.ledger.postgres import postgres_from_url

        return SqlLedger(postgres_from_url(url, **opts))
    raise ValueError(f"unsupported ledger URL scheme {scheme!r}: use sqlite:///PATH or postgresql://...")
