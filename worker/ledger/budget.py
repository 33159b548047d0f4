"""A partner's weight budget, shared by every replica on this ledger (the policy is in
:mod:`worker.ratelimit`).

Takers of one budget serialise on its ``rate_budgets`` row (a row lock on PostgreSQL, the write lock on
SQLite), so two replicas can never both spend the last of a window. Every take happens under that one
lock, so its cost must not grow with the budget in use: a log of one row per charge would hold up to
2,250 rows per 0trace window (reads of weight 1), summed on every take. Charges are therefore added up
per second instead, one ``rate_buckets`` row per budget and second (an upsert), and a take reads at most
about ``window + 2`` rows whatever the budget's use.

A bucket keeps the time of its latest charge and counts, with all its weight, while that charge is inside
the window. The partner counts each charge on its own, so the count is conservative: it never misses a
charge the partner still counts, and counts at most one second's charges (the bucket the window's start
falls in) that the partner has already let go. A refused take is told when the oldest buckets leave,
which is exactly when it fits if nothing else is charged meanwhile. Buckets that left the window are
deleted by the next taker that sees one, so the table holds about ``window + 2`` rows per budget.

Reads stand back for creates: a read is charged only if it leaves ``reserve`` of the limit free, which
first takes (creates, operator actions) may use. Once reads fill the budget up to that line, every weight
that leaves the window goes to creates until they are back under it, so creates never race reads for
room. A bucket also counts the first takes' weight apart, so the policy can tell what reads may expect.
"""

from __future__ import annotations

import math

from worker.ledger.engine import Part
from worker.ledger.records import BudgetUse

_CREATE = "INSERT INTO rate_budgets (name, blocked_until) VALUES (?, ?) ON CONFLICT DO NOTHING"
_BLOCK = "UPDATE rate_budgets SET blocked_until = ? WHERE name = ? AND blocked_until < ?"
# The weight counted now, and the oldest bucket: one statement, so a take that finds nothing expired (all
# but about one per second) runs no DELETE.
_USED = (
    "SELECT COALESCE(SUM(CASE WHEN last_at > ? THEN weight ELSE 0 END), 0), MIN(second)"
    " FROM rate_buckets WHERE name = ?"
)
_EXPIRE = "DELETE FROM rate_buckets WHERE name = ? AND second < ?"
# Max of the two times, written with CASE because the engines name the scalar max differently; replicas'
# clocks differ, so a charge may land in its second after a later one.
_CHARGE = (
    "INSERT INTO rate_buckets (name, second, weight, first_weight, last_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (name, second) DO UPDATE SET weight = rate_buckets.weight + excluded.weight,"
    " first_weight = rate_buckets.first_weight + excluded.first_weight,"
    " last_at = CASE WHEN excluded.last_at > rate_buckets.last_at"
    " THEN excluded.last_at ELSE rate_buckets.last_at END"
)
_COUNTED = (
    "SELECT last_at, weight FROM rate_buckets WHERE name = ? AND last_at > ? AND weight > 0 ORDER BY last_at"
)
# Every counted bucket has ``second >= floor(last_at) >= floor(now - window)``: the bound keeps the read on
# the key's range.
_PEEK = (
    "SELECT COALESCE(SUM(weight), 0), COALESCE(SUM(first_weight), 0), MIN(second) FROM rate_buckets"
    " WHERE name = ? AND second >= ? AND last_at > ?"
)
_BLOCKED = "SELECT blocked_until FROM rate_budgets WHERE name = ?"


class RateBudget(Part):
    @property
    def shares_budget(self) -> bool:
        return True

    def _prepare_budget(self) -> None:
        lock_row = self._db.dialect.lock_row
        self._lock_budget = f"SELECT blocked_until FROM rate_budgets WHERE name = ?{lock_row}"

    def take_weight(
        self, name: str, weight: int, now: float, window: float, limit: int, reserve: int | None = None
    ) -> float:
        start = now - window
        with self._db.write(durable=False) as s:
            row = s.one(self._lock_budget, (name,))
            if row is None:
                s.run(_CREATE, (name, 0.0))
                row = s.one(self._lock_budget, (name,))
                assert row is not None
            blocked_until = float(row[0])
            if blocked_until > now:
                return blocked_until - now
            total = s.one(_USED, (start, name))
            used = int(total[0]) if total else 0
            if total is not None and total[1] is not None and int(total[1]) < math.floor(start):
                s.run(_EXPIRE, (name, math.floor(start)))
            if _fits(used, weight, limit, reserve):
                if weight > 0:  # a call the partner does not count leaves no trace
                    as_first = weight if reserve is None else 0
                    s.run(_CHARGE, (name, math.floor(now), weight, as_first, now))
                return 0.0
            if not _fits(0, weight, limit, reserve):
                return window
            counted = s.rows(_COUNTED, (name, start))
        for last_at, charged in counted:
            used -= int(charged)
            if _fits(used, weight, limit, reserve):
                return _until_gone(float(last_at), now, window)
        return window  # pragma: no cover - unreachable: an empty window fits the take (checked above)

    def budget_use(self, name: str, now: float, window: float) -> BudgetUse:
        start = now - window
        with self._db.read() as s:
            row = s.one(_PEEK, (name, math.floor(start), start))
            blocked = s.one(_BLOCKED, (name,))
        if row is None:
            return BudgetUse(0, 0, float(blocked[0]) if blocked else 0.0)
        oldest = None if row[2] is None else float(row[2])
        return BudgetUse(int(row[0]), int(row[1]), float(blocked[0]) if blocked else 0.0, oldest)

    def block_weight(self, name: str, until: float) -> None:
        with self._db.write(durable=False) as s:
            s.run(_CREATE, (name, until))
            s.run(_BLOCK, (until, name, until))


def _fits(used: int, weight: int, limit: int, reserve: int | None) -> bool:
    """Whether ``weight`` fits beside ``used``: a first take (``reserve`` None) up to the limit, a read
    only leaving ``reserve`` free."""
    return used + weight + (reserve or 0) <= limit


def _until_gone(last_at: float, now: float, window: float) -> float:
    """Seconds until a bucket whose latest charge is ``last_at`` stops counting. The moment is nudged up
    to the first float at which ``moment - window`` is past ``last_at`` (the sum can round down onto it),
    and ``moment - now`` is exact for times this close, so a caller retrying at ``now + wait`` finds the
    bucket gone."""
    moment = last_at + window
    while moment - window <= last_at:
        moment = math.nextafter(moment, math.inf)
    return max(0.01, moment - now)
