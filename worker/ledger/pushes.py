"""Push dedupe: the documented dedupe key of every verified partner push, so a retried push is applied
once. Keys are kept until :meth:`SqlLedger.prune`, which must look further back than the partner's
longest retry ladder."""

from __future__ import annotations

from worker.ledger.engine import Part, Session, delete_before


class Pushes(Part):
    def record_push(self, dedupe_key: str, now: float) -> bool:
        with self._db.single() as s:
            inserted = s.run(
                "INSERT INTO pushes (dedupe_key, seen_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (dedupe_key, float(now)),
            )
        return inserted == 1

    @staticmethod
    def _prune_pushes(s: Session, before: float, limit: int) -> int:
        return delete_before(s, "pushes", "dedupe_key", "seen_at", before, limit)
