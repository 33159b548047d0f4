"""Recording that a command was refused, for every path that refuses one.

A refusal is a durable answer to the producer (a ``rejected`` event) and a dead-letter record for the
operator. Both the pipeline (an invalid command) and the dead-letter rescuer (a poison message) refuse
commands; they write through this one function so that the promise about what is stored holds on both:
whatever the producer sent is untrusted and may be anything, so only a command id (cut to the ledger's 128
characters), a known provider and, where asked, bounded metadata are copied from it, never the body.

It lives beside the ledger, not in ``worker.bus``, because the pipeline calls it and must stay free of
Dramatiq and pika.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker import metrics
from worker.ledger.base import Ledger, Rejection
from worker.messages import EventAction, EventError, OrderEvent, Source
from worker.partners import registry


def safe_metadata(metadata: object) -> dict[str, str]:
    """At most 16 entries of the producer's metadata, keys and values as bounded strings."""
    if not isinstance(metadata, dict):
        return {}
    return {str(k)[:64]: str(v)[:256] for k, v in list(metadata.items())[:16]}


def field_names(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The detail an invalid command leaves for the operator: the names of its fields, not their values."""
    return {"fields": sorted(str(k)[:64] for k in kwargs)[:32]}


def record_rejection(
    ledger: Ledger,
    key: str,
    kwargs: Mapping[str, Any],
    code: str,
    reason: str,
    detail: dict[str, Any],
    now: float,
    *,
    with_metadata: bool = True,
    source: Source = Source.CREATE,
    action: EventAction | None = None,
    provider: str | None = None,
) -> list[OrderEvent]:
    """Writes the dead-letter record and the ``rejected`` event; returns the events written, none when
    ``key`` was refused before (a redelivery).

    ``kwargs`` is the refused command's arguments as received; ``detail`` what the operator needs to find
    the refused message (never its body). ``with_metadata=False`` keeps the producer's metadata out of the
    event, for a body nothing was learnt from but that it crashed the worker. ``provider`` names the partner
    when the worker knows it but the command does not carry it (an action names only its order)."""
    command_id = kwargs.get("command_id") if isinstance(kwargs.get("command_id"), str) else None
    # A list, not a set: a refused value may be unhashable.
    if provider is None:
        provider = kwargs.get("provider") if kwargs.get("provider") in registry.names() else None
    rejection = Rejection(
        key=key,
        command_id=command_id[:128] if command_id else None,
        provider=provider,
        error=EventError(code=code, reason=reason),
        metadata=safe_metadata(kwargs.get("metadata")) if with_metadata else {},
        detail=detail,
        source=source,
        action=action,
    )
    events = ledger.record_rejection(rejection, now)
    if events:
        metrics.REJECTIONS.labels(code).inc()
        metrics.DEAD_LETTERS.labels(code).inc()
    return events
