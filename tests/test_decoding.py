"""Every body that reaches a queue decodes into a message: the command, or a rejection that says why."""

from __future__ import annotations

import json
from typing import Any

import dramatiq
import pytest
from dramatiq import Message
from dramatiq.broker import MessageProxy

from worker.broker import REJECT_ACTOR, CommandEncoder, build_broker, parse_envelope
from worker.producer import envelope
from worker.settings import Settings


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
    problem = parse_envelope(body)
    assert isinstance(problem, tuple) and problem[0] == code
    decoded = CommandEncoder().decode(body)
    assert decoded["actor_name"] == REJECT_ACTOR
    assert decoded["kwargs"]["code"] == code
    assert decoded["kwargs"]["body_bytes"] == len(body)
    # the same body always maps to the same message id, so a redelivery is recognised
    assert CommandEncoder().decode(body)["message_id"] == decoded["message_id"]


def test_positional_args_are_refused() -> None:
    raw = json.loads(envelope("orders.create", "create_order", {}))
    raw["args"] = ["x"]
    assert parse_envelope(json.dumps(raw).encode()) == (
        "bad_envelope",
        "commands take keyword arguments only ('args' must be empty)",
    )


def test_message_options_cannot_make_the_worker_send_messages() -> None:
    """Dramatiq's Callbacks and Pipelines would enqueue what a command's options name (``on_success``,
    ``pipe_target``): messages of the producer's choosing, sent with the worker's own rights."""
    previous_broker, previous_encoder = dramatiq.get_broker(), dramatiq.get_encoder()
    try:
        broker = build_broker(Settings())
        dramatiq.actor(lambda **_: None, actor_name="create_order", queue_name="orders.create", broker=broker)
        sent: list[Message[Any]] = []
        broker.enqueue = lambda message, **_: sent.append(message) or message  # type: ignore[method-assign]
        follow_up = json.loads(envelope("orders.create", "create_order", {"command_id": "order-0002"}))
        command = Message(
            queue_name="orders.create",
            actor_name="create_order",
            args=(),
            kwargs={"command_id": "order-0001"},
            options={"on_success": "create_order", "pipe_target": follow_up},
        )
        broker.emit_after("process_message", MessageProxy(command), result=None)
        assert sent == []
    finally:
        dramatiq.set_broker(previous_broker)
        dramatiq.set_encoder(previous_encoder)
