"""The wire contracts: commands producers send and events order-worker publishes.

Validation is strict on purpose: a command that is wrong is rejected once with a reason the producer can
read, instead of reaching a partner that would refuse it (or, worse, accept something unintended). The
JSON Schemas in ``worker/schemas/`` are generated from these models (``order-worker schemas``).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from worker.status import Status

COMMAND_ID_PATTERN = r"^[A-Za-z0-9._:-]{8,128}$"
CommandId = Annotated[str, StringConstraints(pattern=COMMAND_ID_PATTERN)]
MAX_COMMAND_BYTES = 16 * 1024
_ADDRESS = re.compile(r"^[A-Za-z0-9:._-]{10,200}$")
_ASSET = re.compile(r"^[a-z0-9_]{2,32}$")
_AMOUNT = re.compile(r"^\d{1,20}(\.\d{1,18})?$")
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class Provider(StrEnum):
    ZEROTRACE = "0trace"
    ITRX = "itrx"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


def _positive_decimal(value: str) -> str:
    if not _AMOUNT.match(value):
        raise ValueError("amount must be a plain decimal string such as '0.01' (no sign, no exponent)")
    try:
        if Decimal(value) <= 0:
            raise ValueError("amount must be greater than zero")
    except InvalidOperation:
        raise ValueError("amount is not a decimal number") from None
    return value


def _address(value: str) -> str:
    if not _ADDRESS.match(value):
        raise ValueError("address must be 10..200 characters of letters, digits and ':._-'")
    return value


class ZeroTraceParams(_Strict):
    """Fields of 0trace ``POST /api/v1/create``, named as the partner names them."""

    type: Literal["float"] = "float"
    fromCcy: Annotated[str, StringConstraints(pattern=_ASSET.pattern)]
    toCcy: Annotated[str, StringConstraints(pattern=_ASSET.pattern)]
    direction: Literal["from", "to"]
    amount: str
    toAddress: str
    refundAddress: str
    fromNetwork: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    toNetwork: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    tag: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    afftax: Annotated[int, Field(ge=0, le=2000, strict=True)] | None = None

    @field_validator("amount")
    @classmethod
    def _amount(cls, value: str) -> str:
        return _positive_decimal(value)

    @field_validator("toAddress", "refundAddress")
    @classmethod
    def _addresses(cls, value: str) -> str:
        return _address(value)

    def wire_body(self) -> dict[str, Any]:
        """The create body in the partner's field order, optional fields left out when unset."""
        return self.model_dump(exclude_none=True)


def is_tron_address(value: str) -> bool:
    """Base58Check with version byte 0x41: a typo in a TRON address fails the checksum, not the partner."""
    if len(value) != 34 or value[0] != "T":
        return False
    number = 0
    for char in value:
        index = _B58.find(char)
        if index < 0:
            return False
        number = number * 58 + index
    raw = number.to_bytes(25, "big")
    payload, checksum = raw[:21], raw[21:]
    return payload[0] == 0x41 and hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] == checksum


class ItrxParams(_Strict):
    """Fields of itrx ``POST /api/v1/frontend/order`` chosen by the producer (energy in units, not sun)."""

    energy_amount: Annotated[int, Field(ge=10_000, le=100_000_000, strict=True)]
    period: Literal["1H", "1D", "3D", "30D"]
    receive_address: str
    active: Annotated[int, Field(ge=0, le=1_000_000, strict=True)] | None = None
    exclusive: Literal[0, 1] | None = None

    @field_validator("receive_address")
    @classmethod
    def _tron(cls, value: str) -> str:
        if not is_tron_address(value):
            raise ValueError("receive_address is not a valid TRON base58check address")
        return value


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
    provider: Provider
    params: dict[str, Any]
    ref_code: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{4,32}$")] | None = None
    metadata: Metadata = Field(default_factory=dict)

    def zerotrace_params(self) -> ZeroTraceParams:
        return ZeroTraceParams.model_validate(self.params)

    def itrx_params(self) -> ItrxParams:
        return ItrxParams.model_validate(self.params)

    def validated(self) -> CreateOrderCommand:
        """Check ``params`` against the provider's model; raises ``ValidationError`` with field paths."""
        if self.provider is Provider.ZEROTRACE:
            self.zerotrace_params()
        else:
            if self.ref_code is not None:
                raise ValueError("ref_code is a 0trace feature; itrx orders cannot carry one")
            self.itrx_params()
        return self

    def fingerprint(self) -> str:
        """Identity of the request: the same command_id with another fingerprint is a different order."""
        canonical = _FINGERPRINT_JSON.encode(
            {"provider": self.provider.value, "params": self.params, "ref_code": self.ref_code}
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


class PollOrderCommand(_Strict):
    """kwargs of the ``poll_order`` actor (queue ``orders.poll``)."""

    command_id: CommandId


class EventType(StrEnum):
    CREATED = "created"
    STATUS_CHANGED = "status_changed"
    REJECTED = "rejected"
    FAILED = "failed"
    IN_DOUBT = "in_doubt"
    UNTRACKABLE = "untrackable"


class Source(StrEnum):
    CREATE = "create"
    POLL = "poll"
    WEBHOOK = "webhook"
    RECONCILE = "reconcile"


class EventError(_Strict):
    code: str
    reason: str


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
