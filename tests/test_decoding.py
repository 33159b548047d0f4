"""Every body that reaches a queue decodes into a message: the command, or a rejection that says why."""

from __future__ import annotations

import json

import pytest

from worker.broker import REJECT_ACTOR, CommandEncoder, malformed_reason
from worker.producer import envelope


def test_well_formed_envelope_passes_through() -> None:
    body = envelope("orders.create", "create_order", {"command_id": "order-0001"})
    decoded = CommandEncoder().decode(body)
    assert decoded["actor_name"] == "create_order"
    assert decoded["kwargs"] == {"command_id": "order-0001"}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"\xff\xfe not utf8", "not_json"),
        (b"{not json", "not_json"),
        (b"[1,2]", "bad_envelope"),
        (json.dumps({"actor_name": "create_order"}).encode(), "bad_envelope"),
        (envelope("orders.create", "drop_tables", {}), "unknown_actor"),
        (envelope("orders.create", REJECT_ACTOR, {}), "unknown_actor"),
        (b"{" + b" " * 20000 + b"}", "oversized"),
    ],
)
def test_malformed_bodies_become_rejections(body: bytes, code: str) -> None:
    problem = malformed_reason(body)
    assert problem is not None and problem[0] == code
    decoded = CommandEncoder().decode(body)
    assert decoded["actor_name"] == REJECT_ACTOR
    assert decoded["kwargs"]["code"] == code
    assert decoded["kwargs"]["body_bytes"] == len(body)
    # the same body always maps to the same message id, so a redelivery is recognised
    assert CommandEncoder().decode(body)["message_id"] == decoded["message_id"]


def test_positional_args_are_refused() -> None:
    raw = json.loads(envelope("orders.create", "create_order", {}))
    raw["args"] = ["x"]
    assert malformed_reason(json.dumps(raw).encode()) == (
        "bad_envelope",
        "commands take keyword arguments only ('args' must be empty)",
    )
