"""The ledger's logic, written once for both engines.

Every decision (which transition applies, which event it produces, what the row looks like afterwards) is
made here in Python on a row read under a write lock, then written back with one UPDATE and one outbox
INSERT in the same transaction. The engines differ only in how a connection is obtained, how a write is
serialised and a few SQL fragments; that difference lives in a :class:`Database` adapter
(``sqlite.py``, ``postgres.py``) and its :class:`Dialect`. Keeping the logic engine-free is what makes the
two backends behave identically, and lets one test suite prove it for both.

SQL here is written with ``?`` placeholders; the PostgreSQL adapter rewrites them once per statement text.
Statement texts are constants (never built from values), so both engines reuse prepared statements.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import fields
from typing import Any, Protocol

from worker.ledger.base import (
    Attempt,
    Claim,
    ClaimOutcome,
    DueOrder,
    Ledger,
    OrderRecord,
    OutboxRow,
    UnknownOrderError,
)
from worker.ledger.migrations import MIGRATIONS, SCHEMA_VERSION_DDL
from worker.messages import (
    CreateOrderCommand,
    EventError,
    EventType,
    OrderEvent,
    Source,
    iso_from_epoch,
    rejection_event_id,
    transition_event_id,
)
from worker.partners.base import PartnerOrder
from worker.status import TERMINAL, Status, progress

# --- the engine adapter ---------------------------------------------------------------------------------


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

    @abstractmethod
    def any_of(self, column: str) -> str:
        """A condition 'column is one of the list parameter', with one placeholder whatever the list size
        (so the statement text, and its prepared plan, does not vary with the batch size)."""

    @abstractmethod
    def list_param(self, values: Sequence[str]) -> Any: ...


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


# --- SQL -------------------------------------------------------------------------------------------------

_COLUMNS = (
    "command_id",
    "provider",
    "fingerprint",
    "command",
    "partner_ref",
    "status",
    "provider_status",
    "order_id",
    "snapshot",
    "sealed_token",
    "token_key_id",
    "untrackable",
    "attempts",
    "attempt_open",
    "lease_until",
    "next_action_at",
    "partner_updated_at",
    "last_push_at",
    "last_error",
    "event_seq",
    "created_at",
    "updated_at",
)
# Everything but the identity columns; a transition rewrites them all with one statement text.
_IDENTITY = frozenset({"command_id", "provider", "fingerprint", "command", "partner_ref", "created_at"})
_MUTABLE = tuple(column for column in _COLUMNS if column not in _IDENTITY)
_COLUMN_LIST = ", ".join(_COLUMNS)

_SELECT_ORDER = f"SELECT {_COLUMN_LIST} FROM orders"
_GET_ORDER = f"{_SELECT_ORDER} WHERE command_id = ? LIMIT 1"
_FIND_BY_ORDER_ID = f"{_SELECT_ORDER} WHERE provider = ? AND order_id = ? LIMIT 1"
_FIND_BY_PARTNER_REF = f"{_SELECT_ORDER} WHERE provider = ? AND partner_ref = ? LIMIT 1"
_INSERT_ORDER = (
    f"INSERT INTO orders ({_COLUMN_LIST}) VALUES ({', '.join('?' for _ in _COLUMNS)}) ON CONFLICT DO NOTHING"
)
_UPDATE_ORDER = "UPDATE orders SET " + ", ".join(f"{c} = ?" for c in _MUTABLE) + " WHERE command_id = ?"
_INSERT_OUTBOX = (
    "INSERT INTO outbox (event_id, routing_key, event_type, body, created_at) VALUES (?, ?, ?, ?, ?)"
)
# Orders the scheduler leaves alone: finished, or waiting for a human (in_doubt).
_PARKED = ", ".join(f"'{status.value}'" for status in sorted(TERMINAL | {Status.IN_DOUBT}))
_OPEN_CREATE = (Status.SUBMITTING.value, Status.IN_DOUBT.value)


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _dump(value: Any) -> str:
    """``json.dumps(value, separators=(",", ":"), ensure_ascii=False)`` without an encoder per call."""
    return _ENCODER.encode(value)


_RECORD_FIELD_ORDER = tuple(field.name for field in fields(OrderRecord))
_RECORD_FIELDS = frozenset(_RECORD_FIELD_ORDER)


def replace(record: OrderRecord, **changes: Any) -> OrderRecord:
    """``dataclasses.replace`` for the frozen, validator-free ``OrderRecord``, at a fraction of its cost:
    a shallow copy of the instance dictionary with the changed fields (unknown names still raise)."""
    if not _RECORD_FIELDS.issuperset(changes):
        raise TypeError(f"OrderRecord has no field(s) {sorted(changes.keys() - _RECORD_FIELDS)}")
    new: OrderRecord = object.__new__(OrderRecord)
    state = new.__dict__
    state.update(record.__dict__)
    state.update(changes)
    return new


def _record(row: tuple[Any, ...]) -> OrderRecord:
    """The row as a record, built as ``replace`` builds one: a frozen dataclass's ``__init__`` pays an
    ``object.__setattr__`` per field, and every unit of work reads a row. The values are the row's own,
    so there is nothing for ``__init__`` to check."""
    (
        command_id,
        provider,
        fingerprint,
        command,
        partner_ref,
        status,
        provider_status,
        order_id,
        snapshot,
        sealed_token,
        token_key_id,
        untrackable,
        attempts,
        attempt_open,
        lease_until,
        next_action_at,
        partner_updated_at,
        last_push_at,
        last_error,
        event_seq,
        created_at,
        updated_at,
    ) = row
    return _new_record(
        dict(
            command_id=command_id,
            provider=provider,
            fingerprint=fingerprint,
            command=json.loads(command),
            partner_ref=partner_ref,
            status=status,
            provider_status=provider_status,
            order_id=order_id,
            order=None if snapshot is None else json.loads(snapshot),
            sealed_token=None if sealed_token is None else bytes(sealed_token),
            token_key_id=token_key_id,
            untrackable=bool(untrackable),
            attempts=attempts,
            attempt_open=bool(attempt_open),
            lease_until=lease_until,
            next_action_at=next_action_at,
            partner_updated_at=partner_updated_at,
            last_push_at=last_push_at,
            last_error=None if last_error is None else EventError.model_validate_json(last_error),
            event_seq=event_seq,
            created_at=created_at,
            updated_at=updated_at,
        )
    )


def _new_record(values: dict[str, Any]) -> OrderRecord:
    """An ``OrderRecord`` of ``values`` (one per field), built as ``replace`` builds one."""
    record: OrderRecord = object.__new__(OrderRecord)
    record.__dict__.update(values)
    return record


def _mutable_values(record: OrderRecord) -> tuple[Any, ...]:
    return (
        record.status,
        record.provider_status,
        record.order_id,
        None if record.order is None else _dump(record.order),
        record.sealed_token,
        record.token_key_id,
        record.untrackable,
        record.attempts,
        record.attempt_open,
        record.lease_until,
        record.next_action_at,
        record.partner_updated_at,
        record.last_push_at,
        None if record.last_error is None else record.last_error.model_dump_json(),
        record.event_seq,
        record.updated_at,
        record.command_id,
    )


def _later(stored: float | None, observed: float | None) -> float | None:
    if stored is None:
        return observed
    if observed is None:
        return stored
    return max(stored, observed)


def _settled(status: str, next_action_at: float | None) -> float | None:
    """Terminal orders never have a next action: the due index then holds only live work."""
    return None if status in TERMINAL else next_action_at


# --- the ledger ------------------------------------------------------------------------------------------


class SqlLedger(Ledger):
    """The :class:`Ledger` contract over any :class:`Database` adapter."""

    def __init__(self, database: Database) -> None:
        self._db = database
        dialect = database.dialect
        self._lock_order = f"{_SELECT_ORDER} WHERE command_id = ?{dialect.lock_row}"
        self._take_due = (
            "SELECT command_id, provider, status, command FROM orders"
            f" WHERE next_action_at <= ? AND status NOT IN ({_PARKED})"
            f" ORDER BY next_action_at LIMIT ?{dialect.skip_locked}"
        )
        self._hold_due = f"UPDATE orders SET next_action_at = ? WHERE {dialect.any_of('command_id')}"
        self._take_outbox = (
            "SELECT event_id, routing_key, event_type, body, created_at FROM outbox"
            " WHERE published_at IS NULL AND (lease_until IS NULL OR lease_until <= ?)"
            f" ORDER BY created_at LIMIT ?{dialect.skip_locked}"
        )
        self._lease_outbox = f"UPDATE outbox SET lease_until = ? WHERE {dialect.any_of('event_id')}"
        self._publish_outbox = (
            "UPDATE outbox SET published_at = ?, lease_until = NULL"
            f" WHERE {dialect.any_of('event_id')} AND published_at IS NULL"
        )
        self._release_outbox = (
            "UPDATE outbox SET lease_until = NULL"
            f" WHERE {dialect.any_of('event_id')} AND published_at IS NULL"
        )

    @property
    def database(self) -> Database:
        return self._db

    # --- lifecycle -----------------------------------------------------------------------------------

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

    def ping(self) -> None:
        with self._db.read() as s:
            s.one("SELECT 1")

    def close(self) -> None:
        self._db.close()

    # --- helpers -------------------------------------------------------------------------------------

    def _lock(self, tx: Session, command_id: str) -> OrderRecord:
        row = tx.one(self._lock_order, (command_id,))
        if row is None:
            raise UnknownOrderError(command_id)
        return _record(row)

    @staticmethod
    def _save(tx: Session, record: OrderRecord) -> None:
        tx.run(_UPDATE_ORDER, _mutable_values(record))

    @staticmethod
    def _enqueue(tx: Session, event: OrderEvent, now: float) -> None:
        tx.run(_INSERT_OUTBOX, (event.event_id, event.routing_key, event.type.value, event.to_json(), now))

    def _transition(
        self,
        tx: Session,
        before: OrderRecord,
        after: OrderRecord,
        *,
        event_type: EventType,
        source: Source,
        now: float,
        error: EventError | None = None,
    ) -> list[OrderEvent]:
        """Write ``after`` and its one event. The sequence number is taken under the row lock, so whoever
        observes the n-th transition (poll, webhook, create) derives the same event id."""
        seq = before.event_seq + 1
        after = replace(after, event_seq=seq)
        event = OrderEvent(
            event_id=transition_event_id(after.command_id, seq, event_type, after.status),
            type=event_type,
            occurred_at=iso_from_epoch(now),
            command_id=after.command_id,
            provider=after.provider,
            order_id=after.order_id,
            status=Status(after.status),
            previous_status=Status(before.status),
            provider_status=after.provider_status,
            source=source,
            order=after.order,
            error=error,
            metadata=after.metadata,
        )
        self._save(tx, after)
        self._enqueue(tx, event, now)
        return [event]

    # --- create path ---------------------------------------------------------------------------------

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
        fingerprint = command.fingerprint()
        stored_command = command.model_dump(mode="json")
        fresh: dict[str, Any] = {
            "command_id": command.command_id,
            "provider": command.provider,
            "fingerprint": fingerprint,
            "command": _dump(stored_command),
            "partner_ref": partner_ref,
            "status": Status.SUBMITTING.value,
            "untrackable": False,
            "attempts": 0,
            "attempt_open": False,
            "next_action_at": now,
            "event_seq": 0,
            "created_at": now,
            "updated_at": now,
        }
        if lease_seconds is not None:
            lease_until = now + lease_seconds
            fresh.update(attempts=1, attempt_open=True, lease_until=lease_until, next_action_at=lease_until)
        values = tuple(fresh.get(column) for column in _COLUMNS)  # everything else starts NULL
        # A bare claim is bookkeeping (redone if lost); an open attempt is the intent to call: durable.
        with self._db.single() if lease_seconds is None else self._db.write() as s:
            if s.run(_INSERT_ORDER, values) == 1:
                # The row is exactly what was inserted: no need to read it back and parse it again.
                inserted = {**fresh, "command": stored_command}
                record = _new_record({name: inserted.get(name) for name in _RECORD_FIELD_ORDER})
                if lease_seconds is None:
                    return Claim(ClaimOutcome.NEW, record), None
                claimed = replace(
                    record, attempts=0, attempt_open=False, lease_until=None, next_action_at=now
                )
                return Claim(ClaimOutcome.NEW, claimed), Attempt(record=record, previous_unresolved=False)
            row = s.one(f"{_SELECT_ORDER} WHERE command_id = ?", (command.command_id,))
        if row is None:
            # The insert hit the other unique key: another command already owns this partner_ref.
            raise ValueError(f"partner_ref of {command.command_id!r} is already used by another command")
        record = _record(row)
        outcome = ClaimOutcome.DUPLICATE if record.fingerprint == fingerprint else ClaimOutcome.CONFLICT
        return Claim(outcome, record), None

    def begin_attempt(self, command_id: str, now: float, lease_seconds: float) -> Attempt | None:
        now = float(now)
        with self._db.write() as tx:
            before = self._lock(tx, command_id)
            if before.status != Status.SUBMITTING or (
                before.lease_until is not None and before.lease_until > now
            ):
                return None
            after = replace(
                before,
                attempts=before.attempts + 1,
                attempt_open=True,
                lease_until=now + lease_seconds,
                next_action_at=now + lease_seconds,
                updated_at=now,
            )
            self._save(tx, after)
        return Attempt(record=after, previous_unresolved=before.attempt_open)

    def end_attempt_unsent(self, command_id: str, next_action_at: float, error: EventError) -> None:
        with self._db.write() as tx:
            before = self._lock(tx, command_id)
            if before.status != Status.SUBMITTING or not before.attempt_open:
                return  # already ended (or moved on): taking a second attempt back would undercount
            self._save(
                tx,
                replace(
                    before,
                    attempts=max(before.attempts - 1, 0),
                    attempt_open=False,
                    lease_until=None,
                    last_error=error,
                    next_action_at=float(next_action_at),
                ),
            )

    def schedule_retry(self, command_id: str, next_action_at: float, error: EventError) -> None:
        with self._db.write() as tx:
            before = self._lock(tx, command_id)
            if before.status != Status.SUBMITTING:
                return
            self._save(
                tx,
                replace(
                    before,
                    attempt_open=False,
                    lease_until=None,
                    last_error=error,
                    next_action_at=float(next_action_at),
                ),
            )

    def record_created(
        self,
        command_id: str,
        result: PartnerOrder,
        sealed_token: bytes | None,
        token_key_id: str | None,
        untrackable: bool,
        next_action_at: float | None,
        now: float,
    ) -> list[OrderEvent]:
        now = float(now)
        # A raw status this version does not know still means the order exists; awaiting_deposit is the
        # earliest state after creation, so any later observation can still move it forward.
        status = (result.status or Status.AWAITING_DEPOSIT).value
        with self._db.write() as tx:
            before = self._lock(tx, command_id)
            if before.status not in _OPEN_CREATE:
                return []
            after = replace(
                before,
                status=status,
                provider_status=result.provider_status,
                order_id=result.order_id,
                order=result.order,
                sealed_token=sealed_token,
                token_key_id=token_key_id,
                untrackable=untrackable,
                attempt_open=False,
                lease_until=None,
                next_action_at=_settled(status, next_action_at),
                partner_updated_at=_later(before.partner_updated_at, result.updated_at),
                updated_at=now,
            )
            event_type = EventType.UNTRACKABLE if untrackable else EventType.CREATED
            return self._transition(tx, before, after, event_type=event_type, source=Source.CREATE, now=now)

    def record_failed(
        self, command_id: str, error: EventError, source: Source, now: float
    ) -> list[OrderEvent]:
        now = float(now)
        with self._db.write() as tx:
            before = self._lock(tx, command_id)
            if before.status not in _OPEN_CREATE:
                return []
            return self._fail(tx, before, error, source, now)

    def _fail(
        self, tx: Session, before: OrderRecord, error: EventError, source: Source, now: float
    ) -> list[OrderEvent]:
        after = replace(
            before,
            status=Status.FAILED.value,
            attempt_open=False,
            lease_until=None,
            next_action_at=None,
            last_error=error,
            updated_at=now,
        )
        return self._transition(
            tx, before, after, event_type=EventType.FAILED, source=source, now=now, error=error
        )

    def mark_in_doubt(self, command_id: str, error: EventError, now: float) -> list[OrderEvent]:
        now = float(now)
        with self._db.write() as tx:
            before = self._lock(tx, command_id)
            if before.status != Status.SUBMITTING:
                return []
            after = replace(
                before,
                status=Status.IN_DOUBT.value,
                attempt_open=False,
                lease_until=None,
                next_action_at=None,
                last_error=error,
                updated_at=now,
            )
            return self._transition(
                tx, before, after, event_type=EventType.IN_DOUBT, source=Source.CREATE, now=now, error=error
            )

    # --- tracking ------------------------------------------------------------------------------------

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
        # What a push told us the partner may never repeat; what a poll told us the next poll sees again.
        with self._db.write(durable=source is not Source.POLL) as tx:
            before = self._lock(tx, command_id)
            if before.status in TERMINAL:
                return []
            # What is written whatever the observation says: the cadence and the push clock.
            kept = replace(
                before,
                next_action_at=next_action_at,
                last_push_at=now if push else before.last_push_at,
                updated_at=now,
            )
            seen_at, stored_at = observation.updated_at, before.partner_updated_at
            if seen_at is not None and stored_at is not None and seen_at < stored_at:
                self._save(tx, kept)  # older than what we hold: a late push or a stale poll
                return []
            refreshed = replace(
                kept,
                provider_status=observation.provider_status,
                order=observation.order,
                order_id=before.order_id or observation.order_id,
                partner_updated_at=_later(stored_at, seen_at),
            )
            new_status = observation.status
            if new_status is None or new_status == before.status:
                self._save(tx, refreshed)
                return []
            # Not provably newer (same partner time, or a partner that reports none): only progress wins,
            # so a late observation never moves an order backwards.
            provably_newer = seen_at is not None and (stored_at is None or seen_at > stored_at)
            if not provably_newer and progress(new_status) < progress(before.status):
                self._save(tx, kept)
                return []
            after = replace(
                refreshed, status=new_status.value, next_action_at=_settled(new_status, next_action_at)
            )
            if before.status in _OPEN_CREATE:
                # The partner's own signal settles the create (an itrx callback naming our out_trade_no).
                after = replace(after, order_id=observation.order_id, attempt_open=False, lease_until=None)
            return self._transition(
                tx, before, after, event_type=EventType.STATUS_CHANGED, source=source, now=now
            )

    def resolve_in_doubt(
        self, command_id: str, observation: PartnerOrder | None, operator_note: str, now: float
    ) -> list[OrderEvent]:
        now = float(now)
        if observation is not None and observation.status is None:
            raise ValueError("the observation has no canonical status; resolve with a known partner status")
        with self._db.write() as tx:
            try:
                before = self._lock(tx, command_id)
            except UnknownOrderError:
                raise ValueError(f"no order {command_id!r}") from None
            if before.status != Status.IN_DOUBT:
                raise ValueError(f"order {command_id!r} is {before.status}, not in_doubt")
            if observation is None:
                error = EventError(code="abandoned", reason=operator_note)
                return self._fail(tx, before, error, Source.RECONCILE, now)
            assert observation.status is not None
            status = observation.status.value
            after = replace(
                before,
                status=status,
                provider_status=observation.provider_status,
                order_id=observation.order_id,
                order=observation.order,
                attempt_open=False,
                lease_until=None,
                # Poll at once: the order has been untracked for as long as it was in doubt.
                next_action_at=_settled(status, now),
                partner_updated_at=_later(before.partner_updated_at, observation.updated_at),
                updated_at=now,
            )
            return self._transition(
                tx, before, after, event_type=EventType.STATUS_CHANGED, source=Source.RECONCILE, now=now
            )

    def get(self, command_id: str) -> OrderRecord | None:
        return self._find(_GET_ORDER, (command_id,))

    def find_by_order_id(self, provider: str, order_id: str) -> OrderRecord | None:
        return self._find(_FIND_BY_ORDER_ID, (provider, order_id))

    def find_by_partner_ref(self, provider: str, partner_ref: str) -> OrderRecord | None:
        return self._find(_FIND_BY_PARTNER_REF, (provider, partner_ref))

    def _find(self, sql: str, params: tuple[str, ...]) -> OrderRecord | None:
        with self._db.read() as s:
            row = s.one(sql, params)
        return None if row is None else _record(row)

    def take_due(self, now: float, limit: int, hold_seconds: float) -> list[DueOrder]:
        now = float(now)
        with self._db.write(durable=False) as tx:
            rows = tx.rows(self._take_due, (now, limit))
            if rows:
                ids = [row[0] for row in rows]
                tx.run(self._hold_due, (now + hold_seconds, self._db.dialect.list_param(ids)))
        return [
            DueOrder(command_id=cid, provider=provider, status=status, command=json.loads(command))
            for cid, provider, status, command in rows
        ]

    def record_push(self, dedupe_key: str, now: float) -> bool:
        with self._db.single() as s:
            inserted = s.run(
                "INSERT INTO pushes (dedupe_key, seen_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (dedupe_key, float(now)),
            )
        return inserted == 1

    # --- bad input -----------------------------------------------------------------------------------

    def record_rejection(
        self,
        rejection_key: str,
        command_id: str | None,
        provider: str | None,
        error: EventError,
        metadata: dict[str, str],
        detail: dict[str, Any],
        now: float,
        source: Source = Source.CREATE,
    ) -> list[OrderEvent]:
        now = float(now)
        event = OrderEvent(
            event_id=rejection_event_id(rejection_key),
            type=EventType.REJECTED,
            occurred_at=iso_from_epoch(now),
            command_id=command_id,
            provider=provider,
            source=source,
            error=error,
            metadata=metadata,
        )
        with self._db.write() as tx:
            inserted = tx.run(
                "INSERT INTO dead_letters (rejection_key, event_id, command_id, provider, code, reason,"
                " metadata, detail, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    rejection_key,
                    event.event_id,
                    command_id,
                    provider,
                    error.code,
                    error.reason,
                    _dump(metadata),
                    _dump(detail),
                    now,
                ),
            )
            if inserted != 1:
                return []
            self._enqueue(tx, event, now)
        return [event]

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._db.read() as s:
            rows = s.rows(
                "SELECT rejection_key, event_id, command_id, provider, code, reason, metadata, detail,"
                " created_at FROM dead_letters ORDER BY created_at DESC, rejection_key DESC LIMIT ?",
                (limit,),
            )
        return [
            {
                "rejection_key": key,
                "event_id": event_id,
                "command_id": command_id,
                "provider": provider,
                "code": code,
                "reason": reason,
                "metadata": json.loads(metadata),
                "detail": json.loads(detail),
                "created_at": created_at,
            }
            for key, event_id, command_id, provider, code, reason, metadata, detail, created_at in rows
        ]

    # --- outbox --------------------------------------------------------------------------------------

    def claim_outbox(self, now: float, limit: int, lease_seconds: float) -> list[OutboxRow]:
        now = float(now)
        with self._db.write(durable=False) as tx:
            rows = tx.rows(self._take_outbox, (now, limit))
            if rows:
                ids = [row[0] for row in rows]
                tx.run(self._lease_outbox, (now + lease_seconds, self._db.dialect.list_param(ids)))
        return [
            OutboxRow(
                event_id=event_id, routing_key=key, event_type=event_type, body=bytes(body), created_at=at
            )
            for event_id, key, event_type, body, at in rows
        ]

    def mark_published(self, event_ids: list[str], now: float) -> None:
        if event_ids:
            with self._db.single() as s:
                s.run(self._publish_outbox, (float(now), self._db.dialect.list_param(event_ids)))

    def release_outbox(self, event_ids: list[str]) -> None:
        if event_ids:
            with self._db.single() as s:
                s.run(self._release_outbox, (self._db.dialect.list_param(event_ids),))

    def prune(self, before: float, limit: int = 10_000) -> int:
        with self._db.single() as s:
            outbox = s.run(
                "DELETE FROM outbox WHERE event_id IN"
                " (SELECT event_id FROM outbox WHERE published_at < ? LIMIT ?)",
                (float(before), limit),
            )
            pushes = s.run(
                "DELETE FROM pushes WHERE dedupe_key IN"
                " (SELECT dedupe_key FROM pushes WHERE seen_at < ? LIMIT ?)",
                (float(before), limit),
            )
        return outbox + pushes

    # --- gauges --------------------------------------------------------------------------------------

    def outbox_backlog(self) -> int:
        with self._db.read() as s:
            row = s.one("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
        return int(row[0]) if row else 0

    def outbox_oldest_created_at(self) -> float | None:
        with self._db.read() as s:
            row = s.one("SELECT MIN(created_at) FROM outbox WHERE published_at IS NULL")
        return float(row[0]) if row and row[0] is not None else None

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
