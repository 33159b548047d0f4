"""A partner's weight budget, shared by every replica on this ledger (the policy is in
:mod:`worker.ratelimit`).

The charges inside the sliding window are rows of ``rate_charges``; takers of one budget serialise on its
``rate_budgets`` row (a row lock on PostgreSQL, the write lock on SQLite), so two replicas can never both
spend the last of a window. The window can hold a few thousand charges (0trace: up to 2,250 reads of
weight 1 a minute) and every take happens under that one lock, so the window is summed in the engine
instead of being read out row by row; a refused take then reads only the oldest charges that can free
what it lacks (at most as many as its weight), to tell when it will fit.
"""

from __future__ import annotations

from worker.ledger.engine import Part

_CREATE = "INSERT INTO rate_budgets (name, blocked_until) VALUES (?, ?) ON CONFLICT DO NOTHING"
_EXPIRE = "DELETE FROM rate_charges WHERE name = ? AND at <= ?"
_USED = "SELECT COALESCE(SUM(weight), 0) FROM rate_charges WHERE name = ?"
_BLOCK = "UPDATE rate_budgets SET blocked_until = ? WHERE name = ? AND blocked_until < ?"
_CHARGE = "INSERT INTO rate_charges (name, at, weight) VALUES (?, ?, ?)"
# The oldest charges, as many as could free ``need`` (every counted charge weighs at least 1).
_OLDEST = "SELECT at, weight FROM rate_charges WHERE name = ? AND weight > 0 ORDER BY at LIMIT ?"


class RateBudget(Part):
    @property
    def shares_budget(self) -> bool:
        return True

    def _prepare_budget(self) -> None:
        lock_row = self._db.dialect.lock_row
        self._lock_budget = f"SELECT blocked_until FROM rate_budgets WHERE name = ?{lock_row}"

    def take_weight(self, name: str, weight: int, now: float, window: float, limit: int) -> float:
        with self._db.write(durable=False) as s:
            row = s.one(self._lock_budget, (name,))
            if row is None:
                s.run(_CREATE, (name, 0.0))
                row = s.one(self._lock_budget, (name,))
                assert row is not None
            blocked_until = float(row[0])
            if blocked_until > now:
                return blocked_until - now
            s.run(_EXPIRE, (name, now - window))
            total = s.one(_USED, (name,))
            used = int(total[0]) if total else 0
            if used + weight <= limit:
                s.run(_CHARGE, (name, now, weight))
                return 0.0
            if weight > limit:
                return window
            need = used + weight - limit
            oldest = s.rows(_OLDEST, (name, need))
        freed = 0
        for at, charged in oldest:
            freed += int(charged)
            if freed >= need:
                return max(0.01, float(at) + window - now)
        return window  # pragma: no cover - unreachable: ``need`` <= ``used``, their sum

    def block_weight(self, name: str, until: float) -> None:
        with self._db.write(durable=False) as s:
            s.run(_CREATE, (name, until))
            s.run(_BLOCK, (until, name, until))

    def weight_blocked_until(self, name: str) -> float:
        with self._db.read() as s:
            row = s.one("SELECT blocked_until FROM rate_budgets WHERE name = ?", (name,))
        return 0.0 if row is None else float(row[0])

    def used_weight(self, name: str, now: float, window: float) -> int:
        with self._db.read() as s:
            row = s.one(
                "SELECT COALESCE(SUM(weight), 0) FROM rate_charges WHERE name = ? AND at > ?",
                (name, now - window),
            )
        return 0 if row is None else int(row[0])
