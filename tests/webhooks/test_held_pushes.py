"""0trace pushes that arrive before the create's answer is committed: held, bounded, expired, and applied
once by the create that makes the order known (through the real receiver, pipeline and SQLite ledger)."""

from __future__ import annotations

import uuid
from pathlib import Path

from prometheus_client import REGISTRY

from tests.webhooks.helpers import CANARY_ZT_WEBHOOK_NEW, T0, World, build_world, zt_body, zt_dto, zt_headers
from worker.messages import EventType, Source
from worker.partners.zerotrace.client import parse_order
from worker.status import Status


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _push(world: World, order_id: str, status: str, updated_at: float) -> tuple[bytes, dict[str, list[str]]]:
    raw = zt_body(zt_dto(order_id, status, updated_at))
    return raw, zt_headers(raw, CANARY_ZT_WEBHOOK_NEW, world.clock())


def _held_count(world: World) -> int:
    return world.ledger.held_push_count()


def test_a_push_before_the_create_commits_is_held_and_applied_by_the_create(world: World) -> None:
    command = world._command("0trace")
    world._begin(command)
    order_id = str(uuid.uuid4())
    held_before = _sample("order_worker_held_pushes_total", provider="0trace")

    answers = [
        world.zerotrace(*_push(world, order_id, status, T0 + n))
        for n, status in enumerate(["PENDING", "EXCHANGE", "DONE"], 1)
    ]
    again = world.zerotrace(*_push(world, order_id, "EXCHANGE", T0 + 2))  # the partner's retry

    assert [(a.status, a.result) for a in [*answers, again]] == [(202, "held")] * 4
    assert _held_count(world) == 3
    assert world.outbox_count() == 0
    assert _sample("order_worker_held_pushes_total", provider="0trace") - held_before == 3

    # The create's answer arrives now, as a replay without a token: the order is untrackable, and the
    # held pushes complete it in the same transaction.
    created = parse_order(zt_dto(order_id, "NEW", T0))
    events = world.ledger.record_created(command.command_id, created, None, None, True, None, world.clock())
    assert [(e.type, e.source, e.status) for e in events] == [
        (EventType.UNTRACKABLE, Source.CREATE, Status.AWAITING_DEPOSIT),
        (EventType.STATUS_CHANGED, Source.WEBHOOK, Status.CONFIRMING),
        (EventType.STATUS_CHANGED, Source.WEBHOOK, Status.PROCESSING),
        (EventType.STATUS_CHANGED, Source.WEBHOOK, Status.COMPLETED),
    ]
    assert world.outbox_count() == 4
    assert _held_count(world) == 0
    record = world.ledger.get(command.command_id)
    assert record is not None and record.status == Status.COMPLETED

    # A late redelivery finds the order now, and changes nothing.
    late = world.zerotrace(*_push(world, order_id, "DONE", T0 + 3))
    assert (late.status, late.result, late.events) == (200, "duplicate", 0)
    assert world.outbox_count() == 4


def test_when_the_bound_is_reached_the_partner_is_asked_to_retry(tmp_path: Path) -> None:
    world = build_world(tmp_path / "bounded", held_pushes_max=2)
    try:
        first, second, third = (str(uuid.uuid4()) for _ in range(3))
        assert world.zerotrace(*_push(world, first, "PENDING", T0)).result == "held"
        assert world.zerotrace(*_push(world, second, "PENDING", T0)).result == "held"
        full = world.zerotrace(*_push(world, third, "PENDING", T0))
        assert (full.status, full.result) == (503, "hold_full")
        # A retry of a push held already is still taken.
        assert world.zerotrace(*_push(world, first, "PENDING", T0)).status == 202
        assert _held_count(world) == 2
        assert f"order:{third}:PENDING" not in world.push_keys()
    finally:
        world.close()


def test_held_pushes_past_their_ttl_are_dropped_and_counted(tmp_path: Path) -> None:
    world = build_world(tmp_path / "ttl", held_pushes_max=1, held_push_seconds=60)
    try:
        expired_before = _sample("order_worker_held_pushes_expired_total")
        stale, fresh = str(uuid.uuid4()), str(uuid.uuid4())
        assert world.zerotrace(*_push(world, stale, "PENDING", T0)).result == "held"
        world.clock.now = T0 + 61
        # The bound is reached, but the stale push is past its TTL: it goes, and the new one is held.
        assert world.zerotrace(*_push(world, fresh, "PENDING", T0 + 61)).result == "held"
        assert _held_count(world) == 1
        assert _sample("order_worker_held_pushes_expired_total") - expired_before == 1
    finally:
        world.close()


def test_with_holding_off_an_early_push_is_an_unknown_order(tmp_path: Path) -> None:
    world = build_world(tmp_path / "off", held_pushes_max=0)
    try:
        order_id = str(uuid.uuid4())
        result = world.zerotrace(*_push(world, order_id, "PENDING", T0))
        assert (result.status, result.result) == (202, "unknown_order")
        assert _held_count(world) == 0
        assert f"order:{order_id}:PENDING" in world.push_keys()
    finally:
        world.close()
