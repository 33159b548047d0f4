"""``SqlLedger``: the one implementation of the :class:`Ledger` contract, over either engine.

It is composed of one part per concern (orders, outbox, rejections, pushes, held pushes, the rate budget;
see the package docstring) and adds what concerns the database as a whole: migrations, liveness, retention.
"""

from __future__ import annotations

import time

from worker.ledger.actions import Actions
from worker.ledger.base import Ledger
from worker.ledger.budget import RateBudget
from worker.ledger.engine import Database, TracedDatabase
from worker.ledger.held import HeldPushes
from worker.ledger.migrations import MIGRATIONS, SCHEMA_VERSION_DDL
from worker.ledger.orders import Orders
from worker.ledger.outage import LedgerUnavailable, unavailable_reason
from worker.ledger.outbox import Outbox
from worker.ledger.pushes import Pushes
from worker.ledger.rejections import Rejections
from worker.ledger.views import Views


class SqlLedger(Orders, Actions, Outbox, Rejections, Pushes, HeldPushes, RateBudget, Views, Ledger):
    """The :class:`Ledger` contract over any :class:`Database` adapter."""

    def __init__(self, database: Database) -> None:
        self._engine = database
        self._db = TracedDatabase(database)
        self._prepare_orders()
        self._prepare_outbox()
        self._prepare_budget()

    @property
    def database(self) -> Database:
        return self._engine

    def migrate(self) -> None:
        blob = self._db.dialect.blob_type
        with self._db.migration() as tx:
            tx.run(SCHEMA_VERSION_DDL)
            row = tx.one("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            current = int(row[0]) if row else 0
            for migration in MIGRATIONS:
                if migration.version <= current:
                    continue
                for statement in migration.render(blob):
                    tx.run(statement)
                tx.run(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, time.time()),
                )

    def schema_version(self) -> int:
        """The newest migration applied (0 before the first ``migrate()``)."""
        with self._db.read() as s:
            try:
                row = s.one("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            except Exception:  # noqa: BLE001 - any engine's "no such table" means version 0
                return 0
        return int(row[0]) if row else 0

    def pending_migrations(self) -> int:
        if self._db.is_new():
            return len(MIGRATIONS)
        self.ping()
        applied = self.schema_version()
        return sum(1 for migration in MIGRATIONS if migration.version > applied)

    def ping(self) -> None:
        try:
            self._db.probe()
        except Exception as error:
            reason = unavailable_reason(error)
            if reason is None:
                raise
            raise LedgerUnavailable(reason) from error

    def close(self) -> None:
        self._db.close()

    def prune(self, before: float, limit: int = 10_000) -> int:
        with self._db.single() as s:
            return self._prune_outbox(s, float(before), limit) + self._prune_pushes(s, float(before), limit)
