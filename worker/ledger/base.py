"""The ledger contract. Two backends implement it (SQLite for one node, PostgreSQL for many replicas).

Why a ledger at all: the queue is transport and may lose, repeat or reorder messages; the ledger decides.
Every method below is one database transaction, so a crash between two calls leaves a state the next
call (or the scheduler) can continue from. Events are written to the outbox in the same transaction as
the state change they describe, and each carries the deterministic id of that transition. The values it
takes and returns are in :mod:`worker.ledger.records`, and importable from here with the contract.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from worker.ledger.records import (
    ActionClaim,
    ActionRecord,
    ActionStart,
    ActionState,
    Attempt,
    BudgetUse,
    Claim,
    ClaimOutcome,
    DueKind,
    DueOrder,
    EventQuery,
    HeldPush,
    HoldOutcome,
    OrderQuery,
    OrderRecord,
    OutboxRow,
    Rejection,
    UnknownOrderError,
)
from worker.messages import (
    CreateOrderCommand,
    EventError,
    OrderEvent,
    ResolveOrderCommand,
    Source,
)
from worker.partners.base import PartnerOrder

__all__ = [
    "ActionClaim",
    "ActionRecord",
    "ActionStart",
    "ActionState",
    "Attempt",
    "BudgetUse",
    "Claim",
    "ClaimOutcome",
    "DueKind",
    "DueOrder",
    "EventQuery",
    "HeldPush",
    "HoldOutcome",
    "Ledger",
    "OrderQuery",
    "OrderRecord",
    "OutboxRow",
    "Rejection",
    "UnknownOrderError",
]


class Ledger(ABC):
    """All timestamps are unix seconds (float) passed in by the caller, which keeps tests deterministic.

    A write naming a command_id that was never claimed raises :class:`UnknownOrderError` (rows are never
    deleted, so that is always a caller bug); ``resolve_in_doubt`` raises ValueError for it, as for any
    order that is not in_doubt. Reads return None instead.
    """

    # --- lifecycle -----------------------------------------------------------------------------
    @abstractmethod
    def migrate(self) -> None:
        """Apply pending versioned schema migrations (idempotent, safe to race from several processes)."""

    # --- operators' views ----------------------------------------------------------------------
    @abstractmethod
    def list_orders(self, query: OrderQuery) -> list[OrderRecord]:
        """One page of orders matching ``query``, oldest last change first."""

    @abstractmethod
    def stored_events(self, query: EventQuery) -> list[OutboxRow]:
        """One page of the events still kept (published or not), oldest first, unchanged: same id, same
        body, so consumers that dedupe on the event id see a replay as what it is."""

    @abstractmethod
    def pending_migrations(self) -> int:
        """How many migrations are not applied yet (0: ready). Creates nothing, so tools that only read can
        refuse an unmigrated ledger instead of leaving an empty SQLite file behind; raises when the database
        cannot be reached."""

    @abstractmethod
    def ping(self) -> None:
        """Raise if the database cannot answer a trivial query (used by /readyz)."""

    @abstractmethod
    def close(self) -> None: ...

    # --- create path ---------------------------------------------------------------------------
    @abstractmethod
    def claim(self, command: CreateOrderCommand, partner_ref: str, now: float) -> Claim:
        """Insert the row for ``command.command_id`` (status submitting, attempts 0, next_action_at now)
        unless it exists. Existing with the same fingerprint -> DUPLICATE; with another -> CONFLICT.
        The insert races safely: two workers claiming the same id get one NEW and one DUPLICATE."""

    def claim_attempt(
        self, command: CreateOrderCommand, partner_ref: str, now: float, lease_seconds: float
    ) -> tuple[Claim, Attempt | None]:
        """``claim`` and, for a command seen for the first time, ``begin_attempt``: a caller with nothing to
        check between the two (0trace) saves a durable unit when the adapter writes both at once. This
        default takes two units, which is as safe: a lost claim is redone, and the attempt is only begun
        on the claimed row. A command seen before gets ``claim``'s answer and no attempt."""
        claim = self.claim(command, partner_ref, now)
        if claim.outcome is not ClaimOutcome.NEW:
            return claim, None
        return claim, self.begin_attempt(command.command_id, now, lease_seconds)

    @abstractmethod
    def begin_attempt(self, command_id: str, now: float, lease_seconds: float) -> Attempt | None:
        """Commit the intent to call the partner: only when status is submitting and no live lease is held
        (lease_until NULL or <= now). Sets lease_until = now + lease_seconds, attempts += 1,
        attempt_open True, next_action_at = now + lease_seconds (so the scheduler re-drives it if this
        worker dies). Returns None when another worker holds the lease or the order has moved on."""

    # Fencing: the writes below close an attempt. Given ``attempt`` (the ``attempts`` its begin left, 0
    # before any), each applies only while the row's attempts is still that number, read under the
    # write's own row lock; otherwise it writes nothing and answers False / None ("stale"): the caller
    # was paused past its lease and another worker began a newer attempt. ``attempt`` None is unfenced.
    @abstractmethod
    def end_attempt_unsent(
        self, command_id: str, next_action_at: float, error: EventError, *, attempt: int | None = None
    ) -> bool:
        """The attempt provably never reached the partner: attempt_open False, attempts -= 1, lease
        cleared, last_error set, still submitting, next_action_at as given. False: stale attempt."""

    @abstractmethod
    def schedule_retry(
        self, command_id: str, next_action_at: float, error: EventError, *, attempt: int | None = None
    ) -> bool:
        """A failure that is safe to retry with the same idempotency key: attempt_open False, lease
        cleared, last_error set, still submitting, next_action_at as given (the scheduler re-drives).
        False: stale attempt."""

    @abstractmethod
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
        """The partner created the order. One transaction: order_id, status, provider_status, order
        snapshot, sealed token, untrackable flag, attempt_open False, lease cleared, next_action_at;
        outbox event ``created`` (``untrackable`` when untrackable), source create, previous_status the
        stored status. Applies only while status is submitting or in_doubt; otherwise returns [] and
        changes nothing (a redelivered create after completion must not rewind anything).

        The pushes held for the order (:meth:`hold_push`) are applied in the same transaction, after the
        create, as ``apply_observation`` with ``push`` would apply them (source webhook, their events after
        the create's), and their dedupe keys recorded; so is every transition that first gives an order
        its partner order id (an operator's or a callback's resolution of an in_doubt order). None: stale
        attempt."""

    @abstractmethod
    def record_failed(
        self, command_id: str, error: EventError, source: Source, now: float, *, attempt: int | None = None
    ) -> list[OrderEvent] | None:
        """submitting/in_doubt -> failed with event ``failed`` carrying ``error``; no-op ([]) otherwise.
        None: stale attempt."""

    @abstractmethod
    def mark_in_doubt(
        self, command_id: str, error: EventError, now: float, *, attempt: int | None = None
    ) -> list[OrderEvent] | None:
        """submitting -> in_doubt with event ``in_doubt``: the create may or may not exist at the partner.
        Lease cleared, next_action_at NULL (nothing automatic may re-send it). No-op otherwise. None:
        stale attempt."""

    # --- tracking ------------------------------------------------------------------------------
    @abstractmethod
    def apply_observation(
        self,
        command_id: str,
        observation: PartnerOrder,
        source: Source,
        now: float,
        next_action_at: float | None,
        push: bool = False,
    ) -> list[OrderEvent]:
        """Record what the partner says the order looks like now.

        Rules, in order: a terminal order never changes (returns []); an observation whose updated_at is
        older than the stored partner_updated_at is ignored; an observation with status None (unknown raw
        status) only refreshes provider_status/snapshot; the same status refreshes the snapshot without an
        event; a different status with the same updated_at but lower progress (worker.status.progress) is
        ignored; otherwise the transition is written with one ``status_changed`` event. An in_doubt order
        observed this way (a callback naming its out_trade_no) takes the observed status and order_id.
        Whatever happens, next_action_at is set as given (NULL once terminal) and, when ``push``,
        last_push_at = now. Concurrent calls for the same order serialise (row lock / BEGIN IMMEDIATE), so
        a poll and a webhook seeing the same change produce exactly one event."""

    @abstractmethod
    def resolve_in_doubt(
        self, command_id: str, observation: PartnerOrder | None, operator_note: str, now: float
    ) -> list[OrderEvent]:
        """Operator decision on an in_doubt order. With an observation (the partner order was found):
        in_doubt -> observed status, order_id set, ``status_changed`` event, source reconcile. Without
        (abandon): in_doubt -> failed, ``failed`` event with error code ``abandoned`` and the note as
        reason, source reconcile. Raises ValueError when the order is not in_doubt."""

    @abstractmethod
    def get(self, command_id: str) -> OrderRecord | None: ...

    @abstractmethod
    def find_by_order_id(self, provider: str, order_id: str) -> OrderRecord | None: ...

    @abstractmethod
    def find_by_partner_ref(self, provider: str, partner_ref: str) -> OrderRecord | None: ...

    @abstractmethod
    def take_due(
        self,
        provider: str,
        now: float,
        limit: int,
        hold_seconds: float,
        kind: DueKind = DueKind.ANY,
        deadline_before: float | None = None,
    ) -> list[DueOrder]:
        """``provider``'s orders whose next_action_at <= now and whose status is neither terminal nor
        in_doubt, of ``kind``, at most ``limit``. Each returned row's next_action_at moves to now +
        hold_seconds in the same transaction, so concurrent schedulers (SKIP LOCKED on PostgreSQL) never
        hand out one twice. ``deadline_before`` is required by ``DueKind.NEAR_DEADLINE`` only."""

    @abstractmethod
    def oldest_due_poll(self, provider: str, now: float) -> tuple[str, float] | None:
        """(status, next_action_at) of ``provider``'s poll that is due longest, or None when none is due:
        how far polling lags behind its cadence."""

    @abstractmethod
    def record_push(self, dedupe_key: str, now: float) -> bool:
        """Remember a verified push by its documented dedupe key; True the first time only."""

    @abstractmethod
    def hold_push(
        self, push: HeldPush, now: float, limit: int, expired_before: float
    ) -> tuple[HoldOutcome, int]:
        """Keep a verified push whose order is not found, unless the order is found now (FOUND: the check
        and the keep are serialised with the create that records the order id, so a push is never kept
        after its order was recorded) or ``limit`` pushes are held (FULL). Held pushes older than
        ``expired_before`` are dropped first; returns the outcome and how many were dropped. A push held
        already (same dedupe key) is DUPLICATE."""

    @abstractmethod
    def drop_expired_pushes(self, before: float, limit: int = 10_000) -> int:
        """Drop at most ``limit`` held pushes held before ``before`` (their order never appeared)."""

    @abstractmethod
    def held_push_count(self) -> int: ...

    # --- operator actions on an order ------------------------------------------------------------
    def begin_action(self, command: ResolveOrderCommand, now: float, lease_seconds: float) -> ActionClaim:
        """Commit the intent to send an operator's choice, before any partner call, under the order's row
        lock. A new action on an action_required order is stored open and leased (BEGUN); on any other
        order it is stored rejected with a ``rejected`` event (NOT_ACTIONABLE). A known action_id with
        another fingerprint is CONFLICT; one with an outcome is DONE; an open one is BUSY while its lease
        lives and otherwise taken over (BEGUN, previous_unresolved, attempts += 1). An unknown order
        writes nothing (UNKNOWN_ORDER)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no operator actions")

    def finish_action(
        self, action_id: str, state: ActionState, error: EventError | None, now: float
    ) -> list[OrderEvent]:
        """Record an open action's outcome in one transaction: ACCEPTED writes an ``action_accepted``
        event (a transition of the order, source operator), REJECTED a dead-letter record and a
        ``rejected`` event, MOOT no event. An action that is not open is left alone ([])."""
        raise NotImplementedError(f"{type(self).__name__} keeps no operator actions")

    def release_action(self, action_id: str, error: EventError) -> None:
        """A call that may be sent again later failed: the action stays open, its lease is freed at once
        so the redelivery need not wait for it, and the error is kept."""
        raise NotImplementedError(f"{type(self).__name__} keeps no operator actions")

    def get_action(self, action_id: str) -> ActionRecord | None:
        raise NotImplementedError(f"{type(self).__name__} keeps no operator actions")

    # --- bad input -----------------------------------------------------------------------------
    @abstractmethod
    def record_rejection(self, rejection: Rejection, now: float) -> list[OrderEvent]:
        """Write a dead-letter record and a ``rejected`` event (id from messages.rejection_event_id).
        Idempotent on the rejection's key: a redelivered bad message returns [] and writes nothing."""

    @abstractmethod
    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """Newest dead-letter records first (for `order-worker dead-letters` and tests)."""

    # --- outbox --------------------------------------------------------------------------------
    @abstractmethod
    def claim_outbox(self, now: float, limit: int, lease_seconds: float) -> list[OutboxRow]:
        """Unpublished rows whose lease is free or expired, oldest first; leased until now+lease_seconds
        in the same transaction (SKIP LOCKED on PostgreSQL) so relays in every replica share the work."""

    @abstractmethod
    def mark_published(self, event_ids: list[str], now: float) -> None: ...

    @abstractmethod
    def release_outbox(self, event_ids: list[str]) -> None:
        """Clear the lease of rows a relay could not publish, so another pass takes them at once."""

    def prune(self, before: float, limit: int = 10_000) -> int:
        """Delete at most ``limit`` published outbox rows published before ``before`` and push dedupe keys
        seen before it; returns how many rows went. Without it both tables grow with every order forever.
        ``before`` must lie further back than the longest partner push retry ladder, or a late retry of a
        push would be taken for new. Orders and dead letters are never pruned (they are the record).
        The default keeps nothing to prune, for in-memory test doubles."""
        return 0

    # --- shared partner budget ----------------------------------------------------------------------
    @property
    def shares_budget(self) -> bool:
        """Whether ``take_weight``/``block_weight`` keep one budget for every process using this ledger's
        storage. A ledger whose state is private to its process (an in-memory double) answers False: a
        budget kept there would let each replica spend the partner account's whole budget."""
        return False

    def take_weight(
        self, name: str, weight: int, now: float, window: float, limit: int, reserve: int | None = None
    ) -> float:
        """Charge ``weight`` to budget ``name`` at ``now`` and return 0 when the charges of the last
        ``window`` seconds, this one included, stay within ``limit``; otherwise charge nothing and return
        the seconds until it would fit (``window`` for a weight that never fits, the time left when the
        budget is blocked). Takers of one budget serialise, so concurrent replicas never overspend it
        together.

        ``reserve`` None makes the take a first one (a create, an operator action), counted apart in
        ``budget_use``. Any other take is a read: it must also leave ``reserve`` of ``limit`` free, which
        only first takes may use.

        Charges may be counted a second at a time (:mod:`worker.ledger.budget`): then a charge counts
        until the window has passed the latest charge of its second, so the count is never below what the
        partner's own sliding window holds and above it by at most one second's charges. A take refused
        with a wait fits at ``now + wait`` if nothing else was charged meanwhile."""
        raise NotImplementedError(f"{type(self).__name__} keeps no shared budget (shares_budget is False)")

    def budget_use(self, name: str, now: float, window: float) -> BudgetUse:
        """What ``take_weight`` counts in budget ``name``'s window at ``now``, and its block, read without
        queueing behind its takers: a figure for pacing work (the scheduler's polls), stale by the time it
        is used, so never a promise that a take will fit."""
        raise NotImplementedError(f"{type(self).__name__} keeps no shared budget (shares_budget is False)")

    def block_weight(self, name: str, until: float) -> None:
        """The partner refused a call for its budget (HTTP 429): every taker of ``name`` waits until
        ``until``. A block only ever grows; an earlier ``until`` than the stored one changes nothing."""
        raise NotImplementedError(f"{type(self).__name__} keeps no shared budget (shares_budget is False)")

    # --- gauges --------------------------------------------------------------------------------
    @abstractmethod
    def outbox_backlog(self) -> int: ...

    @abstractmethod
    def outbox_oldest_created_at(self) -> float | None:
        """created_at of the oldest unpublished event (None when drained): a stuck relay shows as age."""

    @abstractmethod
    def count_by_status(self) -> dict[tuple[str, str], int]:
        """{(provider, status): count} over all orders, plus untrackable counted under status
        'untrackable' (in addition to its real status)."""
