"""``deduplicated``: a handler called once per event_id, remembered only once it returned, over any
``SeenEvents`` store."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from order_worker_client import OrderEvent, RecentEvents, SeenEvents, deduplicated


class DictStore:
    """A user's own store, as the protocol allows."""

    def __init__(self) -> None:
        self.ids: dict[str, bool] = {}

    def seen(self, event_id: str) -> bool:
        return event_id in self.ids

    def remember(self, event_id: str) -> None:
        self.ids[event_id] = True


def _event(event_id: str) -> OrderEvent:
    return OrderEvent.model_validate(
        {
            "event_id": event_id,
            "type": "created",
            "seq": 1,
            "occurred_at": "2026-12-07T01:00:00Z",
            "command_id": "cl-00000001",
            "provider": "itrx",
            "source": "create",
        }
    )


@pytest.mark.parametrize("store", [RecentEvents(), DictStore()], ids=["memory", "own-store"])
def test_each_event_is_handled_once_and_a_failed_one_again(store: SeenEvents) -> None:
    calls: list[str] = []
    fail = {"b"}

    def handler(event: OrderEvent) -> None:
        calls.append(event.event_id)
        if event.event_id in fail:
            fail.discard(event.event_id)
            raise RuntimeError("first try fails")

    handle = deduplicated(handler, store)
    for event_id in ("a", "a", "b"):
        with contextlib.suppress(RuntimeError):
            handle(_event(event_id))
    handle(_event("b"))
    handle(_event("b"))
    assert calls == ["a", "b", "b"]


def test_events_with_unknown_fields_still_parse() -> None:
    event = OrderEvent.model_validate(
        {**_event(str(uuid.uuid4())).model_dump(mode="json"), "a_field_from_the_future": [1, 2]}
    )
    assert event.type == "created"
