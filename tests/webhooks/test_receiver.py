"""PushReceiver against a real SQLite ledger and a real OrderPipeline (itrx re-queries go to a local stub).

What is proven here: a verified push goes through the same ledger transition a poll makes (same event id,
published once); duplicates and late pushes change nothing; both secret rotations work; itrx callbacks are
only triggers (the re-queried status is what gets recorded), including for in_doubt orders; failures of our
own dependencies answer 503 and write nothing; hostile but signed bodies are answered 4xx, never 5xx.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.webhooks.helpers import (
    CANARY_ITRX_PREVIOUS,
    CANARY_ITRX_SECRET,
    CANARY_ZT_WEBHOOK_NEW,
    CANARY_ZT_WEBHOOK_OLD,
    T0,
    THIRD_SECRET,
    Clock,
    World,
    build_world,
    itrx_callback_payload,
    itrx_headers,
    itrx_signed,
    zt_body,
    zt_dto,
    zt_headers,
)
from worker.messages import EventType, Source, transition_event_id
from worker.partners.itrx.signing import canonical_json, itrx_sign
from worker.partners.zerotrace.client import parse_order
from worker.partners.zerotrace.signing import sign_body
from worker.status import Status

# --- spec vectors ---------------------------------------
TV10_SECRET = "test-webhook-secret-fedcba9876543210"
TV10_TIMESTAMP = 1716800123
TV10_SIGN = "dedae6eeeaa43ffbb7f11a46fa27e4e02d07498e19c53e7ff52839d01502ae9d"
TV10_ORDER_ID = "1f8c5e0b-9c92-4d6a-b0a8-3c5f8d6e7a4b"
TV10_BODY = (
    b'{"event":"order.status_changed","order":{"id":"1f8c5e0b-9c92-4d6a-b0a8-3c5f8d6e7a4b","type":"float",'
    b'"status":"PENDING","time":{"reg":1716800000,"expiration":1716801800,"left":1677,"update":1716800123,'
    b'"finish":null},"from":{"code":"btc","network":"Bitcoin","amount":"0.01000000","address":'
    b'"bc1qexamplepayinaddress00000001","tx":{"id":"abcdef0123456789","amount":"0.01000000"}},"to":{"code":'
    b'"usdt_trc20","network":"Tron","amount":"619.987654","address":"TXyzExampleRecipientAddress0001","tx":'
    b'{"id":null,"amount":null}},"back":{"address":"bc1qexamplerefundaddress0000001","tx":{"id":null}},'
    b'"emergency":{"status":[],"choice":"NONE"},"rate":"62450.12345678","networkFee":"1.20","markupBps":50},'
    b'"ts":1716800123456}'
)
V7_SECRET = "0285A2741D0E76E2E187260EB23E51851D48403A756333E7D0CF845406ABF3E8"
V7_TIMESTAMP = "1700000003"
V7_SERIAL = "7297a8a2a9e39b86fc5bad0d2e9edda2"
V7_COMPACT_BODY = b'{"out_trade_no":"123456","serial":"7297a8a2a9e39b86fc5bad0d2e9edda2","status":40}'
V7A_SIGN = "a6df5433f696d1d88bd23eee5adda740f28bcc0be7b67887a639eee7d576c205"
V7B_SIGN = "e4c35f53ae60fa845b71c7b49c0a8f67f00caf0aa9dac0b2d90381155daf8474"


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[Callable[..., World]]:
    made: list[World] = []

    def make(clock: Clock | None = None, **overrides: Any) -> World:
        built = build_world(tmp_path / f"w{len(made)}", clock, **overrides)
        made.append(built)
        return built

    yield make
    for built in made:
        built.close()


def _zt_push(
    world: World, order_id: str, status: str, updated_at: float, secret: str = CANARY_ZT_WEBHOOK_NEW
):
    raw = zt_body(zt_dto(order_id, status, updated_at))
    return raw, zt_headers(raw, secret, world.clock())


# --- 1. a valid 0trace webhook ---------------------------------------


def test_valid_zerotrace_webhook_is_applied_once_and_its_redelivery_is_a_duplicate(world: World) -> None:
    seeded = world.seed_zerotrace()
    assert seeded.order_id is not None
    raw, headers = _zt_push(world, seeded.order_id, "PENDING", T0 + 10)
    before = world.outbox_count()

    result = world.zerotrace(raw, headers)

    assert (result.status, result.result, result.events) == (200, "accepted", 1)
    assert json.loads(result.body()) == {"result": "accepted"}
    assert world.outbox_count() == before + 1
    [event] = world.events(seeded.command_id, "status_changed")
    assert event["source"] == "webhook"
    assert (event["status"], event["previous_status"]) == ("confirming", "awaiting_deposit")
    assert (event["provider_status"], event["order_id"]) == ("PENDING", seeded.order_id)
    assert event["order"]["deposit_tx_id"] == "abcdef0123456789"
    assert event["metadata"] == {"pipeline": "webhook-tests"}
    record = world.ledger.get(seeded.command_id)
    assert record is not None
    assert (record.status, record.provider_status, record.last_push_at) == ("confirming", "PENDING", T0)
    assert f"order:{seeded.order_id}:PENDING" in world.push_keys()

    # 0trace retries with identical bytes and a new send-time header: nothing new happens.
    again = world.zerotrace(raw, zt_headers(raw, CANARY_ZT_WEBHOOK_NEW, world.clock() + 45))
    assert (again.status, again.result, again.events) == (200, "duplicate", 0)
    assert world.outbox_count() == before + 1
    assert len(world.events(seeded.command_id, "status_changed")) == 1


def test_spec_vector_tv10_verifies_inside_its_window_and_only_there(make_world: Callable[..., World]) -> None:
    assert len(TV10_BODY) == 708
    assert sign_body(TV10_BODY, TV10_SECRET) == TV10_SIGN
    clock = Clock(float(TV10_TIMESTAMP))
    world = make_world(clock, zerotrace_webhook_secrets=[SecretStr(TV10_SECRET)])
    seeded = world.seed_zerotrace(order_id=TV10_ORDER_ID, updated_at=1716800000)
    headers = zt_headers(TV10_BODY, TV10_SECRET, str(TV10_TIMESTAMP), sign=TV10_SIGN)
    before = world.outbox_count()

    # spec §16: must reject at now <= 1716800062 (> 60 s future) and now >= 1716800424 (> 300 s old)
    for now in (1716800062.0, 1716800424.0, 1716700000.0, 1716900000.0):
        clock.now = now
        refused = world.zerotrace(TV10_BODY, headers)
        assert (refused.status, refused.result) == (401, "stale_timestamp"), now
    assert world.outbox_count() == before
    assert world.push_keys() == set()

    clock.now = 1716800063.0  # the earliest accepted clock
    accepted = world.zerotrace(TV10_BODY, headers)
    assert (accepted.status, accepted.result, accepted.events) == (200, "accepted", 1)
    [event] = world.events(seeded.command_id, "status_changed")
    assert (event["status"], event["provider_status"]) == ("confirming", "PENDING")
    assert world.push_keys() == {f"order:{TV10_ORDER_ID}:PENDING"}

    clock.now = 1716800423.0  # the latest accepted clock; upper-case hex is the same signature
    upper = zt_headers(TV10_BODY, TV10_SECRET, str(TV10_TIMESTAMP), sign=TV10_SIGN.upper())
    assert (world.zerotrace(TV10_BODY, upper).result) == "duplicate"
    # TV11-style mistake: the same body plus one newline is another message
    assert world.zerotrace(TV10_BODY + b"\n", headers).result == "bad_signature"
    assert world.outbox_count() == before + 1


def test_other_event_types_and_unknown_orders_are_recorded_not_applied(world: World) -> None:
    before = world.outbox_count()
    paid = json.dumps({"event": "partner.paid_out", "payout": {"paidOutAt": 1}, "ts": 5}).encode()
    result = world.zerotrace(paid, zt_headers(paid, CANARY_ZT_WEBHOOK_NEW, T0, event="partner.paid_out"))
    assert (result.status, result.result) == (202, "ignored_event")

    # An order this ledger does not know (yet) is held until its create commits (test_held_pushes.py).
    stranger = str(uuid.uuid4())
    raw, headers = _zt_push(world, stranger, "PENDING", T0)
    result = world.zerotrace(raw, headers)
    assert (result.status, result.result) == (202, "held")
    assert world.ledger.held_push_count() == 1
    assert world.outbox_count() == before


def test_late_and_out_of_order_webhooks_never_move_an_order_backwards(world: World) -> None:
    seeded = world.seed_zerotrace()
    assert seeded.order_id is not None
    oid = seeded.order_id
    exchange = world.zerotrace(*_zt_push(world, oid, "EXCHANGE", T0 + 20))
    assert (exchange.result, exchange.events) == ("accepted", 1)
    # PENDING was queued earlier (status frozen at queue time) and arrives late: 2xx, no event, no rewind
    late = world.zerotrace(*_zt_push(world, oid, "PENDING", T0 + 10))
    assert (late.status, late.events) == (200, 0)
    assert world.ledger.get(seeded.command_id).status == "processing"  # type: ignore[union-attr]
    done = world.zerotrace(*_zt_push(world, oid, "DONE", T0 + 30))
    assert (done.result, done.events) == ("accepted", 1)
    # nothing leaves a terminal status, even a push that claims to be newer
    after = world.zerotrace(*_zt_push(world, oid, "EXCHANGE", T0 + 40))
    assert (after.status, after.events) == (200, 0)
    record = world.ledger.get(seeded.command_id)
    assert record is not None and record.status == "completed"
    statuses = [e["status"] for e in world.events(seeded.command_id, "status_changed")]
    assert statuses == ["processing", "completed"]


# --- 2. poll and webhook observing the same transition ---------------------------------------


@pytest.mark.parametrize("first", ["poll", "webhook"])
def test_poll_and_webhook_seeing_one_transition_publish_one_event_id(world: World, first: str) -> None:
    seeded = world.seed_zerotrace()
    assert seeded.order_id is not None
    record = world.ledger.get(seeded.command_id)
    assert record is not None
    expected_id = transition_event_id(
        seeded.command_id, record.event_seq + 1, EventType.STATUS_CHANGED, Status.PROCESSING.value
    )
    dto = zt_dto(seeded.order_id, "EXCHANGE", T0 + 20)
    raw = zt_body(dto)
    headers = zt_headers(raw, CANARY_ZT_WEBHOOK_NEW, world.clock())

    def poll() -> int:
        current = world.ledger.get(seeded.command_id)
        assert current is not None
        return len(world.pipeline.observe(current, parse_order(dto), Source.POLL).events)

    def push() -> int:
        result = world.zerotrace(raw, headers)
        assert (result.status, result.result) == (200, "accepted")
        return result.events

    counts = [poll(), push()] if first == "poll" else [push(), poll()]

    assert counts == [1, 0]
    [event] = world.events(seeded.command_id, "status_changed")
    assert event["event_id"] == expected_id
    assert event["source"] == ("poll" if first == "poll" else "webhook")
    assert len({e["event_id"] for e in world.events()}) == world.outbox_count()


def test_racing_poll_and_webhook_threads_still_publish_one_event_per_transition(world: World) -> None:
    orders = [world.seed_zerotrace() for _ in range(12)]
    errors: list[BaseException] = []

    def race(command_id: str, order_id: str) -> None:
        dto = zt_dto(order_id, "PENDING", T0 + 5)
        raw = zt_body(dto)
        headers = zt_headers(raw, CANARY_ZT_WEBHOOK_OLD, world.clock())
        barrier = threading.Barrier(2)

        def poll() -> None:
            barrier.wait()
            current = world.ledger.get(command_id)
            assert current is not None
            world.pipeline.observe(current, parse_order(dto), Source.POLL)

        def push() -> None:
            barrier.wait()
            assert world.zerotrace(raw, headers).status == 200

        threads = [
            threading.Thread(target=_catching(poll, errors)),
            threading.Thread(target=_catching(push, errors)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)

    for seeded in orders:
        assert seeded.order_id is not None
        race(seeded.command_id, seeded.order_id)
    assert not errors
    for seeded in orders:
        [event] = world.events(seeded.command_id, "status_changed")
        assert event["event_id"] == transition_event_id(
            seeded.command_id, 2, EventType.STATUS_CHANGED, "confirming"
        )


def _catching(target: Callable[[], None], errors: list[BaseException]) -> Callable[[], None]:
    def run() -> None:
        try:
            target()
        except BaseException as error:
            errors.append(error)

    return run


# --- 3. rotation ---------------------------------------


def test_zerotrace_rotation_accepts_new_and_old_secret_once_and_refuses_a_third(world: World) -> None:
    a, b, c = world.seed_zerotrace(), world.seed_zerotrace(), world.seed_zerotrace()
    assert a.order_id and b.order_id and c.order_id
    raw_a = zt_body(zt_dto(a.order_id, "PENDING", T0 + 1))
    raw_b = zt_body(zt_dto(b.order_id, "PENDING", T0 + 1))
    raw_c = zt_body(zt_dto(c.order_id, "PENDING", T0 + 1))
    now = world.clock()

    first_a = world.zerotrace(raw_a, zt_headers(raw_a, CANARY_ZT_WEBHOOK_NEW, now))
    # a retry of the same delivery signed by the secret on the other side of the rotation
    again_a = world.zerotrace(raw_a, zt_headers(raw_a, CANARY_ZT_WEBHOOK_OLD, now))
    first_b = world.zerotrace(raw_b, zt_headers(raw_b, CANARY_ZT_WEBHOOK_OLD, now))
    again_b = world.zerotrace(raw_b, zt_headers(raw_b, CANARY_ZT_WEBHOOK_NEW, now))
    before = world.outbox_count()
    third = world.zerotrace(raw_c, zt_headers(raw_c, THIRD_SECRET, now))

    assert [(r.status, r.result, r.events) for r in (first_a, again_a, first_b, again_b)] == [
        (200, "accepted", 1),
        (200, "duplicate", 0),
        (200, "accepted", 1),
        (200, "duplicate", 0),
    ]
    assert (third.status, third.result) == (401, "bad_signature")
    assert world.outbox_count() == before
    assert world.events(c.command_id, "status_changed") == []
    assert f"order:{c.order_id}:PENDING" not in world.push_keys()
    assert (
        len(world.events(a.command_id, "status_changed"))
        == len(world.events(b.command_id, "status_changed"))
        == 1
    )


def test_itrx_rotation_accepts_current_and_previous_secret_and_refuses_a_third(world: World) -> None:
    results = []
    for secret in (CANARY_ITRX_SECRET, CANARY_ITRX_PREVIOUS, THIRD_SECRET):
        seeded = world.seed_itrx()
        assert seeded.order_id is not None
        world.stub.set_order(seeded.order_id, 40)
        payload = itrx_callback_payload(seeded.order_id, seeded.partner_ref, 40)
        results.append((seeded, world.itrx(*itrx_signed(payload, secret, int(world.clock())))))
    assert [(r.status, r.result, r.events) for _, r in results] == [
        (200, "accepted", 1),
        (200, "accepted", 1),
        (401, "bad_signature", 0),
    ]
    refused = results[2][0]
    assert refused.order_id is not None
    assert world.stub.queries_for(refused.order_id) == []  # never re-query on an unverified callback
    assert world.ledger.get(refused.command_id).status == "processing"  # type: ignore[union-attr]


# --- 5. itrx callbacks ---------------------------------------


def test_itrx_callback_is_a_trigger_the_requeried_status_is_what_gets_recorded(world: World) -> None:
    seeded = world.seed_itrx()
    serial = seeded.order_id
    assert serial is not None
    world.stub.set_order(serial, 40)  # itrx itself says: completed
    payload = itrx_callback_payload(serial, seeded.partner_ref, 43)  # the callback body claims: failed
    raw, headers = itrx_signed(payload, CANARY_ITRX_SECRET, int(world.clock()))
    assert raw == canonical_json(payload)  # as the sandbox sends it: compact, sorted, signed as sent

    result = world.itrx(raw, headers)

    assert (result.status, result.result, result.events) == (200, "accepted", 1)
    [query] = world.stub.queries_for(serial)
    assert query.path == "/api/v1/frontend/order/query"
    [event] = world.events(seeded.command_id, "status_changed")
    assert (event["status"], event["provider_status"], event["source"]) == ("completed", "40", "webhook")
    record = world.ledger.get(seeded.command_id)
    assert record is not None
    assert (record.status, record.order_id, record.last_push_at) == ("completed", serial, T0)

    again = world.itrx(raw, headers)  # itrx re-delivers (no 200 seen, say)
    assert (again.status, again.result, again.events) == (200, "duplicate", 0)
    assert len(world.stub.queries_for(serial)) == 1  # terminal: no second re-query
    assert f"itrx:{serial}:43" in world.push_keys()


def test_itrx_callback_signed_over_the_python_default_form_verifies_v7a(
    make_world: Callable[..., World], caplog: pytest.LogCaptureFixture
) -> None:
    assert itrx_sign(V7_SECRET, V7_TIMESTAMP, V7_COMPACT_BODY) == V7B_SIGN
    spaced = json.dumps(json.loads(V7_COMPACT_BODY), sort_keys=True).encode()
    assert itrx_sign(V7_SECRET, V7_TIMESTAMP, spaced) == V7A_SIGN
    world = make_world(Clock(float(V7_TIMESTAMP) + 30), itrx_api_secret=SecretStr(V7_SECRET))
    seeded = world.seed_itrx(serial=V7_SERIAL)
    world.stub.set_order(V7_SERIAL, 40)

    seen = len(caplog.records)
    v7a = world.itrx(V7_COMPACT_BODY, itrx_headers(V7_TIMESTAMP, V7A_SIGN))
    assert (v7a.status, v7a.result, v7a.events) == (200, "accepted", 1)
    assert any("python_default" in r.getMessage() for r in caplog.records[seen:])
    v7b = world.itrx(V7_COMPACT_BODY, itrx_headers(V7_TIMESTAMP, V7B_SIGN))
    assert (v7b.status, v7b.result) == (200, "duplicate")
    spaced_on_wire = world.itrx(spaced, itrx_headers(V7_TIMESTAMP, V7A_SIGN))  # raw match
    assert spaced_on_wire.status == 200
    tampered = V7_COMPACT_BODY.replace(b"40", b"41")
    assert world.itrx(tampered, itrx_headers(V7_TIMESTAMP, V7A_SIGN)).result == "bad_signature"
    assert world.itrx(V7_COMPACT_BODY, itrx_headers("1700000004", V7B_SIGN)).result == "bad_signature"
    assert len(world.events(seeded.command_id, "status_changed")) == 1


def test_in_doubt_itrx_order_is_resolved_by_a_callback_naming_serial_and_out_trade_no(world: World) -> None:
    seeded = world.seed_itrx_in_doubt()
    record = world.ledger.get(seeded.command_id)
    assert record is not None and (record.status, record.order_id) == ("in_doubt", None)
    serial = uuid.uuid4().hex
    world.stub.set_order(serial, 30)
    payload = itrx_callback_payload(serial, seeded.partner_ref, 30)

    result = world.itrx(*itrx_signed(payload, CANARY_ITRX_SECRET, int(world.clock())))

    assert (result.status, result.result, result.events) == (200, "accepted", 1)
    assert len(world.stub.queries_for(serial)) == 1
    record = world.ledger.get(seeded.command_id)
    assert record is not None
    assert (record.status, record.order_id, record.provider_status) == ("processing", serial, "30")
    [event] = world.events(seeded.command_id, "status_changed")
    assert (event["previous_status"], event["status"], event["order_id"]) == (
        "in_doubt",
        "processing",
        serial,
    )
    assert event["source"] == "webhook"
    # now an ordinary order: found by its serial from here on
    assert world.ledger.find_by_order_id("itrx", serial) is not None


def test_in_doubt_itrx_callback_without_a_serial_is_recorded_for_an_operator(world: World) -> None:
    seeded = world.seed_itrx_in_doubt()
    payload = itrx_callback_payload(None, seeded.partner_ref, 40)
    before = world.outbox_count()
    result = world.itrx(*itrx_signed(payload, CANARY_ITRX_SECRET, int(world.clock())))
    assert (result.status, result.result) == (200, "no_serial")  # itrx redelivers anything but 200
    assert world.outbox_count() == before
    assert world.ledger.get(seeded.command_id).status == "in_doubt"  # type: ignore[union-attr]
    assert world.stub.requests == []


def test_callback_arriving_before_the_create_answer_settles_the_submitting_order(world: World) -> None:
    seeded = world.seed_itrx_submitting()
    serial = uuid.uuid4().hex
    world.stub.set_order(serial, 40)
    payload = itrx_callback_payload(serial, seeded.partner_ref, 40)
    result = world.itrx(*itrx_signed(payload, CANARY_ITRX_SECRET, int(world.clock())))
    assert (result.status, result.events) == (200, 1)
    record = world.ledger.get(seeded.command_id)
    assert record is not None
    assert (record.status, record.order_id, record.attempt_open) == ("completed", serial, False)


def test_retryable_requery_failure_answers_503_and_writes_nothing(world: World) -> None:
    seeded = world.seed_itrx()
    serial = seeded.order_id
    assert serial is not None
    world.stub.fail[serial] = (503, b'{"detail":"upstream unavailable"}')
    payload = itrx_callback_payload(serial, seeded.partner_ref, 40)
    raw, headers = itrx_signed(payload, CANARY_ITRX_SECRET, int(world.clock()))
    before_record = world.ledger.get(seeded.command_id)
    before_outbox, before_keys = world.outbox_count(), world.push_keys()

    result = world.itrx(raw, headers)

    assert (result.status, result.result) == (503, "requery_failed")
    assert len(world.stub.queries_for(serial)) == 1
    assert world.outbox_count() == before_outbox
    assert world.push_keys() == before_keys
    assert world.ledger.get(seeded.command_id) == before_record  # not even last_push_at moved

    # itrx retries (15 s later on its ladder) once the query works again
    del world.stub.fail[serial]
    world.stub.set_order(serial, 40)
    retried = world.itrx(raw, headers)
    assert (retried.status, retried.result, retried.events) == (200, "accepted", 1)


def test_requery_refused_by_itrx_is_recorded_with_200(world: World) -> None:
    seeded = world.seed_itrx()
    serial = seeded.order_id
    assert serial is not None  # the stub does not know it: errno 404
    payload = itrx_callback_payload(serial, seeded.partner_ref, 40)
    before = world.outbox_count()
    result = world.itrx(*itrx_signed(payload, CANARY_ITRX_SECRET, int(world.clock())))
    assert (result.status, result.result) == (200, "requery_refused")
    assert world.outbox_count() == before
    assert f"itrx:{serial}:40" in world.push_keys()


def test_itrx_callback_for_an_unknown_order_is_recorded_with_200(world: World) -> None:
    serial, out_trade_no = uuid.uuid4().hex, "someone-elses-order-0001"
    payload = itrx_callback_payload(serial, out_trade_no, 40)
    raw, headers = itrx_signed(payload, CANARY_ITRX_SECRET, int(world.clock()))
    before = world.outbox_count()
    first = world.itrx(raw, headers)
    second = world.itrx(raw, headers)
    assert [(r.status, r.result) for r in (first, second)] == [(200, "unknown_order")] * 2
    assert f"itrx:{serial}:40" in world.push_keys()  # recorded via record_push
    assert world.outbox_count() == before
    assert world.stub.requests == []


def test_callback_naming_a_foreign_serial_for_our_out_trade_no_does_not_overwrite_our_order(
    world: World,
) -> None:
    """A second itrx order carrying our out_trade_no is a double charge to surface, not our order's state.

    The order we hold has serial ``ours`` (status processing at itrx). A callback names another serial with
    our out_trade_no; that other order ended abnormally (43). Our order must keep describing itself.
    """
    seeded = world.seed_itrx()
    ours = seeded.order_id
    assert ours is not None
    foreign = uuid.uuid4().hex
    world.stub.set_order(ours, 30)
    world.stub.set_order(foreign, 43)
    payload = itrx_callback_payload(foreign, seeded.partner_ref, 43)

    result = world.itrx(*itrx_signed(payload, CANARY_ITRX_SECRET, int(world.clock())))

    assert result.status < 500
    record = world.ledger.get(seeded.command_id)
    assert record is not None
    assert record.order_id == ours
    assert record.status != "failed", "our order took the status of another itrx order"
    assert (record.order or {}).get("serial") == ours, "our order row now holds another order's snapshot"


# --- hostile but signed (or cheaply forged) bodies: 4xx, never 5xx --------------------------------------


def test_unsigned_deeply_nested_itrx_body_is_refused_not_a_server_error(world: World) -> None:
    """Anyone can send this: a fresh TIMESTAMP and any 64 hex characters are all it takes."""
    seeded = world.seed_itrx()
    raw = b"[" * 5000 + b"]" * 5000
    result = world.call("itrx", raw, itrx_headers(str(int(world.clock())), "0" * 64))
    assert not world.exceptions, repr(world.exceptions)
    assert 400 <= result.status < 500
    assert world.ledger.get(seeded.command_id).status == "processing"  # type: ignore[union-attr]


def test_signed_deeply_nested_zerotrace_body_is_a_400(world: World) -> None:
    raw = b'{"event":"order.status_changed","order":' + b"[" * 5000 + b"]" * 5000 + b"}"
    result = world.call("0trace", raw, zt_headers(raw, CANARY_ZT_WEBHOOK_NEW, world.clock()))
    assert not world.exceptions, repr(world.exceptions)
    assert (result.status, result.result) == (400, "bad_body")


@pytest.mark.parametrize(
    "field,value",
    [
        ("time.update", 10**400),
        ("time.reg", -(10**400)),
        ("time.finish", 10**309),
        ("markupBps", 10**400),
    ],
    ids=["update-1e400", "reg-minus-1e400", "finish-1e309", "markup-1e400"],
)
@pytest.mark.parametrize("known", [True, False])
def test_signed_zerotrace_dto_with_out_of_range_numbers_is_not_a_server_error(
    world: World, field: str, value: int, known: bool
) -> None:
    seeded = world.seed_zerotrace() if known else None
    order_id = seeded.order_id if seeded else str(uuid.uuid4())
    assert order_id is not None
    dto = zt_dto(order_id, "PENDING", T0 + 10)
    if field.startswith("time."):
        dto["time"][field.split(".")[1]] = value
    else:
        dto[field] = value
    raw = zt_body(dto)
    before = world.outbox_count()
    result = world.call("0trace", raw, zt_headers(raw, CANARY_ZT_WEBHOOK_NEW, world.clock()))
    assert not world.exceptions, repr(world.exceptions)
    assert result.status in (200, 202, 400)
    if result.status != 200:
        assert world.outbox_count() == before


@pytest.mark.parametrize(
    "hostile",
    [
        {"status": "4" * 5000},
        {"create_time": "0001-01-01T00:00:00+01:00"},
        {"create_time": "9999-12-31T23:59:59-01:00"},
        {"details": [{"delegate_time": "0001-01-01T00:30:00+05:00", "status": 20}]},
    ],
    ids=["status-digits", "create-time-min", "create-time-max", "delegate-time-min"],
)
@pytest.mark.parametrize("known", [True, False])
def test_signed_itrx_callback_with_hostile_values_is_not_a_server_error(
    world: World, hostile: dict[str, Any], known: bool
) -> None:
    seeded = world.seed_itrx() if known else None
    serial = seeded.order_id if seeded else uuid.uuid4().hex
    assert serial is not None
    world.stub.set_order(serial, 40)
    payload = {**itrx_callback_payload(serial, seeded.partner_ref if seeded else "x-0001", 40), **hostile}
    result = world.call("itrx", *itrx_signed(payload, CANARY_ITRX_SECRET, int(world.clock())))
    assert not world.exceptions, repr(world.exceptions)
    assert result.status in (200, 202, 400)
