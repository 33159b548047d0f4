"""The records the ledger speaks in: orders, attempts, held pushes, outbox rows, queries and operator
actions, as plain values. :mod:`worker.ledger.base` declares what the ledger does with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from worker.messages import EventAction, EventError, OrderEvent, Source
from worker.partners.base import PartnerOrder


@dataclass(frozen=True)
class Rejection:
    """A refused command, as the dead-letter record and its ``rejected`` event keep it."""

    key: str
    """Identifies the refusal, so a redelivery of the same bad message is recognised (message id, body
    digest)."""
    command_id: str | None
    provider: str | None
    error: EventError
    metadata: dict[str, str]
    detail: dict[str, Any]
    """What an operator needs to find the message (queue, actor, message id, body size and sha256), never
    the body itself."""
    source: Source = Source.CREATE
    """The command kind that was refused (``poll`` for a bad poll_order message)."""
    action: EventAction | None = None
    """The operator action refused, when the refused command was one."""


@dataclass(frozen=True)
class OrderRecord:
    """One row of the ``orders`` table (one per command_id)."""

    command_id: str
    provider: str
    fingerprint: str
    command: dict[str, Any]
    """The validated create command as JSON (``CreateOrderCommand.model_dump(mode="json")``)."""
    partner_ref: str
    """The deterministic Idempotency-Key (0trace) / out_trade_no (itrx) derived from command_id."""
    status: str
    provider_status: str | None
    order_id: str | None
    order: dict[str, Any] | None
    sealed_token: bytes | None = field(repr=False)
    token_key_id: str | None
    untrackable: bool
    attempts: int
    attempt_open: bool
    """A create attempt began (intent committed) and no outcome was recorded for it."""
    lease_until: float | None
    next_action_at: float | None
    partner_updated_at: float | None
    last_push_at: float | None
    deadline_at: float | None
    """The partner's deadline for the order while one applies (``PartnerOrder.deadline``)."""
    last_error: EventError | None
    event_seq: int
    created_at: float
    updated_at: float

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self.command.get("metadata") or {})

    @property
    def account(self) -> str | None:
        """The partner account the create named (None: the default one). Read from the stored command,
        which never changes, so the order needs no column of its own for it."""
        account = self.command.get("account")
        return account if isinstance(account, str) else None


class UnknownOrderError(LookupError):
    """A write named a command_id the ledger has never claimed: a caller bug, never a state to paper over."""


class ClaimOutcome(StrEnum):
    NEW = "new"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    record: OrderRecord
    """The stored row: the new one, the existing one for DUPLICATE, the other request's one for CONFLICT."""


@dataclass(frozen=True)
class Attempt:
    record: OrderRecord
    """The row after the attempt began (attempts already incremented, lease taken, attempt_open True)."""
    previous_unresolved: bool
    """An earlier attempt began and never recorded an outcome (the worker died mid-call): the request may
    have reached the partner. A non-idempotent partner must not be called again."""


@dataclass(frozen=True)
class BudgetUse:
    """A shared budget's state at one moment (``Ledger.budget_use``)."""

    used: int
    """Weight counted in the window."""
    first: int
    """Of it, weight charged by first takes (creates, operator actions)."""
    blocked_until: float
    """Until when a 429 blocks the budget (a past moment: not blocked)."""
    oldest_at: float | None = None
    """When the oldest charge still counted was made, to the second (None: the window is empty)."""


class DueKind(StrEnum):
    """Which of a partner's due orders to take: the scheduler paces polls to the partner's budget and
    hands out creates to re-drive regardless, so it asks for them apart."""

    ANY = "any"
    """Every due order, oldest due first (a partner whose calls cost no budget)."""
    CREATES = "creates"
    """Creates to re-drive (submitting orders), oldest due first."""
    POLLS = "polls"
    """Polls, oldest due first: an order polled goes to the back, so the least recently seen is next."""
    NEAR_DEADLINE = "near_deadline"
    """Polls of orders whose deadline comes before ``deadline_before``, nearest deadline first."""


@dataclass(frozen=True)
class DueOrder:
    command_id: str
    provider: str
    status: str
    command: dict[str, Any]


@dataclass(frozen=True)
class HeldPush:
    """A verified push for a partner order the ledger does not know yet, kept until that order appears."""

    dedupe_key: str
    provider: str
    order_id: str
    signers: tuple[str, ...]
    """The accounts whose webhook secret verified the push: it moves only an order one of them placed."""
    observation: PartnerOrder


class HoldOutcome(StrEnum):
    HELD = "held"
    """Kept: applied when the order appears."""
    DUPLICATE = "duplicate"
    """Kept already (a redelivery of a held push): nothing more was kept."""
    FOUND = "found"
    """The order is known by now (its create committed meanwhile): nothing was kept, apply it as usual."""
    FULL = "full"
    """As many pushes as allowed are held already: nothing was kept, the partner must send it again."""


@dataclass(frozen=True)
class OutboxRow:
    event_id: str
    routing_key: str
    event_type: str
    body: bytes
    created_at: float
    trace_context: str | None = None
    """The W3C trace context the event was written in (``worker.tracing.to_text``), if any."""
    command_id: str | None = None  # the command the event answers: its message's correlation_id


@dataclass(frozen=True)
class OrderQuery:
    """Which orders an operator lists, oldest change first, one page at a time."""

    statuses: tuple[str, ...] = ()
    """Canonical statuses; ``untrackable`` selects orders the service can no longer read, whatever their
    status. Empty: every status."""
    provider: str | None = None
    changed_before: float | None = None
    """Only orders whose last change is older than this (unix seconds)."""
    after: tuple[float, str] | None = None
    """The page cursor: the (last change, command id) of the previous page's last order."""
    limit: int = 50


@dataclass(frozen=True)
class EventQuery:
    """Which stored events to send again, oldest first, one page at a time. Events stay in the ledger for
    the retention period (``ORDER_WORKER_RETENTION_SECONDS``) after they were published."""

    command_id: str | None = None
    since: float | None = None
    until: float | None = None
    after: tuple[float, str] | None = None
    """The page cursor: the (created at, event id) of the previous page's last event."""
    limit: int = 200


class ActionState(StrEnum):
    OPEN = "open"
    """The intent is committed and no outcome is recorded: the partner may or may not have the choice."""
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    MOOT = "moot"
    """The order left action_required while the outcome of a call was unknown: nothing is left to do."""


class ActionStart(StrEnum):
    BEGUN = "begun"
    """Intent committed (or an abandoned one taken over): the caller sends the choice now."""
    BUSY = "busy"
    """Another worker holds the action's live lease."""
    DONE = "done"
    """The action already has an outcome (a redelivery)."""
    CONFLICT = "conflict"
    """The action_id was already used for another decision."""
    NOT_ACTIONABLE = "not_actionable"
    """The order is not action_required: the action was recorded as rejected, with its event."""
    UNKNOWN_ORDER = "unknown_order"


@dataclass(frozen=True)
class ActionRecord:
    """One row of the ``order_actions`` table: an operator's decision on an order, and its outcome."""

    action_id: str
    command_id: str
    fingerprint: str
    choice: str
    options: dict[str, str]
    note: str | None
    state: str
    attempts: int
    lease_until: float | None
    last_error: EventError | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class ActionClaim:
    outcome: ActionStart
    action: ActionRecord | None = None
    order: OrderRecord | None = None
    previous_unresolved: bool = False
    """An earlier call of this action began and recorded no outcome: it may have reached the partner."""
    events: list[OrderEvent] = field(default_factory=list)
