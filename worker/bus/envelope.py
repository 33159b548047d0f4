"""The command envelope: what a producer must send, and what the worker makes of anything else.

Commands are Dramatiq messages (README, "Commands"), so this is Dramatiq's message format, checked here
without Dramatiq: every body is parsed once, and a body the worker cannot use becomes a rejection naming
the reason instead of a silent dead letter. The checks are plain functions of the bytes so that the
decoder (``worker.bus.broker``), the producers and the tests agree on one definition.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from typing import Any

from order_worker_client.commands import ENVELOPE_FIELDS, envelope

from worker import tracing
from worker.messages import COMMAND_ID_PATTERN, MAX_COMMAND_BYTES

REJECT_ACTOR = "reject_malformed"
RESOLVE_ACTOR = "resolve_order"
KNOWN_ACTORS = frozenset({"create_order", "poll_order", RESOLVE_ACTOR, REJECT_ACTOR})
MAX_ETA_AHEAD_SECONDS = 3600
"""A retried command's delay is at most 15 minutes (``max_backoff``); the rest is room for clock skew."""
RETRY_OPTIONS = {"max_retries": (0, 20), "min_backoff": (0, 900_000), "max_backoff": (0, 900_000)}
"""The retry settings a command may carry (README, "Commands"), with the range of each."""
_COMMAND_ID = re.compile(COMMAND_ID_PATTERN)

__all__ = ["envelope"]  # the message format lives in the client package; the checks below are here


def parse_envelope(data: bytes) -> dict[str, Any] | tuple[str, str]:
    """The envelope's fields, or (reason code, explanation) when it is not usable: one parse per body."""
    if len(data) > MAX_COMMAND_BYTES:
        return "oversized", f"message body is {len(data)} bytes; the limit is {MAX_COMMAND_BYTES}"
    try:
        fields = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        return "not_json", "message body is not UTF-8 JSON"
    except RecursionError:  # else Dramatiq would dead-letter it with no reason given
        return "not_json", "message body nests JSON too deeply"
    if not isinstance(fields, dict):
        return "bad_envelope", "message body must be a JSON object (the Dramatiq envelope)"
    missing = [name for name in ENVELOPE_FIELDS if name not in fields]
    if missing:
        return "bad_envelope", f"envelope lacks {', '.join(missing)}"
    if not isinstance(fields["kwargs"], dict) or not isinstance(fields["args"], list):
        return "bad_envelope", "envelope 'kwargs' must be an object and 'args' a list"
    if not isinstance(fields["options"], dict) or not isinstance(fields["message_id"], str):
        return "bad_envelope", "envelope 'options' must be an object and 'message_id' a string"
    if fields["actor_name"] not in KNOWN_ACTORS or fields["actor_name"] == REJECT_ACTOR:
        return "unknown_actor", "actor_name must be create_order, poll_order or resolve_order"
    if fields["args"]:
        return "bad_envelope", "commands take keyword arguments only ('args' must be empty)"
    if fields["options"]:
        options = honoured_options(fields["options"], time.time())
        if isinstance(options, str):
            return "bad_envelope", options
        fields["options"] = options
    return fields


def honoured_options(options: dict[str, Any], now: float) -> dict[str, Any] | str:
    """The envelope options the worker acts on, or why one of them is refused.

    Dramatiq reads its policy from each message's options before the actor's own, so without this filter a
    producer would choose how the worker behaves: ``throws`` naming no exception class makes Dramatiq's
    error handling raise, which acks the command unprocessed and ends the worker thread; ``time_limit``
    interrupts a partner call between its answer and the ledger commit; ``max_age`` dead-letters a command
    without a rejection event. Kept: the documented retry settings, bounded, and what Dramatiq reads back
    from the messages it re-enqueues itself (``retries``, and ``eta`` for the delay), and the W3C
    ``trace_context`` the producer's trace continues from, when it is well-formed (a malformed one is
    dropped, not refused: tracing never costs an order). Any other option is dropped, as the README says."""
    kept: dict[str, Any] = {}
    trace_context = tracing.checked(options.get("trace_context"))
    if trace_context is not None:
        kept["trace_context"] = trace_context
    for name, (low, high) in RETRY_OPTIONS.items():
        if name in options:
            value = options[name]
            if type(value) is not int or not low <= value <= high:
                return f"options.{name} must be an integer from {low} to {high}"
            kept[name] = value
    retries = options.get("retries")
    if type(retries) is int and retries >= 0:
        kept["retries"] = retries
    eta = options.get("eta")
    if isinstance(eta, (int, float)) and not isinstance(eta, bool):
        if eta > (now + MAX_ETA_AHEAD_SECONDS) * 1000:
            return f"options.eta is more than {MAX_ETA_AHEAD_SECONDS} s ahead; no command is held that long"
        kept["eta"] = eta
    return kept


def loose_fields(data: bytes) -> dict[str, Any]:
    """Whatever top-level object a body holds, or nothing: for reading what a refused or dead-lettered
    body names, where a body that is not an object simply names nothing."""
    try:
        fields = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):  # nesting deeper than the parser goes
        return {}
    return fields if isinstance(fields, dict) else {}


def named_command(data: bytes) -> str | None:
    """The well-formed command_id a refused envelope names, if any: without it the producer could not tell
    which of its commands a rejection answers (an option out of range, positional args)."""
    kwargs = loose_fields(data).get("kwargs", {})
    command_id = kwargs.get("command_id") if isinstance(kwargs, dict) else None
    return command_id if isinstance(command_id, str) and _COMMAND_ID.fullmatch(command_id) else None


def decode_command(data: bytes) -> dict[str, Any]:
    """Every body as *some* message: the command it holds, or a call of the ``reject_malformed`` actor
    saying why it is unusable (the body's digest and size, never the body itself).

    The rejection's ``message_id`` derives from the body, so a redelivered bad body is the same rejection;
    its ``queue_name`` is left empty for the consumer to fill in with the queue the body arrived on."""
    parsed = parse_envelope(data)
    if not isinstance(parsed, tuple):
        return parsed
    code, explanation = parsed
    digest = hashlib.sha256(data).hexdigest()
    rejection = {"code": code, "reason": explanation, "body_sha256": digest, "body_bytes": len(data)}
    command_id = None if code in ("oversized", "not_json") else named_command(data)
    if command_id is not None:
        rejection["command_id"] = command_id
    return {
        "queue_name": "",
        "actor_name": REJECT_ACTOR,
        "args": [],
        "kwargs": rejection,
        "options": {},
        "message_id": str(uuid.uuid5(uuid.NAMESPACE_OID, digest)),
        "message_timestamp": int(time.time() * 1000),
    }
