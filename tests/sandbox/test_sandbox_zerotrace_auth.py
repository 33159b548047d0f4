"""0trace authentication, nonces, rate limits: one negative test per documented rule."""

from __future__ import annotations

import secrets

import pytest
from order_worker_sandbox.testing import RunningSandbox, wait_until

from tests.sandbox.conftest import CREATE, ZeroTrace, compact

PRICE = {"type": "float", "fromCcy": "btc", "toCcy": "usdt_trc20", "direction": "from", "amount": "0.01"}


def test_signed_call_succeeds(zt: ZeroTrace) -> None:
    status, out = zt.call("/api/v1/price", PRICE)
    assert status == 200 and out["code"] == 0 and out["msg"] == ""


@pytest.mark.parametrize("missing", ["X-API-KEY", "X-API-SIGN"])
def test_missing_key_or_sign_is_code_2(zt: ZeroTrace, missing: str) -> None:
    assert zt.call("/api/v1/create", CREATE, omit=(missing,)) == (401, {"code": 2, "msg": "AUTH_REQUIRED"})


def test_missing_nonce_is_code_3_not_2(zt: ZeroTrace) -> None:
    assert zt.call("/api/v1/create", CREATE, omit=("X-API-NONCE",)) == (
        401,
        {"code": 3, "msg": "AUTH_INVALID"},
    )


def test_bad_signature_is_code_3(zt: ZeroTrace, sb: RunningSandbox) -> None:
    assert zt.call("/api/v1/order", {"id": "x", "token": "y"}, sign="0" * 64) == (
        401,
        {"code": 3, "msg": "AUTH_INVALID"},
    )
    assert sb.control.stats()["signature_failures"]["0trace"] == 1


def test_signature_of_other_body_other_secret_or_uppercase_is_code_3(zt: ZeroTrace) -> None:
    body = compact(PRICE)
    assert (
        zt.call("/api/v1/create", body, sign_body=body + b"\n")[1]["code"] == 3
    )  # the `echo` mistake (TV11)
    assert zt.call("/api/v1/create", body, secret="not-the-secret")[1]["code"] == 3
    sig = zt.send("/api/v1/price", body).request.headers["X-API-SIGN"]
    assert zt.call("/api/v1/price", body, sign=str(sig).upper())[1]["code"] == 3


def test_unknown_key_is_code_3(zt: ZeroTrace) -> None:
    assert zt.call("/api/v1/create", CREATE, key="nobody") == (401, {"code": 3, "msg": "AUTH_INVALID"})


def test_reused_nonce_is_code_3(zt: ZeroTrace) -> None:
    nonce = secrets.token_hex(16)
    assert zt.call("/api/v1/price", PRICE, nonce=nonce)[0] == 200
    assert zt.call("/api/v1/price", PRICE, nonce=nonce) == (401, {"code": 3, "msg": "AUTH_INVALID"})
    # a fresh nonce with the very same body and signature is fine: the signature covers only the body
    assert zt.call("/api/v1/price", PRICE)[0] == 200


def test_nonce_is_remembered_only_after_a_valid_signature(zt: ZeroTrace) -> None:
    nonce = secrets.token_hex(16)
    assert zt.call("/api/v1/price", PRICE, nonce=nonce, sign="f" * 64)[1]["code"] == 3
    assert zt.call("/api/v1/price", PRICE, nonce=nonce)[0] == 200


def test_nonce_expiry_is_configurable(zt: ZeroTrace, sb: RunningSandbox) -> None:
    sb.control.patch_config(zerotrace_nonce_ttl=0.2)
    nonce = secrets.token_hex(16)
    assert zt.call("/api/v1/price", PRICE, nonce=nonce)[0] == 200
    wait_until(lambda: zt.call("/api/v1/price", PRICE, nonce=nonce)[0] == 200, timeout=5, interval=0.05)


@pytest.mark.parametrize(
    ("nonce", "ok"),
    [
        ("a" * 15, False),
        ("a" * 16, True),
        ("b" * 64, True),
        ("c" * 65, False),
        ("123e4567-e89b-12d3-a456-426614174000", True),
        ("has space in it!!", False),
        ("", False),
    ],
)
def test_nonce_length_and_alphabet(zt: ZeroTrace, nonce: str, ok: bool) -> None:
    status, out = zt.call("/api/v1/price", PRICE, nonce=nonce)
    if ok:
        assert status == 200 and out["code"] == 0
    else:
        assert (status, out) == (401, {"code": 3, "msg": "AUTH_INVALID"})


def test_disabled_partner_is_code_4_only_with_valid_signature(zt: ZeroTrace, sb: RunningSandbox) -> None:
    sb.control.patch_config(zerotrace_partner_enabled=False)
    assert zt.call("/api/v1/create", CREATE) == (401, {"code": 4, "msg": "AUTH_DISABLED"})
    assert zt.call("/api/v1/create", CREATE, sign="0" * 64)[1]["code"] == 3


def test_optional_auth_endpoints(zt: ZeroTrace) -> None:
    status, out = zt.call("/api/v1/price", {**PRICE, "afftax": 300}, anonymous=True)
    assert status == 200 and out["data"]["markupBps"] == 0, "unsigned callers get the base rate"
    assert zt.call("/api/v1/currencies", b"", anonymous=True)[0] == 200
    # a half-signed request must authenticate fully (strict choice; undocumented)
    assert zt.call("/api/v1/price", PRICE, omit=("X-API-SIGN",))[1]["code"] == 2
    assert zt.call("/api/v1/pairs", {}, sign="0" * 64)[1]["code"] == 3


def test_auth_required_endpoints_refuse_anonymous(zt: ZeroTrace) -> None:
    for path in ("/api/v1/create", "/api/v1/order", "/api/v1/emergency", "/api/v1/qr", "/api/v1/keys/rotate"):
        assert zt.call(path, {}, anonymous=True) == (401, {"code": 2, "msg": "AUTH_REQUIRED"})


def test_rate_limit_weights_and_retry_after(zt: ZeroTrace, sb: RunningSandbox) -> None:
    sb.control.patch_config(zerotrace_rate_limit_weight=120, zerotrace_rate_limit_window=60)
    zt.create()
    zt.create()  # 100 of 120 used
    r = zt.send("/api/v1/create", CREATE)
    assert r.status_code == 429 and r.json() == {"code": 5, "msg": "RATE_LIMIT"}
    retry_after = int(r.headers["Retry-After"])
    assert 55 <= retry_after <= 60  # the first create leaves the window 60 s after it was accepted
    for _ in range(20):  # 20 more weight-1 calls fit exactly
        assert zt.call("/api/v1/price", PRICE)[0] == 200
    r = zt.send("/api/v1/price", PRICE)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert zt.call("/api/v1/price", PRICE, anonymous=True)[0] == 200, "unsigned quotes are never charged"
    stats = sb.control.stats()
    assert stats["rate_limited"]["total"] == 2
    assert stats["rate_limited"]["0trace.create"] == 1


def test_rate_limit_recovers_after_retry_after(zt: ZeroTrace, sb: RunningSandbox) -> None:
    sb.control.patch_config(zerotrace_rate_limit_weight=50, zerotrace_rate_limit_window=1.0)
    zt.create()
    r = zt.send("/api/v1/create", CREATE)
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    wait_until(lambda: zt.send("/api/v1/create", CREATE).status_code == 200, timeout=3, interval=0.1)


def test_request_heavier_than_budget_is_always_refused(zt: ZeroTrace, sb: RunningSandbox) -> None:
    sb.control.patch_config(zerotrace_rate_limit_weight=40)
    r = zt.send("/api/v1/create", CREATE)
    assert r.status_code == 429 and r.headers["Retry-After"] == "60"


def test_foreign_order_is_not_found(zt: ZeroTrace, sb: RunningSandbox) -> None:
    sb.control.patch_config(zerotrace_extra_partners=[["other-key", "other-secret-000000", "other-wh"]])
    order = zt.create()
    ref = {"id": order["id"], "token": order["token"]}
    assert zt.call("/api/v1/order", ref)[0] == 200
    assert zt.call("/api/v1/order", ref, key="other-key", secret="other-secret-000000") == (
        404,
        {"code": 6, "msg": "NOT_FOUND"},
    )


def test_reference_code_suffix(zt: ZeroTrace, sb: RunningSandbox) -> None:
    status, out = zt.call("/api/v1/codes", {"code": "widget-eu", "label": "EU widget", "afftaxBps": 120})
    assert status == 200 and out["data"]["code"] == "widget-eu" and out["data"]["enabled"] is True
    status, out = zt.call("/api/v1/price", PRICE, key=zt.key + ".widget-eu")
    assert status == 200 and out["data"]["markupBps"] == 120
    assert zt.call("/api/v1/price", PRICE, key=zt.key + ".nope")[1]["code"] == 3
    assert zt.call("/api/v1/price", PRICE, key=zt.key + ".")[1]["code"] == 3
    assert zt.call("/api/v1/codes/enable", {"code": "widget-eu", "enabled": False})[0] == 200
    assert zt.call("/api/v1/price", PRICE, key=zt.key + ".widget-eu")[1]["code"] == 3
    # codes are managed with the plain key only
    assert zt.call("/api/v1/codes", b"", method="GET", key=zt.key + ".widget-eu")[1]["code"] == 3
