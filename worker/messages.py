"""The wire contracts as the service uses them: the models come from ``order_worker_client`` (the
distribution producers and consumers install), the deterministic event ids and times are the service's.

The JSON Schemas in ``worker/schemas/`` and the AsyncAPI document are generated from these models
(``order-worker schemas``).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

from order_worker_client.commands import (
    ACCOUNT_PATTERN,
    COMMAND_ID_PATTERN,
    DEFAULT_ACCOUNT,
    MAX_COMMAND_BYTES,
    PROVIDER_PATTERN,
    CommandId,
    CreateOrderCommand,
    Metadata,
    PollOrderCommand,
    ResolveOrderCommand,
)
from order_worker_client.events import EventAction, EventError, EventType, OrderEvent, Source

__all__ = [
    "ACCOUNT_PATTERN",
    "COMMAND_ID_PATTERN",
    "DEFAULT_ACCOUNT",
    "MAX_COMMAND_BYTES",
    "PROVIDER_PATTERN",
    "CommandId",
    "CreateOrderCommand",
    "EventAction",
    "EventError",
    "EventType",
    "Metadata",
    "OrderEvent",
    "PollOrderCommand",
    "ResolveOrderCommand",
    "Source",
    "iso_from_epoch",
    "rejection_event_id",
    "transition_event_id",
    "utc_moment",
]

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


def iso_from_epoch(seconds: float) -> str:
    """RFC 3339 in UTC with milliseconds, the one way the service writes a time into a message."""
    return utc_moment(seconds).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_moment(seconds: float) -> datetime:
    """An event's ``occurred_at``: the epoch seconds the ledger works in, as an aware UTC time."""
    return datetime.fromtimestamp(seconds, UTC)
