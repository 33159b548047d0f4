"""A partner push that carries W3C trace headers continues that trace: the events it causes carry it."""

from __future__ import annotations

from tests.webhooks.helpers import CANARY_ZT_WEBHOOK_NEW, T0, World, zt_body, zt_dto, zt_headers
from worker import tracing
from worker.bus.relay import event_properties

TRACEPARENT = "00-5af7651916cd43dd8448eb211c80319c-c7ad6b7169203331-01"


def test_a_traced_push_hands_its_trace_to_the_event(world: World) -> None:
    seeded = world.seed_zerotrace()
    assert seeded.order_id is not None
    world.ledger.claim_outbox(T0 + 1, 100, 30)  # the created event: not the push's
    raw = zt_body(zt_dto(seeded.order_id, "PENDING", T0 + 10))
    headers = {**zt_headers(raw, CANARY_ZT_WEBHOOK_NEW, world.clock()), "traceparent": [TRACEPARENT]}

    result = world.zerotrace(raw, headers)

    assert (result.status, result.events) == (200, 1)
    (row,) = world.ledger.claim_outbox(T0 + 1, 100, 30)
    assert event_properties(row).headers == {"traceparent": TRACEPARENT}
    assert tracing.current() is None


def test_a_push_without_or_with_a_malformed_header_writes_untraced_events(world: World) -> None:
    seeded = world.seed_zerotrace()
    assert seeded.order_id is not None
    world.ledger.claim_outbox(T0 + 1, 100, 30)
    for status, extra in (("PENDING", {}), ("EXCHANGE", {"traceparent": ["00-nonsense-01"]})):
        raw = zt_body(zt_dto(seeded.order_id, status, T0 + 10 + len(status)))
        result = world.zerotrace(raw, {**zt_headers(raw, CANARY_ZT_WEBHOOK_NEW, world.clock()), **extra})
        assert (result.status, result.events) == (200, 1)
    rows = world.ledger.claim_outbox(T0 + 1, 100, 30)
    assert len(rows) == 2 and all(row.trace_context is None for row in rows)
