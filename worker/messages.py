"""The wire contracts: commands producers send and events order-worker publishes.

Validation is strict on purpose: a command that is wrong is rejected once with a reason the producer can
read, instead of reaching a partner that would refuse it (or, worse, accept something unintended). The
params of a create belong to its partner (``worker.partners.<partner>.params``) and are checked there. The
JSON Schemas in ``worker/schemas/`` are generated from these models (``order-worker schemas``).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from worker.status import Status

COMMAND_ID_PATTERN = r"^[A-Za-z0-9._:-]{8,128}$"
CommandId = Annotated[str, StringConstraints(pattern=COMMAND_ID_PATTERN)]
MAX_COMMAND_BYTES = 16 * 1024
PROVIDER_PATTERN = r"^[A-Za-z0-9_.-]{1,32}$"
ACCOUNT_PATTERN = r"^[a-z][a-z0-9_]{0,23}$"
"""An account's name: it becomes part of variable names, budget names and metric labels."""
DEFAULT_ACCOUNT = "default"
"""The account of a partner's own settings group, used by a create that names none."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


Metadata = Annotated[
    dict[
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")],
        Annotated[str, Field(max_length=256)],
    ],
    Field(max_length=16),
]


_FINGERPRINT_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
"""``json.dumps(value, sort_keys=True, separators=(",", ":"))`` without an encoder per call."""


class CreateOrderCommand(_Strict):
    """kwargs of the ``create_order`` actor (queue ``orders.create``)."""

    command_id: CommandId
    provider: Annotated[str, StringConstraints(pattern=PROVIDER_PATTERN)]
    """A provider id of an installed partner (``0trace``, ``itrx``, ...); checked against the registry
    when the command is handled, since which partners exist is a deployment's choice."""
    params: dict[str, Any]
    ref_code: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{4,32}$")] | None = None
    metadata: Metadata = Field(default_factory=dict)
    account: Annotated[str, StringConstraints(pattern=ACCOUNT_PATTERN)] | None = None
    """Which of the provider's accounts places the order (its credentials, budget and webhook secrets);
    None or ``default``: the partner's own settings group. Checked against the deployment's settings when
    the command is handled, like the provider."""

    def fingerprint(self) -> str:
        """Identity of the request: the same command_id with another fingerprint is a different order.

        The account joins the identity only when it is not the default one, so fingerprints recorded
        before accounts existed still match their commands sent again."""
        identity: dict[str, Any] = {
            "provider": self.provider,
            "params": self.params,
            "ref_code": self.ref_code,
        }
        if self.account not in (None, DEFAULT_ACCOUNT):
            identity["account"] = self.account
        canonical = _FINGERPRINT_JSON.encode(identity)
        return hashlib.sha256(canonical.encode()).hexdigest()


class PollOrderCommand(_Strict):
    """kwargs of the ``poll_order`` actor (queue ``orders.poll``)."""

    command_id: CommandId


class ResolveOrderCommand(_Strict):
    """kwargs of the ``resolve_order`` actor (queue ``orders.actions``): an operator's answer to an order
    the partner holds for a decision (``action_required``, 0trace's EMERGENCY).

    ``action_id`` is the action's own identity, apart from the order's ``command_id``: the same action
    sent again is acted on once, and a second decision on one order is a new action."""

    action_id: CommandId
    command_id: CommandId
    """The create command of the order to resolve."""
    choice: Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z_]{0,31}$")]
    """A choice the order's partner accepts (0trace: ``EXCHANGE``); checked against the partner when the
    command is handled."""
    options: Annotated[
        dict[
            Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,64}$")],
            Annotated[str, Field(max_length=256)],
        ],
        Field(max_length=8),
    ] = Field(default_factory=dict)
    """Extra fields of the choice, for partners that take some; a partner refuses any it does not."""
    note: Annotated[str, Field(max_length=256)] | None = None
    """Who decided and why, kept with the action for the audit trail."""

    def fingerprint(self) -> str:
        """Identity of the decision: the same action_id with another fingerprint is a different action."""
        canonical = _FINGERPRINT_JSON.encode(
            {"command_id": self.command_id, "choice": self.choice, "options": self.options}
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


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


class EventError(_Strict):
    code: str
    reason: str


class EventAction(_Strict):
    """The operator action an event answers (``action_accepted``, or ``rejected`` for a refused one)."""

    action_id: str
    choice: str


class OrderEvent(_Strict):
    """Body of every message on the ``orders.events`` exchange. Never carries a token or a secret."""

    event_id: str
    type: EventType
    occurred_at: str
    command_id: str | None
    provider: str | None
    order_id: str | None = None
    status: Status | None = None
    previous_status: Status | None = None
    provider_status: str | None = None
    source: Source
    order: dict[str, Any] | None = None
    error: EventError | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    action: EventAction | None = None

    @property
    def routing_key(self) -> str:
        return f"order.{self.provider or 'unknown'}.{self.type.value}"

    def to_json(self) -> bytes:
        """``model_dump_json().encode()``, taken as bytes from the serializer without the str round trip."""
        return self.__pydantic_serializer__.to_json(self)


_EVENT_NAMESPACE = uuid.UUID("6f9d5a52-2d6b-4bd3-9a8e-0c8e1f4f7b21")
_NAMESPACE_BYTES = _EVENT_NAMESPACE.bytes
# RFC 4122 version 5 and variant bits, as uuid.UUID(bytes=..., version=5) sets them.
_UUID5_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID5_SET = (0x5000 << 64) | (0x8000 << 48)


def _uuid5(name: str) -> str:
    """``str(uuid.uuid5(_EVENT_NAMESPACE, name))`` without building a UUID object: one id per event, on
    every transition, and the object costs more than the hash."""
    digest = hashlib.sha1(_NAMESPACE_BYTES + name.encode(), usedforsecurity=False).digest()
    text = "%032x" % (int.from_bytes(digest[:16]) & _UUID5_CLEAR | _UUID5_SET)
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def transition_event_id(command_id: str, sequence: int, event_type: EventType, status: str | None) -> str:
    """The one id of the n-th transition of an order, whoever observed it (create, poll or webhook)."""
    return _uuid5(f"{command_id}/{sequence}/{event_type.value}/{status}")


def rejection_event_id(rejection_key: str) -> str:
    """Rejections are not transitions; they are keyed by the message (or body) that was refused."""
    return _uuid5(f"rejected/{rejection_key}")


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_from_epoch(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
