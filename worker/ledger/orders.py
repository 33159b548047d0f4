"""Order rows under the state machine: every transition is one transaction that locks the row, asks a
rule (:mod:`worker.ledger.rules`) what to do, and writes the row and its outbox event together.

Reading the row under a write lock (``FOR UPDATE`` on PostgreSQL, the file's write lock on SQLite) is what
serialises a poll, a webhook and a create racing on one order: the second one finds the first one's row,
so one change produces exactly one event.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from worker.ledger import rules
from worker.ledger.base import (
    Attempt,
    Claim,
    ClaimOutcome,
    DueKind,
    DueOrder,
    OrderRecord,
    UnknownOrderError,
)
from worker.ledger.engine import Part, Session
from worker.ledger.held import release
from worker.ledger.outbox import enqueue
from worker.ledger.rows import (
    FIND_BY_ORDER_ID,
    FIND_BY_PARTNER_REF,
    GET_ORDER,
    INSERT_ORDER,
    SELECT_ORDER,
    UPDATE_ORDER,
    insert_values,
    mutable_values,
    record_of,
)
from worker.messages import CreateOrderCommand, EventError, OrderEvent, Source
from worker.partners.base import PartnerOrder
from worker.status import Status

_PARKED = ", ".join(f"'{status.value}'" for status in sorted(rules.PARKED))


class Orders(Part):
    def _prepare_orders(self) -> None:
        dialect = self._db.dialect
        self._lock_order = f"{SELECT_ORDER} WHERE command_id = ?{dialect.lock_row}"
        due = (
            "SELECT command_id, provider, status, command FROM orders"
            " WHERE provider = ? AND next_action_at <= ? AND status {}"
        )
        by_due = f" ORDER BY next_action_at LIMIT ?{dialect.skip_locked}"
        submitting = f"'{Status.SUBMITTING.value}'"
        polled = f"NOT IN ({_PARKED}, {submitting})"  # live orders a poll is for
        self._take_due = {
            DueKind.ANY: due.format(f"NOT IN ({_PARKED})") + by_due,
            DueKind.CREATES: due.format(f"= {submitting}") + by_due,
            DueKind.POLLS: due.format(polled) + by_due,
            # Served by the deadline index: only live orders near a deadline, however many are due.
            DueKind.NEAR_DEADLINE: due.format(polled)
            + f" AND deadline_at < ? ORDER BY deadline_at LIMIT ?{dialect.skip_locked}",
        }
        self._oldest_due_poll = (
            "SELECT status, next_action_at FROM orders WHERE provider = ? AND next_action_at <= ?"
            f" AND status {polled} ORDER BY next_action_at LIMIT 1"
        )
        self._hold_due = f"UPDATE orders SET next_action_at = ? WHERE {dialect.any_of('command_id')}"

    # --- one unit of work on one order ----------------------------------------------------------------

    def _lock(self, tx: Session, command_id: str) -> OrderRecord:
        row = tx.one(self._lock_order, (command_id,))
        if row is None:
            raise UnknownOrderError(command_id)
        return record_of(row)

    def _update(
        self, command_id: str, attempt: int | None, rule: Callable[[OrderRecord], OrderRecord | None]
    ) -> bool:
        """A change of bookkeeping that is no transition (no event); False when ``attempt`` is stale."""
        with self._db.write() as tx:
            before = self._lock(tx, command_id)
            if not rules.current(before, attempt):
                return False
            after = rule(before)
            if after is not None:
                tx.run(UPDATE_ORDER, mutable_values(after))
        return True

    def _step(
        self,
        command_id: str,
        source: Source,
        now: float,
        rule: Callable[[OrderRecord], rules.Change | None],
        durable: bool = True,
    ) -> list[OrderEvent]:
        """A unit that may be a transition: the rule sees the locked row and its answer is written."""
        with self._db.write(durable=durable) as tx:
            before = self._lock(tx, command_id)
            return self._apply(tx, before, rule(before), source, now)

    def _close(
        self,
        command_id: str,
        attempt: int | None,
        now: float,
        rule: Callable[[OrderRecord], rules.Change | None],
        source: Source = Source.CREATE,
    ) -> list[OrderEvent] | None:
        """A step that closes an attempt: None, with nothing written, when ``attempt`` is no longer the
        order's current attempt. The fence is read under the row lock the write holds, so no newer
        attempt can begin between the two."""
        with self._db.write() as tx:
            before = self._lock(tx, command_id)
            if not rules.current(before, attempt):
                return None
            return self._apply(tx, before, rule(before), source, now)

    def _apply(
        self, tx: Session, before: OrderRecord, change: rules.Change | None, source: Source, now: float
    ) -> list[OrderEvent]:
        """Write the rule's answer; a write that gives the order its partner order id also applies the
        pushes held for it (:mod:`worker.ledger.held`), in this transaction."""
        if change is None:
            return []
        if change.event_type is None:
            tx.run(UPDATE_ORDER, mutable_values(change.after))
            return release(tx, self._db.dialect.lock_key, before, change.after, now)
        after, event = rules.sequenced(before, change, source, now)
        tx.run(UPDATE_ORDER, mutable_values(after))
        enqueue(tx, event, now)
        return [event, *release(tx, self._db.dialect.lock_key, before, after, now)]

    # --- create path ----------------------------------------------------------------------------------

    def claim(self, command: CreateOrderCommand, partner_ref: str, now: float) -> Claim:
        return self._claim(command, partner_ref, float(now), None)[0]

    def claim_attempt(
        self, command: CreateOrderCommand, partner_ref: str, now: float, lease_seconds: float
    ) -> tuple[Claim, Attempt | None]:
        """``claim`` and, for a command seen for the first time, ``begin_attempt``, in one durable unit.

        The new row is inserted as ``begin_attempt`` would leave the freshly claimed one (first attempt
        open and leased): nothing else can happen to a row between its insert and the next unit, except a
        scheduler taking it as due, which this closes. A command seen before gets exactly ``claim``'s
        answer and no attempt, and the caller goes the usual way (``begin_attempt``)."""
        return self._claim(command, partner_ref, float(now), float(lease_seconds))

    def _claim(
        self, command: CreateOrderCommand, partner_ref: str, now: float, lease_seconds: float | None
    ) -> tuple[Claim, Attempt | None]:
        record = rules.claimed(command, partner_ref, now)
        attempt = None if lease_seconds is None else rules.begin(record, now, lease_seconds)
        # A bare claim is bookkeeping (redone if lost); an open attempt is the intent to call: durable.
        with self._db.single() if attempt is None else self._db.write() as s:
            if s.run(INSERT_ORDER, insert_values(record if attempt is None else attempt)) == 1:
                # The row is exactly what was inserted: no need to read it back and parse it again.
                if attempt is None:
                    return Claim(ClaimOutcome.NEW, record), None
                return Claim(ClaimOutcome.NEW, record), Attempt(record=attempt, previous_unresolved=False)
            row = s.one(GET_ORDER, (command.command_id,))
        if row is None:
            # The insert hit the other unique key: another command already owns this partner_ref.
            raise ValueError(f"partner_ref of {command.command_id!r} is already used by another command")
        stored = record_of(row)
        return Claim(rules.claim_outcome(stored, record.fingerprint), stored), None

    def begin_attempt(self, command_id: str, now: float, lease_seconds: float) -> Attempt | None:
        now = float(now)
        with self._db.write() as tx:
            before = self._lock(tx, command_id)
            after = rules.begin(before, now, lease_seconds)
            if after is None:
                return None
            tx.run(UPDATE_ORDER, mutable_values(after))
        return Attempt(record=after, previous_unresolved=before.attempt_open)

    def end_attempt_unsent(
        self, command_id: str, next_action_at: float, error: EventError, *, attempt: int | None = None
    ) -> bool:
        return self._update(
            command_id, attempt, lambda before: rules.end_unsent(before, next_action_at, error)
        )

    def schedule_retry(
        self, command_id: str, next_action_at: float, error: EventError, *, attempt: int | None = None
    ) -> bool:
        return self._update(command_id, attempt, lambda before: rules.retry(before, next_action_at, error))

    def record_created(
        self,
        command_id: str,
        result: PartnerOrder,
        sealed_token: bytes | None,
        token_key_id: str | None,
        untrackable: bool,
        next_action_at: float | None,
        now: float,
        *,
        attempt: int | None = None,
    ) -> list[OrderEvent] | None:
        now = float(now)
        return self._close(
            command_id,
            attempt,
            now,
            lambda before: rules.created(
                before, result, sealed_token, token_key_id, untrackable, next_action_at, now
            ),
        )

    def record_failed(
        self, command_id: str, error: EventError, source: Source, now: float, *, attempt: int | None = None
    ) -> list[OrderEvent] | None:
        now = float(now)
        return self._close(command_id, attempt, now, lambda before: rules.failed(before, error, now), source)

    def mark_in_doubt(
        self, command_id: str, error: EventError, now: float, *, attempt: int | None = None
    ) -> list[OrderEvent] | None:
        now = float(now)
        return self._close(command_id, attempt, now, lambda before: rules.in_doubt(before, error, now))

    # --- tracking -------------------------------------------------------------------------------------

    def apply_observation(
        self,
        command_id: str,
        observation: PartnerOrder,
        source: Source,
        now: float,
        next_action_at: float | None,
        push: bool = False,
    ) -> list[OrderEvent]:
        now = float(now)
        return self._step(
            command_id,
            source,
            now,
            lambda before: rules.observed(before, observation, now, next_action_at, push),
            # What a push told us the partner may never repeat; what a poll told us the next poll sees again.
            durable=source is not Source.POLL,
        )

    def resolve_in_doubt(
        self, command_id: str, observation: PartnerOrder | None, operator_note: str, now: float
    ) -> list[OrderEvent]:
        now = float(now)
        rules.require_known_status(observation)
        with self._db.write() as tx:
            try:
                before = self._lock(tx, command_id)
            except UnknownOrderError:
                raise ValueError(f"no order {command_id!r}") from None
            change = rules.resolved(before, observation, operator_note, now)
            return self._apply(tx, before, change, Source.RECONCILE, now)

    def get(self, command_id: str) -> OrderRecord | None:
        return self._find(GET_ORDER, (command_id,))

    def find_by_order_id(self, provider: str, order_id: str) -> OrderRecord | None:
        return self._find(FIND_BY_ORDER_ID, (provider, order_id))

    def find_by_partner_ref(self, provider: str, partner_ref: str) -> OrderRecord | None:
        return self._find(FIND_BY_PARTNER_REF, (provider, partner_ref))

    def _find(self, sql: str, params: tuple[str, ...]) -> OrderRecord | None:
        with self._db.read() as s:
            row = s.one(sql, params)
        return None if row is None else record_of(row)

    def take_due(
        self,
        provider: str,
        now: float,
        limit: int,
        hold_seconds: float,
        kind: DueKind = DueKind.ANY,
        deadline_before: float | None = None,
    ) -> list[DueOrder]:
        now = float(now)
        params: tuple[object, ...] = (provider, now, limit)
        if kind == DueKind.NEAR_DEADLINE:
            if deadline_before is None:
                raise ValueError("DueKind.NEAR_DEADLINE needs deadline_before")
            params = (provider, now, float(deadline_before), limit)
        rows = self._take(self._take_due[kind], params, self._hold_due, now + hold_seconds)
        return [
            DueOrder(command_id=cid, provider=provider, status=status, command=json.loads(command))
            for cid, provider, status, command in rows
        ]

    def oldest_due_poll(self, provider: str, now: float) -> tuple[str, float] | None:
        with self._db.read() as s:
            row = s.one(self._oldest_due_poll, (provider, float(now)))
        return None if row is None else (str(row[0]), float(row[1]))

    def count_by_status(self) -> dict[tuple[str, str], int]:
        with self._db.read() as s:
            rows = s.rows(
                "SELECT provider, status, COUNT(*), SUM(CASE WHEN untrackable THEN 1 ELSE 0 END)"
                " FROM orders GROUP BY provider, status"
            )
        counts: dict[tuple[str, str], int] = {}
        for provider, status, count, untrackable in rows:
            counts[(provider, status)] = int(count)
            if untrackable:
                key = (provider, "untrackable")
                counts[key] = counts.get(key, 0) + int(untrackable)
        return counts
