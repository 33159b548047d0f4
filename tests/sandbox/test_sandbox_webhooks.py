"""Outbound 0trace webhooks and itrx callbacks, verified on the receiving side with the openssl CLI."""

from __future__ import annotations

import json
from typing import Any

from order_worker_sandbox.config import SANDBOX_ITRX_API_SECRET, SANDBOX_ZEROTRACE_WEBHOOK_SECRET
from order_worker_sandbox.signing import canonical_json
from order_worker_sandbox.testing import RunningSandbox, wait_until

from tests.sandbox.conftest import TRON_OK, Itrx, ZeroTrace


def test_one_signed_webhook_per_status_change(
    zt: ZeroTrace, sb: RunningSandbox, receiver_factory: Any
) -> None:
    rx = receiver_factory("0trace", SANDBOX_ZEROTRACE_WEBHOOK_SECRET)
    sb.control.set_webhooks(zerotrace_webhook_url=rx.url)
    order = zt.create()
    sb.control.advance(120)  # NEW -> PENDING -> EXCHANGE -> DONE
    wait_until(lambda: len(rx.records) == 3)
    for rec in rx.records:
        assert rec["verified"], "openssl HMAC of the raw body must equal X-Partner-Webhook-Sign"
        assert -60 <= rec["skew"] <= 5, "timestamp header is the real send time"
        assert rec["headers"]["X-Partner-Webhook-Event"] == "order.status_changed"
        assert rec["headers"]["Content-Type"] == "application/json"
    bodies = [json.loads(r["body"]) for r in rx.records]
    assert sorted(b["order"]["status"] for b in bodies) == ["DONE", "EXCHANGE", "PENDING"]
    for b in bodies:
        assert set(b) == {"event", "order", "ts"} and b["event"] == "order.status_changed"
        assert b["order"]["id"] == order["id"] and "token" not in b["order"]
        assert b["ts"] == b["order"]["time"]["update"] * 1000 + b["ts"] % 1000
    # The receiver holds a body before the sandbox has read its answer and counted the delivery.
    wait_until(lambda: all(d["state"] == "delivered" for d in sb.control.deliveries("0trace")))
    stats = sb.control.stats()["webhooks"]
    assert stats["delivered"] == 3 and stats["failed_attempts"] == 0


def test_retries_resend_identical_bytes(zt: ZeroTrace, sb: RunningSandbox, receiver_factory: Any) -> None:
    rx = receiver_factory("0trace", SANDBOX_ZEROTRACE_WEBHOOK_SECRET, statuses=[500, 302])
    sb.control.set_webhooks(zerotrace_webhook_url=rx.url, zerotrace_webhook_schedule=[0.01, 0.01, 0.01])
    sb.control.patch_config(zerotrace_scenario="manual")
    order = zt.create()
    sb.control.drive_zerotrace(order["id"], "PENDING")
    wait_until(lambda: len(rx.records) == 3)
    assert len({r["body"] for r in rx.records}) == 1 and all(r["verified"] for r in rx.records)
    (delivery,) = wait_until(
        lambda: [d for d in sb.control.deliveries("0trace") if d["state"] == "delivered"]
    )
    assert [a["http_status"] for a in delivery["attempts"]] == [500, 302, 200]
    assert delivery["body"].encode() == rx.records[0]["body"]
    stats = sb.control.stats()["webhooks"]
    assert stats["attempts"] == 3 and stats["failed_attempts"] == 2 and stats["delivered"] == 1


def test_gives_up_after_the_schedule(zt: ZeroTrace, sb: RunningSandbox, receiver_factory: Any) -> None:
    rx = receiver_factory("0trace", SANDBOX_ZEROTRACE_WEBHOOK_SECRET, default_status=503)
    sb.control.set_webhooks(zerotrace_webhook_url=rx.url, zerotrace_webhook_schedule=[0.01, 0.01])
    sb.control.patch_config(zerotrace_scenario="manual")
    order = zt.create()
    sb.control.drive_zerotrace(order["id"], "PENDING")
    wait_until(lambda: sb.control.stats()["webhooks"]["gave_up"] == 1)
    assert len(rx.records) == 3


def test_slow_receiver_counts_as_failure(zt: ZeroTrace, sb: RunningSandbox, receiver_factory: Any) -> None:
    rx = receiver_factory("0trace", SANDBOX_ZEROTRACE_WEBHOOK_SECRET)
    rx.delay = 0.5
    sb.control.set_webhooks(zerotrace_webhook_url=rx.url, zerotrace_webhook_schedule=[], delivery_timeout=0.1)
    sb.control.patch_config(zerotrace_scenario="manual")
    order = zt.create()
    sb.control.drive_zerotrace(order["id"], "PENDING")
    (delivery,) = wait_until(
        lambda: [d for d in sb.control.deliveries() if d["state"] == "gave_up"], timeout=5
    )
    assert "Timeout" in delivery["attempts"][0]["error"]


def test_webhooks_use_the_rotated_secret(zt: ZeroTrace, sb: RunningSandbox, receiver_factory: Any) -> None:
    new = zt.call("/api/v1/keys/rotate", {"rotate": ["webhookSecret"]})[1]["data"]["webhookSecret"]
    rx = receiver_factory("0trace", new)
    sb.control.set_webhooks(zerotrace_webhook_url=rx.url)
    sb.control.patch_config(zerotrace_scenario="manual")
    order = zt.create()
    sb.control.drive_zerotrace(order["id"], "EXPIRED")
    wait_until(lambda: rx.records)
    assert rx.records[0]["verified"]


def test_no_url_records_skipped(zt: ZeroTrace, sb: RunningSandbox) -> None:
    order = zt.create()
    sb.control.drive_zerotrace(order["id"], "PENDING")
    (delivery,) = sb.control.deliveries()
    assert delivery["state"] == "skipped" and json.loads(delivery["body"])["order"]["status"] == "PENDING"


def test_itrx_callback_signed_over_timestamp_and_exact_body(
    itrx: Itrx, sb: RunningSandbox, receiver_factory: Any
) -> None:
    rx = receiver_factory("itrx", SANDBOX_ITRX_API_SECRET)
    r = itrx.order(callback_url=rx.url, out_trade_no="cb-1")
    serial = r.json()["serial"]
    sb.control.advance(6)  # 20 -> 30 -> 40; the callback fires on success (40) only
    wait_until(lambda: rx.records)
    (rec,) = rx.records
    assert rec["verified"], "openssl HMAC of TIMESTAMP&body must equal SIGNATURE"
    assert abs(rec["skew"]) <= 5
    body = json.loads(rec["body"])
    assert canonical_json(body) == rec["body"], "sent bytes are the compact, sorted, ASCII form"
    assert body["serial"] == body["order_no"] == serial and body["out_trade_no"] == "cb-1"
    assert body["status"] == 40 and "errno" not in body
    assert sb.control.stats()["callbacks"]["delivered"] == 1


def test_itrx_callback_retries_on_non_200(itrx: Itrx, sb: RunningSandbox, receiver_factory: Any) -> None:
    rx = receiver_factory("itrx", SANDBOX_ITRX_API_SECRET, statuses=[204, 500])
    sb.control.set_webhooks(itrx_callback_schedule=[0.01, 0.01, 0.01])
    serial = itrx.order(callback_url=rx.url).json()["serial"]
    sb.control.advance(6)
    wait_until(lambda: len(rx.records) == 3)
    assert len({r["body"] for r in rx.records}) == 1 and all(r["verified"] for r in rx.records)
    (delivery,) = wait_until(
        lambda: [d for d in sb.control.deliveries("itrx", serial) if d["state"] == "delivered"]
    )
    assert [a["http_status"] for a in delivery["attempts"]] == [204, 500, 200]


def test_itrx_default_ladder_is_documented_and_scaled(sb: RunningSandbox) -> None:
    assert sb.control.config()["itrx_callback_schedule"] == [15, 15, 30, 180, 600, 1200, 1800]


def test_itrx_account_default_url_and_every_mode(
    itrx: Itrx, sb: RunningSandbox, receiver_factory: Any
) -> None:
    rx = receiver_factory("itrx", SANDBOX_ITRX_API_SECRET)
    sb.control.set_webhooks(itrx_default_callback_url=rx.url, itrx_callback_on="every")
    itrx.post("/order", {"energy_amount": 65000, "period": "1D", "receive_address": TRON_OK})
    sb.control.advance(6)
    wait_until(lambda: len(rx.records) == 2)
    assert sorted(json.loads(r["body"])["status"] for r in rx.records) == [30, 40]
    assert all(json.loads(r["body"])["out_trade_no"] is None for r in rx.records)
