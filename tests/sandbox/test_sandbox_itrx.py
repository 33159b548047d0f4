"""itrx simulator: signing, timestamp window, validation, balance, non-idempotency, queries, lifecycle."""

from __future__ import annotations

import json
import time

import pytest
from order_worker_sandbox.addresses import b58decode, b58encode, tron_address_from_seed
from order_worker_sandbox.testing import RunningSandbox

from tests.sandbox.conftest import TRON_OK, Itrx

ORDER = {"energy_amount": 65000, "period": "1H", "receive_address": TRON_OK}


def test_order_success_draws_the_balance(itrx: Itrx, sb: RunningSandbox) -> None:
    before = itrx.get("/index-data").json()["balance"]
    r = itrx.order(out_trade_no="ot-1")
    out = r.json()
    assert r.status_code == 200 and out["errno"] == 0 and len(out["serial"]) == 32
    assert out["amount"] > 0 and out["balance"] == before - out["amount"]
    assert itrx.get("/index-data").json()["balance"] == out["balance"]
    ledger = sb.control.orders("itrx")
    assert [(o["serial"], o["out_trade_no"], o["status"]) for o in ledger] == [(out["serial"], "ot-1", 20)]


def test_missing_headers_unknown_key_bad_signature(itrx: Itrx, sb: RunningSandbox) -> None:
    for header in ("TIMESTAMP", "SIGNATURE"):
        r = itrx.post("/order", ORDER, omit=(header,))
        assert r.status_code == 400 and "detail" in r.json()
    r = itrx.post("/order", ORDER, omit=("API-KEY",))
    assert (r.status_code, r.json()) == (400, {"detail": "API not found"})
    r = itrx.post("/order", ORDER, secret="0" * 64)
    assert r.status_code == 400 and r.json() == {"detail": "Signature verification failed"}
    assert sb.control.stats()["signature_failures"]["itrx"] == 1
    assert sb.control.orders() == []


@pytest.mark.parametrize(
    ("offset", "ok"), [(-299, True), (299, True), (-301, False), (301, False), (-900, False)]
)
def test_timestamp_window(itrx: Itrx, sb: RunningSandbox, offset: int, ok: bool) -> None:
    r = itrx.post("/order", ORDER, ts=int(time.time()) + offset)
    if ok:
        assert r.json()["errno"] == 0
    else:
        assert (r.status_code, r.json()) == (400, {"detail": "Timestamp expired"})


def test_timestamp_tolerance_is_configurable(itrx: Itrx, sb: RunningSandbox) -> None:
    sb.control.patch_config(itrx_timestamp_tolerance=10)
    assert itrx.post("/order", ORDER, ts=int(time.time()) - 60).status_code == 400
    assert itrx.post("/order", ORDER, ts=1686796826).json() == {"detail": "Timestamp expired"}


def test_millisecond_timestamp_is_refused(itrx: Itrx) -> None:
    assert itrx.post("/order", ORDER, ts=int(time.time() * 1000)).status_code == 400


def test_raw_body_is_what_is_verified(itrx: Itrx, sb: RunningSandbox) -> None:
    pretty = json.dumps(ORDER, indent=2).encode()  # not canonical, but signed as sent: accepted in raw mode
    assert itrx.post("/order", pretty).json()["errno"] == 0
    canonical = json.dumps(ORDER, sort_keys=True, separators=(",", ":")).encode()
    r = itrx.post("/order", pretty, sign_body=canonical)  # signed canonical, sent pretty
    assert r.status_code == 400
    sb.control.patch_config(itrx_signature_mode="raw_or_canonical")
    assert itrx.post("/order", pretty, sign_body=canonical).json()["errno"] == 0
    sb.control.patch_config(itrx_signature_mode="strict_canonical")
    assert itrx.post("/order", pretty).status_code == 400
    assert itrx.post("/order", canonical).json()["errno"] == 0
    assert sb.control.stats()["itrx_signature_forms"] == {"raw": 2, "canonical": 1}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"energy_amount": 31999}, "energy_amount"),
        ({"energy_amount": 100_000_001}, "energy_amount"),
        ({"energy_amount": "65000"}, "energy_amount"),
        ({"energy_amount": 65000.0}, "energy_amount"),
        ({"energy_amount": True}, "energy_amount"),
        ({"period": "2W"}, "period"),
        ({"period": "1h"}, "period"),
        ({"period": 1}, "period"),
        ({"receive_address": TRON_OK[:-1] + ("x" if TRON_OK[-1] != "x" else "y")}, "receive_address"),
        ({"receive_address": "TXyzExampleRecipientAddress0001"}, "receive_address"),
        ({"receive_address": "0x52908400098527886E0F7030069857D2E4169EE7"}, "receive_address"),
        ({"active": "1"}, "active"),
        ({"exclusive": 2}, "exclusive"),
        ({"callback_url": "not a url"}, "callback_url"),
        ({"callback_url": None}, "callback_url"),
        ({"out_trade_no": 123456}, "out_trade_no"),
        ({"out_trade_no": "x" * 65}, "out_trade_no"),
        ({"out_trade_no": ""}, "out_trade_no"),
    ],
)
def test_field_validation_is_a_400_field_map(
    itrx: Itrx, sb: RunningSandbox, change: dict[str, object], field: str
) -> None:
    r = itrx.order(**change)
    assert r.status_code == 400
    body = r.json()
    assert (
        list(body) == [field]
        and isinstance(body[field], list)
        and all(isinstance(m, str) for m in body[field])
    )
    assert sb.control.orders() == []


def test_missing_fields_all_reported(itrx: Itrx) -> None:
    r = itrx.post("/order", {})
    assert r.status_code == 400
    assert r.json() == {
        "energy_amount": ["This field is required."],
        "period": ["This field is required."],
        "receive_address": ["This field is required."],
    }


def test_non_object_body_and_content_type(itrx: Itrx) -> None:
    assert itrx.post("/order", b"[1]").status_code == 400
    r = itrx.http.post(itrx.base_url + "/order", data=b"{}", headers={"API-KEY": itrx.key}, timeout=10)
    assert r.status_code == 400 and "detail" in r.json()


def test_tron_base58check() -> None:
    from order_worker_sandbox.addresses import is_tron_address

    assert is_tron_address(TRON_OK)
    raw = b58decode(TRON_OK)
    assert raw is not None and raw[0] == 0x41 and len(raw) == 25
    assert not is_tron_address(b58encode(bytes([0x42]) + raw[1:]))  # wrong version byte (and checksum)
    assert not is_tron_address(b58encode(raw[:21] + bytes([raw[21] ^ 1]) + raw[22:]))  # broken checksum
    assert is_tron_address(tron_address_from_seed(b"anything"))


def test_duplicate_out_trade_no_makes_two_orders(itrx: Itrx, sb: RunningSandbox) -> None:
    first = itrx.order(out_trade_no="same-ref").json()
    second = itrx.order(out_trade_no="same-ref").json()
    assert first["errno"] == second["errno"] == 0 and first["serial"] != second["serial"]
    assert second["balance"] == first["balance"] - second["amount"], "charged twice, like the real API"
    assert [o["out_trade_no"] for o in sb.control.orders("itrx")] == ["same-ref", "same-ref"]


def test_strict_mode_refuses_duplicate_out_trade_no(itrx: Itrx, sb: RunningSandbox) -> None:
    sb.control.patch_config(itrx_strict_out_trade_no=True)
    assert itrx.order(out_trade_no="same-ref").json()["errno"] == 0
    r = itrx.order(out_trade_no="same-ref")
    assert r.status_code == 200 and r.json()["errno"] == 1 and r.json()["message"]
    assert len(sb.control.orders("itrx")) == 1


def test_insufficient_balance_is_errno_1(itrx: Itrx, sb: RunningSandbox) -> None:
    sb.control.patch_config(itrx_balance_sun=1_000_000)
    r = itrx.order()
    assert (r.status_code, r.json()) == (200, {"errno": 1, "message": "Insufficient balance"})
    assert sb.control.orders() == []


def test_unactivated_address_needs_active(itrx: Itrx, sb: RunningSandbox) -> None:
    sb.control.patch_config(itrx_unactivated_addresses=[TRON_OK])
    refused = itrx.order().json()
    assert refused["errno"] == 1 and "activated" in refused["message"] and sb.control.orders() == []
    activated = itrx.order(active=1).json()
    assert activated["errno"] == 0
    normal = itrx.order().json()
    assert activated["amount"] - normal["amount"] == 1_500_000


def test_query_and_unknown_serial(itrx: Itrx) -> None:
    serial = itrx.order(out_trade_no="q-1").json()["serial"]
    q = itrx.get("/order/query", {"serial": serial}).json()
    assert q["errno"] == 0 and q["order_no"] == serial and q["status"] == 20
    assert q["period"] == 0 and q["energy_amount"] == 65000 and q["refund_amount"] == 0
    assert q["create_time"].endswith("+08:00") and "out_trade_no" not in q
    assert itrx.get("/order/query", {"serial": "0" * 32}).json() == {
        "errno": 404,
        "message": "Order not found",
    }
    assert itrx.get("/order/query", {"serial": serial}, key="wrong").status_code == 400


def test_auto_progression_and_details(itrx: Itrx, sb: RunningSandbox) -> None:
    serial = itrx.order().json()["serial"]
    sb.control.advance(3)
    assert itrx.get("/order/query", {"serial": serial}).json()["status"] == 30
    sb.control.advance(3)
    q = itrx.get("/order/query", {"serial": serial}).json()
    assert q["status"] == 40 and q["pay_amount"] == 65000.0
    (detail,) = q["details"]
    assert (
        detail["status"] == 20
        and len(detail["delegate_hash"]) == 64
        and detail["delegate_time"].endswith("Z")
    )
    sb.control.advance(3600)
    (detail,) = itrx.get("/order/query", {"serial": serial}).json()["details"]
    assert detail["status"] == 30 and detail["reclaim_time_real"] and detail["reclaim_hash"]


@pytest.mark.parametrize(
    ("scenario", "path"), [("fail", [20, 30, 32, 43]), ("refund", [20, 30, 41]), ("manual", [20])]
)
def test_scenarios(itrx: Itrx, sb: RunningSandbox, scenario: str, path: list[int]) -> None:
    sb.control.patch_config(itrx_scenario=scenario)
    before = itrx.get("/index-data").json()["balance"]
    serial = itrx.order().json()["serial"]
    sb.control.advance(100)
    (entry,) = sb.control.orders("itrx")
    assert [h["status"] for h in entry["history"]] == path
    if scenario == "refund":
        q = itrx.get("/order/query", {"serial": serial}).json()
        assert q["refund_amount"] == q["amount"]
        assert itrx.get("/index-data").json()["balance"] == before


def test_control_drive_any_code(itrx: Itrx, sb: RunningSandbox) -> None:
    sb.control.patch_config(itrx_scenario="manual")
    serial = itrx.order().json()["serial"]
    assert sb.control.drive_itrx(serial, 31)["status"] == 31
    assert itrx.get("/order/query", {"serial": serial}).json()["pay_amount"] == 32500.0
    out = sb.control.drive_itrx(serial, 41, refund_amount=1000)
    assert out["refund_amount"] == 1000
    with pytest.raises(Exception, match="status"):
        sb.control.drive_itrx(serial, 42)


def test_price_index_data_summary(itrx: Itrx) -> None:
    price = itrx.get("/order/price", {"period": "1D", "energy_amount": 65000}).json()
    assert price == {
        "period": 1,
        "energy_amount": 65000,
        "price": 90,
        "total_price": 65000 * 90,
        "addition": 0,
    }
    small = itrx.get("/order/price", {"period": "3D", "energy_amount": 32000}).json()
    assert small["addition"] == 600_000 and small["total_price"] == 32000 * 80 * 3 + 600_000
    assert itrx.get("/order/price", {"period": "2W"}).status_code == 400
    assert itrx.get("/order/price", {"period": "1H", "energy_amount": "abc"}).status_code == 400
    assert itrx.get("/order/price", {"period": "1H", "to_address": TRON_OK}).json()["energy_amount"] == 65000
    index = itrx.get("/index-data").json()
    assert index["minimum_order_energy"] == 32000 and index["maximum_order_energy"] == 100_000_000
    assert itrx.get("/index-data", key="wrong").json() == {}, "documented: a wrong key gives empty data"
    itrx.order()
    summary = itrx.get("/userapi/summary").json()
    assert summary["total_count"] == 1 and summary["today_count"] == 1 and summary["name"] == "sandbox"
    assert itrx.get("/userapi/summary", key="wrong").status_code == 403


def test_reclaim(itrx: Itrx, sb: RunningSandbox) -> None:
    serial = itrx.order().json()["serial"]
    sb.control.advance(6)
    assert itrx.post("/order/reclaim", {"serial": serial}).json() == {"errno": 0, "message": "request accept"}
    (detail,) = itrx.get("/order/query", {"serial": serial}).json()["details"]
    assert detail["status"] == 30
    assert itrx.post("/order/reclaim", {"serial": "f" * 32}).json()["errno"] == 404
