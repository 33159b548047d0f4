"""The events order-worker publishes on its events exchange, as consumers read them.

Every change of an order's state is one event; its ``event_id`` is the same whoever observed the change,
so consumers deduplicate on it (delivery is at least once). Events evolve additively within a
``schema_version``: new optional fields may appear, and a consumer ignores what it does not know (this
model does, it is not strict). Removing, renaming or retyping a field, or adding a value to ``type``,
``status`` or ``source``, comes with a new ``schema_version``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_serializer

SCHEMA_VERSION = 1
"""The version of the event body this package reads and the service writes."""


class Status(StrEnum):
    """Canonical order statuses, one vocabulary whatever the partner; the partner's own raw value travels
    in ``provider_status``."""

    SUBMITTING = "submitting"
    AWAITING_DEPOSIT = "awaiting_deposit"
    CONFIRMING = "confirming"
    PROCESSING = "processing"
    ACTION_REQUIRED = "action_required"
    COMPLETED = "completed"
    EXPIRED = "expired"
    REFUNDED = "refunded"
    FAILED = "failed"
    IN_DOUBT = "in_doubt"


class EventType(StrEnum):
    CREATED = "created"
    STATUS_CHANGED = "status_changed"
    REJECTED = "rejected"
    FAILED = "failed"
    IN_DOUBT = "in_doubt"
    UNTRACKABLE = "untrackable"
    ACTION_ACCEPTED = "action_accepted"


class Source(StrEnum):
    CREATE = "create"
    POLL = "poll"
    WEBHOOK = "webhook"
    RECONCILE = "reconcile"
    OPERATOR = "operator"


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class EventError(_Part):
    code: str
    reason: str


class EventAction(_Part):
    """The operator action an event answers (``action_accepted``, or ``rejected`` for a refused one)."""

    action_id: str
    choice: str


class OrderEvent(_Part):
    """Body of every message on the events exchange. Never carries a token or a secret."""

    schema_version: int = Field(SCHEMA_VERSION, ge=1)
    event_id: str
    """One id per transition of an order, whoever observed it: the key to deduplicate on."""
    type: EventType
    seq: int | None = Field(None, ge=1)
    """The order's transition number (1 for its first event); None on a ``rejected`` event, which
    answers a command and is no transition. Order an order's events by it."""
    occurred_at: AwareDatetime
    """When the service observed the change (RFC 3339, UTC, milliseconds)."""
    command_id: str | None
    provider: str | None
    order_id: str | None = None
    status: Status | None = None
    previous_status: Status | None = None
    provider_status: str | None = None
    source: Source
    order: dict[str, Any] | None = None
    """The partner's order as last seen, normalised by its partner (amounts as decimal strings); the
    AsyncAPI document gives each built-in partner's shape."""
    error: EventError | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    action: EventAction | None = None

    @field_serializer("occurred_at")
    def _rfc3339(self, value: datetime) -> str:
        return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    @property
    def routing_key(self) -> str:
        return f"order.{self.provider or 'unknown'}.{self.type.value}"

    def to_json(self) -> bytes:
        """``model_dump_json().encode()``, taken as bytes from the serializer without the str round trip."""
        return self.__pydantic_serializer__.to_json(self)
