"""The order state machine as pure functions: what each step does to an :class:`OrderRecord`.

Each rule takes the row as read under the write lock and returns what to write back: ``None`` when the
rule does not apply (nothing is written), otherwise the new row and, for a transition, the event type it
is. :func:`sequenced` then numbers the transition and builds its event. No rule touches a database: the
SQL layer (:mod:`worker.ledger.orders`) reads, asks, writes, and nothing else. That is what makes both
engines decide alike, and what lets the ordering guards be tested on their own: an order never moves
backwards on an observation that is not provably newer, nothing leaves a terminal status, and the
partner's change time only ever grows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.ledger.base import ClaimOutcome, OrderRecord
from worker.ledger.rows import RECORD_FIELD_ORDER, new_record, replace
from worker.messages import (
    CreateOrderCommand,
    EventError,
    EventType,
    OrderEvent,
    Source,
    transition_event_id,
    utc_moment,
)
from worker.partners.base import PartnerOrder
from worker.status import TERMINAL, Status, progress

OPEN_CREATE = (Status.SUBMITTING.value, Status.IN_DOUBT.value)
"""The create has no outcome yet: only these statuses accept a create's result."""
PARKED = frozenset(TERMINAL | {Status.IN_DOUBT})
"""Orders the scheduler leaves alone: finished, or waiting for a human (in_doubt)."""


@dataclass(frozen=True, slots=True)
class Change:
    """The row to write and, when ``event_type`` is set, the transition it is (with the event's error)."""

    after: OrderRecord
    event_type: EventType | None = None
    error: EventError | None = None


def later(stored: float | None, observed: float | None) -> float | None:
    """The partner's change time to keep: never earlier than what is stored, whichever side is missing."""
    if stored is None:
        return observed
    if observed is None:
        return stored
    return max(stored, observed)


def settled(status: str, moment: float | None) -> float | None:
    """Terminal orders have neither a next action nor a deadline: the due and deadline indexes then hold
    only live work."""
    return None if status in TERMINAL else moment


# --- create path -----------------------------------------------------------------------------------------


def claimed(command: CreateOrderCommand, partner_ref: str, now: float) -> OrderRecord:
    """The row a first claim inserts: submitting, no attempt yet, due at once (the scheduler drives it if
    the claimer dies before its first attempt)."""
    values: dict[str, Any] = dict.fromkeys(RECORD_FIELD_ORDER)  # everything else starts NULL
    values.update(
        command_id=command.command_id,
        provider=command.provider,
        fingerprint=command.fingerprint(),
        command=command.model_dump(mode="json"),
        partner_ref=partner_ref,
        status=Status.SUBMITTING.value,
        untrackable=False,
        attempts=0,
        attempt_open=False,
        next_action_at=now,
        event_seq=0,
        created_at=now,
        updated_at=now,
    )
    return new_record(values)


def claim_outcome(stored: OrderRecord, fingerprint: str) -> ClaimOutcome:
    """A command id seen before: the same request again, or another request reusing the id."""
    return ClaimOutcome.DUPLICATE if stored.fingerprint == fingerprint else ClaimOutcome.CONFLICT


def begin(before: OrderRecord, now: float, lease_seconds: float) -> OrderRecord | None:
    """The intent to call the partner, only on a submitting order nobody holds a live lease on (a lease
    that ends exactly now is free). The next action is the lease's end, so the scheduler re-drives the
    order if this worker dies mid-call."""
    if before.status != Status.SUBMITTING or (before.lease_until is not None and before.lease_until > now):
        return None
    return replace(
        before,
        attempts=before.attempts + 1,
        attempt_open=True,
        lease_until=now + lease_seconds,
        next_action_at=now + lease_seconds,
        updated_at=now,
    )


def current(before: OrderRecord, attempt: int | None) -> bool:
    """Whether ``attempt`` is still the order's current attempt, so its caller may close it.

    The number is the row's ``attempts`` as the attempt began it. A worker paused past its lease (a GC
    pause, a stopped VM) may come back after another worker began a newer attempt: closing that one would
    clear a live lease, record a second answer or park an order another worker is settling. Attempt 0 is
    the work before any attempt (a create's precheck), current while no attempt has begun. An attempt the
    partner's own signal already settled is still current: the rule of the write finds nothing to do.
    ``None`` names no attempt (an operator's or a test's write) and is never fenced."""
    return attempt is None or before.attempts == attempt


def end_unsent(before: OrderRecord, next_action_at: float, error: EventError) -> OrderRecord | None:
    """Take back an attempt that provably never reached the partner. Only an open attempt on a submitting
    order: ending one twice would undercount attempts."""
    if before.status != Status.SUBMITTING or not before.attempt_open:
        return None
    return replace(
        before,
        attempts=max(before.attempts - 1, 0),
        attempt_open=False,
        lease_until=None,
        last_error=error,
        next_action_at=float(next_action_at),
    )


def retry(before: OrderRecord, next_action_at: float, error: EventError) -> OrderRecord | None:
    """Close the attempt and leave the order due at ``next_action_at``; only while still submitting."""
    if before.status != Status.SUBMITTING:
        return None
    return replace(
        before, attempt_open=False, lease_until=None, last_error=error, next_action_at=float(next_action_at)
    )


def created(
    before: OrderRecord,
    result: PartnerOrder,
    sealed_token: bytes | None,
    token_key_id: str | None,
    untrackable: bool,
    next_action_at: float | None,
    now: float,
) -> Change | None:
    """The partner created the order; applies only while the create is open (a redelivered create after
    completion must not rewind anything)."""
    if before.status not in OPEN_CREATE:
        return None
    # A raw status this version does not know still means the order exists; awaiting_deposit is the
    # earliest state after creation, so any later observation can still move it forward.
    status = (result.status or Status.AWAITING_DEPOSIT).value
    after = _found(
        before,
        result,
        status,
        next_action_at,
        now,
        sealed_token=sealed_token,
        token_key_id=token_key_id,
        untrackable=untrackable,
    )
    return Change(after, EventType.UNTRACKABLE if untrackable else EventType.CREATED)


def _found(
    before: OrderRecord,
    order: PartnerOrder,
    status: str,
    next_action_at: float | None,
    now: float,
    **extra: Any,
) -> OrderRecord:
    """The partner order is known: its snapshot becomes ours and the create's attempt is over."""
    return replace(
        before,
        status=status,
        provider_status=order.provider_status,
        order_id=order.order_id,
        order=order.order,
        attempt_open=False,
        lease_until=None,
        next_action_at=settled(status, next_action_at),
        deadline_at=settled(status, order.deadline),
        partner_updated_at=later(before.partner_updated_at, order.updated_at),
        updated_at=now,
        **extra,
    )


def failed(before: OrderRecord, error: EventError, now: float) -> Change | None:
    """The create failed for good; only while it is open."""
    if before.status not in OPEN_CREATE:
        return None
    return fail(before, error, now)


def fail(before: OrderRecord, error: EventError, now: float) -> Change:
    """Whatever the status, the order ends failed with ``error`` (callers check it may)."""
    return _closed(before, Status.FAILED, EventType.FAILED, error, now)


def in_doubt(before: OrderRecord, error: EventError, now: float) -> Change | None:
    """The create may or may not exist at the partner: park it for a human (nothing automatic may re-send
    it, hence no next action). Only from submitting."""
    if before.status != Status.SUBMITTING:
        return None
    return _closed(before, Status.IN_DOUBT, EventType.IN_DOUBT, error, now)


def _closed(
    before: OrderRecord, status: Status, event_type: EventType, error: EventError, now: float
) -> Change:
    """The create ends without a partner order: no attempt, no lease, nothing due, the error kept."""
    after = replace(
        before,
        status=status.value,
        attempt_open=False,
        lease_until=None,
        next_action_at=None,
        deadline_at=None,
        last_error=error,
        updated_at=now,
    )
    return Change(after, event_type, error)


# --- tracking --------------------------------------------------------------------------------------------


def observed(
    before: OrderRecord,
    observation: PartnerOrder,
    now: float,
    next_action_at: float | None,
    push: bool,
) -> Change | None:
    """What an observation does (the rules of ``Ledger.apply_observation``, in order). None for a terminal
    order; otherwise at least the cadence and the push clock are written, with an event only for a
    transition."""
    if before.status in TERMINAL:
        return None
    kept = replace(
        before,
        next_action_at=next_action_at,
        last_push_at=now if push else before.last_push_at,
        updated_at=now,
    )
    seen_at, stored_at = observation.updated_at, before.partner_updated_at
    if seen_at is not None and stored_at is not None and seen_at < stored_at:
        return Change(kept)  # older than what we hold: a late push or a stale poll
    refreshed = replace(
        kept,
        provider_status=observation.provider_status,
        order=observation.order,
        order_id=before.order_id or observation.order_id,
        partner_updated_at=later(stored_at, seen_at),
        deadline_at=observation.deadline,
    )
    new_status = observation.status
    if new_status is None or new_status == before.status:
        return Change(refreshed)
    # Not provably newer (same partner time, or a partner that reports none): only progress wins, so a
    # late observation never moves an order backwards.
    provably_newer = seen_at is not None and (stored_at is None or seen_at > stored_at)
    if not provably_newer and progress(new_status) < progress(before.status):
        return Change(kept)
    after = replace(
        refreshed,
        status=new_status.value,
        next_action_at=settled(new_status, next_action_at),
        deadline_at=settled(new_status, observation.deadline),
    )
    if before.status in OPEN_CREATE:
        # The partner's own signal settles the create (an itrx callback naming our out_trade_no).
        after = replace(after, order_id=observation.order_id, attempt_open=False, lease_until=None)
    return Change(after, EventType.STATUS_CHANGED)


def require_known_status(observation: PartnerOrder | None) -> None:
    """An operator resolves an order to a status this version knows, or abandons it (no observation)."""
    if observation is not None and observation.status is None:
        raise ValueError("the observation has no canonical status; resolve with a known partner status")


def resolved(before: OrderRecord, observation: PartnerOrder | None, operator_note: str, now: float) -> Change:
    """An operator's decision on an in_doubt order: the partner order that was found, or (without one)
    abandonment as failed with code ``abandoned``. Raises ValueError for any other status."""
    require_known_status(observation)
    if before.status != Status.IN_DOUBT:
        raise ValueError(f"order {before.command_id!r} is {before.status}, not in_doubt")
    if observation is None:
        return fail(before, EventError(code="abandoned", reason=operator_note), now)
    assert observation.status is not None
    # Poll at once: the order has been untracked for as long as it was in doubt.
    after = _found(before, observation, observation.status.value, now, now)
    return Change(after, EventType.STATUS_CHANGED)


def sequenced(
    before: OrderRecord, change: Change, source: Source, now: float
) -> tuple[OrderRecord, OrderEvent]:
    """The transition's row and its one event. The sequence number follows the row read under the lock,
    so whoever observes the n-th transition (poll, webhook, create) derives the same event id."""
    event_type = change.event_type
    if event_type is None:
        raise ValueError("a change without an event type is not a transition")
    seq = before.event_seq + 1
    after = replace(change.after, event_seq=seq)
    event = OrderEvent(
        event_id=transition_event_id(after.command_id, seq, event_type, after.status),
        type=event_type,
        seq=seq,
        occurred_at=utc_moment(now),
        command_id=after.command_id,
        provider=after.provider,
        order_id=after.order_id,
        status=Status(after.status),
        previous_status=Status(before.status),
        provider_status=after.provider_status,
        source=source,
        order=after.order,
        error=change.error,
        metadata=after.metadata,
    )
    return after, event
