"""Commands are validated strictly and the shipped JSON Schemas match the models."""

from __future__ import annotations

import json
import uuid

import pytest
from pydantic import ValidationError

from tests.support.partners import TRON, zerotrace_params
from worker.messages import (
    CreateOrderCommand,
    EventType,
    OrderEvent,
    Source,
    rejection_event_id,
    transition_event_id,
)
from worker.partners.itrx.params import is_tron_address
from worker.partners.registry import UnknownPartnerError, check_command
from worker.schemas import SCHEMA_DIR, render_schemas

ZT_PARAMS = zerotrace_params()


def test_shipped_schemas_are_current() -> None:
    for name, text in render_schemas().items():
        assert (SCHEMA_DIR / name).read_text() == text, (
            f"{name} is stale: run 'order-worker schemas --out worker/schemas'"
        )


def test_valid_commands_for_both_providers() -> None:
    check_command(CreateOrderCommand(command_id="order-0001", provider="0trace", params=ZT_PARAMS))
    check_command(
        CreateOrderCommand(
            command_id="order:0002",
            provider="itrx",
            params={"energy_amount": 65000, "period": "1H", "receive_address": TRON},
            metadata={"tenant": "a"},
        )
    )


def test_an_unknown_provider_is_refused_naming_the_installed_ones() -> None:
    command = CreateOrderCommand(command_id="order-0001", provider="binance", params=ZT_PARAMS)
    with pytest.raises(UnknownPartnerError) as info:
        check_command(command)
    assert str(info.value) == "unknown provider 'binance' (known: 0trace, itrx)"


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"command_id": "short"}, "command_id"),
        ({"command_id": "has space in it"}, "command_id"),
        ({"provider": "not a provider id"}, "provider"),
        ({"params": {**ZT_PARAMS, "amount": "-1"}}, "amount"),
        ({"params": {**ZT_PARAMS, "amount": "1e5"}}, "amount"),
        ({"params": {**ZT_PARAMS, "amount": "0"}}, "amount"),
        ({"params": {**ZT_PARAMS, "toAddress": "x"}}, "toAddress"),
        ({"params": {**ZT_PARAMS, "direction": "sideways"}}, "direction"),
        ({"params": {**ZT_PARAMS, "afftax": 2001}}, "afftax"),
        ({"params": {**ZT_PARAMS, "surprise": 1}}, "surprise"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"metadata": {"k": "v" * 257}}, "metadata"),
    ],
)
def test_zerotrace_commands_rejected_with_field(change: dict[str, object], where: str) -> None:
    raw = {"command_id": "order-0001", "provider": "0trace", "params": ZT_PARAMS, **change}
    with pytest.raises(ValidationError) as info:
        check_command(CreateOrderCommand.model_validate(raw))
    assert where in str(info.value)


@pytest.mark.parametrize(
    "params",
    [
        {"energy_amount": 65000, "period": "2W", "receive_address": TRON},
        {"energy_amount": 999, "period": "1H", "receive_address": TRON},
        {"energy_amount": "65000", "period": "1H", "receive_address": TRON},
        {"energy_amount": 65000, "period": "1H", "receive_address": TRON[:-1] + "v"},
    ],
)
def test_itrx_params_rejected(params: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        check_command(CreateOrderCommand(command_id="order-0001", provider="itrx", params=params))


def test_tron_checksum() -> None:
    assert is_tron_address(TRON)
    assert not is_tron_address(TRON.replace("K", "L", 1))
    assert not is_tron_address("0" + TRON[1:])


def test_fingerprint_ignores_metadata_but_not_params() -> None:
    a = CreateOrderCommand(command_id="order-0001", provider="0trace", params=ZT_PARAMS, metadata={"x": "1"})
    b = CreateOrderCommand(
        command_id="order-0001", provider="0trace", params=dict(ZT_PARAMS), metadata={"x": "2"}
    )
    c = CreateOrderCommand(command_id="order-0001", provider="0trace", params={**ZT_PARAMS, "amount": "0.02"})
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_event_ids_are_deterministic_and_distinct() -> None:
    first = transition_event_id("order-0001", 1, EventType.CREATED, "awaiting_deposit")
    assert first == transition_event_id("order-0001", 1, EventType.CREATED, "awaiting_deposit")
    assert first != transition_event_id("order-0001", 2, EventType.STATUS_CHANGED, "confirming")
    assert rejection_event_id("m1") != rejection_event_id("m2")


def test_event_ids_are_uuid5_in_the_event_namespace() -> None:
    """Event ids are published: the id of a transition must never change between versions."""
    namespace = uuid.UUID("6f9d5a52-2d6b-4bd3-9a8e-0c8e1f4f7b21")
    for command_id, sequence, status in [("order-0001", 1, "awaiting_deposit"), ("cmd:é/ü", 12, None)]:
        expected = uuid.uuid5(namespace, f"{command_id}/{sequence}/status_changed/{status}")
        assert transition_event_id(command_id, sequence, EventType.STATUS_CHANGED, status) == str(expected)
    assert rejection_event_id("msg:m-1") == str(uuid.uuid5(namespace, "rejected/msg:m-1"))


def test_event_routing_key_and_json() -> None:
    event = OrderEvent(
        event_id="e",
        type=EventType.STATUS_CHANGED,
        occurred_at="2026-01-01T00:00:00.000Z",
        command_id="order-0001",
        provider="itrx",
        source=Source.POLL,
    )
    assert event.routing_key == "order.itrx.status_changed"
    assert json.loads(event.to_json())["type"] == "status_changed"
