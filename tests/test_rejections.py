"""Every refusal, from the pipeline or from the dead-letter rescuer, stores only bounded, safe fields."""

from __future__ import annotations

import pika

from worker import metrics
from worker.bus.dead_letters import DeadLetterRescuer
from worker.bus.envelope import envelope
from worker.ledger.base import Ledger
from worker.rejections import field_names, record_rejection


def _count(code: str) -> float:
    return metrics.REJECTIONS.labels(code)._value.get()  # type: ignore[attr-defined,no-any-return]


def test_untrusted_fields_are_bounded_and_a_redelivery_writes_nothing(ledger: Ledger) -> None:
    kwargs = {
        "command_id": "c" * 200,
        "provider": ["0trace"],  # unhashable: must be refused, not raise
        "metadata": {f"k{i}": "v" * 300 for i in range(20)},
    }
    before = _count("invalid_command")
    events = record_rejection(
        ledger, "key-1", kwargs, "invalid_command", "bad", field_names(kwargs), 1_700_000_000.0
    )
    assert len(events) == 1 and events[0].type == "rejected"
    [row] = ledger.dead_letters()
    assert row["command_id"] == "c" * 128 and row["provider"] is None
    assert len(row["metadata"]) == 16 and all(len(v) == 256 for v in row["metadata"].values())
    assert row["detail"] == {"fields": ["command_id", "metadata", "provider"]}
    assert _count("invalid_command") == before + 1

    again = record_rejection(ledger, "key-1", kwargs, "invalid_command", "bad", {}, 1_700_000_001.0)
    assert again == [] and len(ledger.dead_letters()) == 1
    assert _count("invalid_command") == before + 1


def test_poison_is_recorded_through_the_same_writer_without_metadata(ledger: Ledger) -> None:
    # The rescuer connects only when it touches the broker; a message already rescued once is rejected
    # without touching it.
    rescuer = DeadLetterRescuer(ledger, "amqp://guest:guest@127.0.0.1:1/%2F", ["orders.create"])
    kwargs = {"command_id": "shop-1:poison", "provider": "itrx", "metadata": {"shop": "1"}}
    body = envelope("orders.create", "create_order", kwargs)
    properties = pika.BasicProperties(headers={DeadLetterRescuer.HEADER: 1})
    before = _count("poison")
    assert rescuer._handle(None, "orders.create", properties, body) is None  # type: ignore[arg-type]
    [row] = ledger.dead_letters()
    assert (row["code"], row["command_id"], row["provider"]) == ("poison", "shop-1:poison", "itrx")
    assert row["metadata"] == {}
    assert row["detail"]["queue"] == "orders.create" and row["detail"]["rescues"] == 1
    assert _count("poison") == before + 1
