"""Every body that reaches a queue decodes into a message: the command, or a rejection that says why."""

from __future__ import annotations

import json
import time
from typing import Any

import dramatiq
import pytest
from dramatiq import Message
from dramatiq.broker import MessageProxy
from dramatiq.encoder import MessageData

from worker.bus.broker import CommandEncoder, build_broker
from worker.bus.envelope import REJECT_ACTOR, envelope, loose_fields, named_command, parse_envelope
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
        (b"[" * 5000 + b"]" * 5000, "not_json"),
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


def _options_of(options: dict[str, Any]) -> MessageData | tuple[str, str]:
    return parse_envelope(
        envelope("orders.create", "create_order", {"command_id": "order-0001"}, options=options)
    )


def test_only_the_documented_retry_settings_and_dramatiqs_own_bookkeeping_survive_decoding() -> None:
    eta = int(time.time() * 1000) + 5_000
    decoded = _options_of(
        {
            "max_retries": 2,
            "min_backoff": 500,
            "max_backoff": 10_000,
            "retries": 1,
            "eta": eta,
            "traceback": "Traceback (most recent call last): ...",
            "throws": "ValueError",
            "time_limit": 1,
            "max_age": 1,
            "notify_shutdown": True,
            "on_retry_exhausted": "create_order",
            "broker_priority": 9,
        }
    )
    assert not isinstance(decoded, tuple)
    assert decoded["options"] == {
        "max_retries": 2,
        "min_backoff": 500,
        "max_backoff": 10_000,
        "retries": 1,
        "eta": eta,
    }


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"max_retries": "many"}, "options.max_retries must be an integer from 0 to 20"),
        ({"max_retries": True}, "options.max_retries must be an integer from 0 to 20"),
        ({"max_retries": 21}, "options.max_retries must be an integer from 0 to 20"),
        ({"max_backoff": 3_600_000}, "options.max_backoff must be an integer from 0 to 900000"),
        ({"eta": 10**15}, "options.eta is more than 3600 s ahead; no command is held that long"),
    ],
)
def test_a_retry_setting_out_of_range_is_refused_with_its_name(options: dict[str, Any], reason: str) -> None:
    assert _options_of(options) == ("bad_envelope", reason)


def test_a_command_dramatiq_retries_keeps_its_retry_count() -> None:
    """The Retries middleware re-enqueues a failed command with ``retries`` one higher (and a delay, which
    the broker writes as ``eta``); the filter must keep the count, or a failing command would be retried
    forever."""
    previous_broker, previous_encoder = dramatiq.get_broker(), dramatiq.get_encoder()
    try:
        broker = build_broker(Settings())
        dramatiq.actor(lambda **_: None, actor_name="create_order", queue_name="orders.create", broker=broker)
        requeued: list[tuple[Message[Any], int | None]] = []

        def enqueue(message: Message[Any], *, delay: int | None = None) -> Message[Any]:
            requeued.append((message, delay))
            return message

        broker.enqueue = enqueue  # type: ignore[method-assign]
        failed = Message(
            queue_name="orders.create",
            actor_name="create_order",
            args=(),
            kwargs={"command_id": "order-0001"},
            options={"retries": 3},
        )
        try:
            raise RuntimeError("ledger unavailable")
        except RuntimeError as error:
            broker.emit_after("process_message", MessageProxy(failed), exception=error)
        [(message, delay)] = requeued
        assert delay is not None and delay > 0
        assert CommandEncoder().decode(message.encode())["options"]["retries"] == 4
    finally:
        dramatiq.set_broker(previous_broker)
        dramatiq.set_encoder(previous_encoder)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"command_id": "shop-42:order-7"}, "shop-42:order-7"),
        ({"command_id": "shop-42:order-7\n"}, None),
        ({"command_id": "short"}, None),
        ({"command_id": ["shop-42:order-7"]}, None),
        ({}, None),
    ],
)
def test_a_refused_envelope_is_answered_under_the_command_id_it_names(
    kwargs: dict[str, Any], named: str | None
) -> None:
    decoded = CommandEncoder().decode(
        envelope("orders.create", "create_order", kwargs, options={"max_retries": -1})
    )
    assert decoded["actor_name"] == REJECT_ACTOR
    assert decoded["kwargs"].get("command_id") == named


def test_reading_what_a_refused_body_names_survives_nesting_deeper_than_the_parser() -> None:
    """The dead-letter rescuer reads command ids out of bodies it could not use; a body nested beyond
    the JSON parser's recursion limit names nothing instead of failing every rescue pass."""
    deep = b'{"kwargs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert loose_fields(deep) == {}
    assert named_command(deep) is None
    assert named_command(envelope("q", "create_order", {"command_id": "cmd-00000042"})) == "cmd-00000042"
