"""0trace orders: validation, idempotency, tokens, lifecycle, emergency, QR, keys and codes."""

from __future__ import annotations

import base64
import re
import struct
import zlib

import pytest
from order_worker_sandbox.testing import RunningSandbox, wait_until

from tests.sandbox.conftest import CREATE, ZeroTrace, compact

PRICE = {"type": "float", "fromCcy": "btc", "toCcy": "usdt_trc20", "direction": "from", "amount": "0.01"}
INVALID = (400, {"code": 1, "msg": "INVALID_REQUEST"})
NOT_FOUND = (404, {"code": 6, "msg": "NOT_FOUND"})


def test_create_returns_the_documented_dto(zt: ZeroTrace, sb: RunningSandbox) -> None:
    order = zt.create()
    assert re.fullmatch(r"[0-9a-f-]{36}", order["id"])
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", order["token"])
    assert order["type"] == "float" and order["status"] == "NEW"
    t = order["time"]
    assert t["expiration"] == t["reg"] + 1800 and t["update"] == t["reg"] and t["finish"] is None
    assert 1798 <= t["left"] <= 1800
    assert order["from"]["code"] == "btc" and order["from"]["network"] == "Bitcoin"
    assert order["from"]["amount"] == "0.01000000" and order["from"]["tx"] == {"id": None, "amount": None}
    assert order["to"]["address"] == CREATE["toAddress"] and order["to"]["tx"] == {"id": None, "amount": None}
    assert order["back"] == {"address": CREATE["refundAddress"], "tx": {"id": None}}
    assert order["emergency"] == {"status": [], "choice": "NONE"}
    for money in (order["from"]["amount"], order["to"]["amount"], order["rate"], order["networkFee"]):
        assert isinstance(money, str) and float(money) > 0
    assert order["markupBps"] == 0
    ledger = sb.control.orders("0trace")
    assert [o["id"] for o in ledger] == [order["id"]] and ledger[0]["status"] == "NEW"


def test_token_is_stored_only_as_a_hash(zt: ZeroTrace, sb: RunningSandbox) -> None:
    order = zt.create()
    everything = (
        str(sb.control.orders()) + str(sb.control.order("0trace", order["id"])) + str(sb.control.config())
    )
    assert order["token"] not in everything


def test_order_lookup_and_not_found_cases(zt: ZeroTrace) -> None:
    order = zt.create()
    status, out = zt.call("/api/v1/order", {"id": order["id"], "token": order["token"]})
    assert status == 200 and out["data"]["id"] == order["id"] and "token" not in out["data"]
    wrong = order["token"][:-1] + ("A" if order["token"][-1] != "A" else "B")
    assert zt.call("/api/v1/order", {"id": order["id"], "token": wrong}) == NOT_FOUND
    assert zt.call("/api/v1/order", {"id": order["id"], "token": order["token"][:42]}) == NOT_FOUND
    assert zt.call("/api/v1/order", {"id": order["id"], "token": "!" * 43}) == NOT_FOUND
    assert zt.call("/api/v1/order", {"id": order["id"]}) == NOT_FOUND
    assert (
        zt.call("/api/v1/order", {"id": "1f8c5e0b-9c92-4d6a-b0a8-3c5f8d6e7a4b", "token": order["token"]})
        == NOT_FOUND
    )
    for path in ("/api/v1/qr", "/api/v1/emergency"):
        assert zt.call(path, {"id": order["id"], "token": wrong, "choice": "EXCHANGE"}) == NOT_FOUND


@pytest.mark.parametrize(
    "change",
    [
        {"fromCcy": "doge"},
        {"toCcy": "btc", "fromCcy": "btc"},
        {"type": "fixed"},
        {"direction": "FROM"},
        {"amount": "0"},
        {"amount": "-1"},
        {"amount": "abc"},
        {"amount": "1e3"},
        {"amount": True},
        {"amount": None},
        {"amount": "100"},  # 100 BTC is far above the $5000 ceiling
        {"amount": "0.00000001"},  # below the $1 floor
        {"toAddress": "T12345678"},  # 9 chars
        {"toAddress": "T" + "a" * 200},  # 201 chars
        {"toAddress": "0x52908400098527886E0F7030069857D2E4169EE7"},  # an Ethereum address for Tron
        {"refundAddress": None},
        {"refundAddress": "TXyzExampleRecipientAddress0001"},  # not a Bitcoin address
        {"afftax": 2001},
        {"afftax": -1},
        {"afftax": "50"},
        {"afftax": 50.5},
        {"fromNetwork": "Ethereum"},
        {"tag": 5},
    ],
)
def test_create_validation(zt: ZeroTrace, sb: RunningSandbox, change: dict[str, object]) -> None:
    body = {**CREATE, **change}
    body = {k: v for k, v in body.items() if not (k == "refundAddress" and v is None)}
    assert zt.call("/api/v1/create", body) == INVALID
    assert sb.control.orders() == []


def test_body_must_be_a_json_object_with_json_content_type(zt: ZeroTrace) -> None:
    assert zt.call("/api/v1/create", b"not json") == INVALID
    assert zt.call("/api/v1/create", b"[1,2]") == INVALID
    assert zt.call("/api/v1/create", compact(CREATE), headers={"Content-Type": "text/plain"}) == INVALID


def test_price_validation_and_bounds(zt: ZeroTrace) -> None:
    assert zt.call("/api/v1/price", {**PRICE, "direction": "sideways"}) == INVALID
    status, out = zt.call("/api/v1/price", {**PRICE, "amount": "1"})
    assert status == 200 and out["data"]["errors"] == ["AMOUNT_TOO_HIGH"]
    status, out = zt.call("/api/v1/price", {**PRICE, "direction": "to", "amount": "600"})
    data = out["data"]
    assert status == 200 and data["to"]["amount"] == "600.000000" and data["errors"] == []
    assert float(data["from"]["amount"]) * float(data["from"]["rate"]) - 1.2 >= 600


@pytest.mark.parametrize("amount", ["0.01", 0.01])
def test_amount_as_string_or_number(zt: ZeroTrace, amount: object) -> None:
    assert zt.call("/api/v1/price", {**PRICE, "amount": amount})[1]["data"]["from"]["amount"] == "0.01000000"


def test_markup_resolution_body_over_code_over_default(zt: ZeroTrace, sb: RunningSandbox) -> None:
    sb.control.patch_config(zerotrace_markup_bps=25)
    assert zt.call("/api/v1/codes", {"code": "camp-1", "afftaxBps": 120})[0] == 200
    assert zt.call("/api/v1/codes", {"code": "camp-0"})[0] == 200  # afftaxBps 0 -> partner default
    coded = zt.key + ".camp-1"
    assert zt.create()["markupBps"] == 25
    assert zt.call("/api/v1/price", PRICE, key=coded)[1]["data"]["markupBps"] == 120
    assert zt.call("/api/v1/price", {**PRICE, "afftax": 7}, key=coded)[1]["data"]["markupBps"] == 7
    assert zt.call("/api/v1/price", PRICE, key=zt.key + ".camp-0")[1]["data"]["markupBps"] == 25
    order = zt.call("/api/v1/create", {**CREATE, "afftax": 0}, key=coded)[1]["data"]
    assert order["markupBps"] == 0
    assert [o["code"] for o in sb.control.orders()] == [None, "camp-1"]
    base = zt.call("/api/v1/price", {**PRICE, "afftax": 0})[1]["data"]
    marked = zt.call("/api/v1/price", {**PRICE, "afftax": 2000})[1]["data"]
    assert float(marked["to"]["amount"]) < float(base["to"]["amount"])


# --- idempotency ------------------------------------------------------------------------------------


def test_idempotent_replay_returns_same_order_without_token(zt: ZeroTrace, sb: RunningSandbox) -> None:
    first = zt.create(idem="key-00000001")
    again = zt.create(idem="key-00000001")
    assert again["id"] == first["id"] and again["token"] is None and first["token"]
    assert {k: v for k, v in again.items() if k not in ("token", "time")} == {
        k: v for k, v in first.items() if k not in ("token", "time")
    }
    assert len(sb.control.orders()) == 1
    other = zt.create(idem="key-00000002")
    assert other["id"] != first["id"] and len(sb.control.orders()) == 2


def test_idempotency_key_with_another_body_is_409(zt: ZeroTrace, sb: RunningSandbox) -> None:
    zt.create(idem="key-00000001")
    status, out = zt.call(
        "/api/v1/create", {**CREATE, "amount": "0.02"}, headers={"Idempotency-Key": "key-00000001"}
    )
    assert (status, out) == (409, {"code": 1, "msg": "INVALID_REQUEST"})
    # byte comparison: the same JSON re-serialised with spaces is "another body" (strict choice)
    spaced = b'{"type": "float"' + compact(CREATE)[len(b'{"type":"float"') :]
    assert zt.call("/api/v1/create", spaced, headers={"Idempotency-Key": "key-00000001"})[0] == 409
    assert len(sb.control.orders()) == 1


def test_idempotency_json_comparison_mode(zt: ZeroTrace, sb: RunningSandbox) -> None:
    sb.control.patch_config(zerotrace_idempotency_compare="json")
    first = zt.create(idem="key-00000001")
    spaced = b'{"type": "float"' + compact(CREATE)[len(b'{"type":"float"') :]
    status, out = zt.call("/api/v1/create", spaced, headers={"Idempotency-Key": "key-00000001"})
    assert status == 200 and out["data"]["id"] == first["id"] and out["data"]["token"] is None


@pytest.mark.parametrize(
    ("key", "ok"), [("k" * 7, False), ("k" * 8, True), ("k" * 128, True), ("k" * 129, False)]
)
def test_idempotency_key_length(zt: ZeroTrace, sb: RunningSandbox, key: str, ok: bool) -> None:
    status, out = zt.call("/api/v1/create", CREATE, headers={"Idempotency-Key": key})
    if ok:
        assert status == 200 and out["data"]["token"]
    else:
        assert (status, out) == INVALID and sb.control.orders() == []


def test_failed_first_attempt_is_not_remembered(zt: ZeroTrace) -> None:
    assert (
        zt.call("/api/v1/create", {**CREATE, "amount": "0"}, headers={"Idempotency-Key": "key-00000009"})
        == INVALID
    )
    assert zt.create(idem="key-00000009")["token"]


# --- lifecycle ---------------------------------------------------------------------------------------


def _status(zt: ZeroTrace, order: dict[str, str]) -> str:
    return str(zt.call("/api/v1/order", {"id": order["id"], "token": order["token"]})[1]["data"]["status"])


def test_auto_lifecycle_on_sandbox_time(zt: ZeroTrace, sb: RunningSandbox) -> None:
    order = zt.create()
    sb.control.advance(29)
    assert _status(zt, order) == "NEW"
    sb.control.advance(1)
    assert _status(zt, order) == "PENDING"
    sb.control.advance(60)
    assert _status(zt, order) == "EXCHANGE"
    sb.control.advance(30)
    out = zt.call("/api/v1/order", {"id": order["id"], "token": order["token"]})[1]["data"]
    assert out["status"] == "DONE" and out["time"]["finish"] == out["time"]["update"]
    assert out["from"]["tx"]["id"] and out["from"]["tx"]["amount"] == out["from"]["amount"]
    assert out["to"]["tx"]["id"] and out["to"]["tx"]["amount"] == out["to"]["amount"]
    history = [h["status"] for h in sb.control.orders()[0]["history"]]
    assert history == ["NEW", "PENDING", "EXCHANGE", "DONE"]
    sb.control.advance(5000)
    assert _status(zt, order) == "DONE", "DONE is terminal"


def test_speed_factor_runs_the_lifecycle_in_real_time(zt: ZeroTrace, sb: RunningSandbox) -> None:
    sb.control.set_speed(600)  # 120 sandbox seconds of progression take 0.2 real seconds
    order = zt.create()
    wait_until(lambda: _status(zt, order) == "DONE", timeout=5)


def test_manual_order_expires_when_the_window_closes(zt: ZeroTrace, sb: RunningSandbox) -> None:
    sb.control.patch_config(zerotrace_scenario="manual")
    order = zt.create()
    sb.control.advance(1799)
    assert _status(zt, order) == "NEW"
    sb.control.advance(1)
    out = zt.call("/api/v1/order", {"id": order["id"], "token": order["token"]})[1]["data"]
    assert out["status"] == "EXPIRED" and out["time"]["left"] == 0


def test_deposit_window_is_configurable(zt: ZeroTrace, sb: RunningSandbox) -> None:
    sb.control.patch_config(zerotrace_scenario="manual", zerotrace_deposit_window=60)
    order = zt.create()
    assert order["time"]["expiration"] == order["time"]["reg"] + 60
    sb.control.advance(60)
    assert _status(zt, order) == "EXPIRED"


def test_control_drive_walks_each_status(zt: ZeroTrace, sb: RunningSandbox) -> None:
    sb.control.patch_config(zerotrace_scenario="manual")
    order = zt.create()
    out = sb.control.drive_zerotrace(order["id"], "DONE")
    assert out["path"] == ["PENDING", "EXCHANGE", "DONE"] and out["status"] == "DONE"
    with pytest.raises(Exception, match="terminal"):
        sb.control.drive_zerotrace(order["id"], "NEW")
    assert sb.control.drive_zerotrace(order["id"], "EXCHANGE", force=True)["path"] == ["EXCHANGE"]
    second = zt.create()
    assert sb.control.drive_zerotrace(second["id"], "DONE", direct=True)["path"] == ["DONE"]


def test_drive_cancels_auto_unless_resumed(zt: ZeroTrace, sb: RunningSandbox) -> None:
    order = zt.create()
    sb.control.drive_zerotrace(order["id"], "PENDING")
    sb.control.advance(1000)
    assert _status(zt, order) == "PENDING"
    sb.control.drive_zerotrace(order["id"], "PENDING", resume=True)  # no change, but re-arms the scenario
    sb.control.advance(60)
    assert _status(zt, order) == "EXCHANGE"


def test_emergency_flow(zt: ZeroTrace, sb: RunningSandbox) -> None:
    order = zt.create()
    ref = {"id": order["id"], "token": order["token"]}
    assert zt.call("/api/v1/emergency", {**ref, "choice": "EXCHANGE"}) == INVALID, "not in EMERGENCY"
    assert sb.control.drive_zerotrace(order["id"], "EMERGENCY")["path"] == ["PENDING", "EMERGENCY"]
    data = zt.call("/api/v1/order", ref)[1]["data"]
    assert data["status"] == "EMERGENCY" and data["emergency"] == {"status": ["LIMIT"], "choice": "NONE"}
    for bad in ("exchange", "REFUND", None):
        assert zt.call("/api/v1/emergency", {**ref, "choice": bad}) == (
            400,
            {"code": 12, "msg": "EMERGENCY_INVALID_CHOICE"},
        )
    assert zt.call("/api/v1/emergency", {**ref, "choice": "EXCHANGE"}) == (
        200,
        {"code": 0, "msg": "", "data": True},
    )
    data = zt.call("/api/v1/order", ref)[1]["data"]
    assert data["status"] == "EMERGENCY" and data["emergency"]["choice"] == "EXCHANGE"
    sb.control.advance(5)
    data = zt.call("/api/v1/order", ref)[1]["data"]
    assert data["status"] == "EXCHANGE" and data["emergency"] == {"status": [], "choice": "NONE"}
    sb.control.advance(30)
    assert _status(zt, order) == "DONE"


def test_emergency_resolved_by_operator_expires(zt: ZeroTrace, sb: RunningSandbox) -> None:
    sb.control.patch_config(zerotrace_scenario="emergency")
    order = zt.create()
    sb.control.advance(90)
    assert _status(zt, order) == "EMERGENCY"
    sb.control.drive_zerotrace(order["id"], "EXPIRED", refund=True)
    data = zt.call("/api/v1/order", {"id": order["id"], "token": order["token"]})[1]["data"]
    assert data["status"] == "EXPIRED" and data["back"]["tx"]["id"]


def test_qr_is_a_256px_png(zt: ZeroTrace, sb: RunningSandbox) -> None:
    order = zt.create()
    status, out = zt.call("/api/v1/qr", {"id": order["id"], "token": order["token"]})
    assert status == 200
    url = out["data"]["qrPng"]
    assert url.startswith("data:image/png;base64,")
    png = base64.b64decode(url.split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (256, 256)
    at = png.index(b"IDAT")
    (length,) = struct.unpack(">I", png[at - 4 : at])
    pixels = zlib.decompress(png[at + 4 : at + 4 + length])
    assert len(pixels) == 256 * (1 + 256)  # 8-bit greyscale, one filter byte per row
    assert {0, 255} == set(pixels[1:257]) | set(pixels[257 * 128 + 1 : 257 * 129])  # dark and light modules
    assert zt.call("/api/v1/qr", {"id": order["id"], "token": order["token"]})[1]["data"]["qrPng"] == url


def test_qr_weighs_5(zt: ZeroTrace, sb: RunningSandbox) -> None:
    order = zt.create()
    sb.control.patch_config(zerotrace_rate_limit_weight=60)  # create used 50
    ref = {"id": order["id"], "token": order["token"]}
    assert zt.call("/api/v1/qr", ref)[0] == 200
    assert zt.call("/api/v1/qr", ref)[0] == 200
    assert zt.call("/api/v1/qr", ref)[0] == 429


# --- keys and codes ----------------------------------------------------------------------------------


def test_rotate_api_secret(zt: ZeroTrace, sb: RunningSandbox) -> None:
    status, out = zt.call("/api/v1/keys/rotate", {"rotate": ["apiSecret"]})
    assert status == 200 and set(out["data"]) == {"apiSecret"}
    new = out["data"]["apiSecret"]
    assert zt.call("/api/v1/price", PRICE)[1]["code"] == 3, "the old secret dies immediately"
    assert zt.call("/api/v1/price", PRICE, secret=new)[0] == 200
    assert sb.control.config()["current_credentials"]["zerotrace_api_secret"] == new


@pytest.mark.parametrize(
    "body",
    [
        {"rotate": []},
        {"rotate": ["apiKey"]},
        {"rotate": ["apiSecret", "apiSecret"]},
        {"rotate": "apiSecret"},
        {},
    ],
)
def test_rotate_validation(zt: ZeroTrace, body: dict[str, object]) -> None:
    assert zt.call("/api/v1/keys/rotate", body) == INVALID


def test_codes_crud(zt: ZeroTrace) -> None:
    assert zt.call("/api/v1/codes", b"", method="GET") == (200, {"code": 0, "msg": "", "data": []})
    assert (
        zt.call("/api/v1/codes", {"code": "desk", "label": "  ", "afftaxBps": 10})[1]["data"]["label"] is None
    )
    assert zt.call("/api/v1/codes", {"code": "widget", "label": "W"})[0] == 200
    listed = zt.call("/api/v1/codes", b"", method="GET")[1]["data"]
    assert [c["code"] for c in listed] == ["widget", "desk"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", listed[0]["createdAt"])
    for bad in (
        {"code": "abc"},
        {"code": "has.dot"},
        {"code": "desk"},
        {"code": "okcode", "afftaxBps": 2001},
    ):
        assert zt.call("/api/v1/codes", bad) == INVALID
    assert zt.call("/api/v1/codes", b'{"code":"desk"}', method="DELETE") == (
        200,
        {"code": 0, "msg": "", "data": True},
    )
    assert zt.call("/api/v1/codes", b'{"code":"desk"}', method="DELETE") == NOT_FOUND


def test_code_cap(zt: ZeroTrace, sb: RunningSandbox) -> None:
    sb.control.patch_config(zerotrace_max_codes=2)
    assert zt.call("/api/v1/codes", {"code": "c-one"})[0] == 200
    assert zt.call("/api/v1/codes", {"code": "c-two"})[0] == 200
    assert zt.call("/api/v1/codes", {"code": "c-three"}) == INVALID


def test_catalog(zt: ZeroTrace, sb: RunningSandbox) -> None:
    status, out = zt.call("/api/v1/currencies", {})
    codes = {a["code"]: a for a in out["data"]}
    assert status == 200 and {"btc", "eth", "ltc", "trx", "usdt_trc20", "usdt_erc20"} <= set(codes)
    assert codes["usdt_trc20"]["network"] == "Tron" and codes["usdt_erc20"]["network"] == "Ethereum"
    assert codes["btc"]["precision"] == 8 and codes["btc"]["recv"] is True
    r = zt.send("/api/v1/pairs", {})
    assert r.headers["Cache-Control"] == "no-store"
    pairs = r.json()["data"]
    assert {
        "from": "ltc",
        "to": "usdt_trc20",
        "fromNetwork": "Litecoin",
        "toNetwork": "Tron",
        "rateTypes": ["FLOAT"],
    } in pairs
    sb.control.set_asset("ltc", enabled=False)
    assert all("ltc" not in (p["from"], p["to"]) for p in zt.call("/api/v1/pairs", {})[1]["data"])
    assert zt.call("/api/v1/price", {**PRICE, "fromCcy": "ltc"}) == INVALID
