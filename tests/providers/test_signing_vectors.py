"""Every test vector of both partner specs, plus the verification and time-window helpers."""

from __future__ import annotations

import hashlib
import hmac
import json
import re

import pytest
from pydantic import SecretStr

from worker.partners.itrx.signing import canonical_json, itrx_sign, itrx_timestamp_ok, verify_itrx_callback
from worker.partners.signing import new_nonce, timestamp_in_window
from worker.partners.zerotrace.client import compact_json
from worker.partners.zerotrace.params import ZeroTraceParams
from worker.partners.zerotrace.signing import sign_body, verify_zerotrace_webhook, zerotrace_timestamp_ok

# --- 0trace (spec §16) -----------------------------------------------------------------------------

API_SECRET = "test-api-secret-0123456789abcdef"
WEBHOOK_SECRET = "test-webhook-secret-fedcba9876543210"

TV1 = b'{"type":"float","fromCcy":"btc","toCcy":"usdt_trc20","direction":"from","amount":"0.01"}'
TV3 = (
    b'{"type":"float","fromCcy":"btc","toCcy":"usdt_trc20","direction":"from","amount":"0.01",'
    b'"toAddress":"TXyzExampleRecipientAddress0001","refundAddress":"bc1qexamplerefundaddress0000001"}'
)
TV4 = b'{"id":"1f8c5e0b-9c92-4d6a-b0a8-3c5f8d6e7a4b","token":"v8k3Po9xQ2mN7bL4cD1eF6gH0jK5lM8nP3qR9sT2uVw"}'
TV5 = (
    b'{"id":"1f8c5e0b-9c92-4d6a-b0a8-3c5f8d6e7a4b","token":"v8k3Po9xQ2mN7bL4cD1eF6gH0jK5lM8nP3qR9sT2uVw",'
    b'"choice":"EXCHANGE"}'
)
TV10 = (
    b'{"event":"order.status_changed","order":{"id":"1f8c5e0b-9c92-4d6a-b0a8-3c5f8d6e7a4b","type":"float",'
    b'"status":"PENDING","time":{"reg":1716800000,"expiration":1716801800,"left":1677,"update":1716800123,'
    b'"finish":null},"from":{"code":"btc","network":"Bitcoin","amount":"0.01000000",'
    b'"address":"bc1qexamplepayinaddress00000001","tx":{"id":"abcdef0123456789","amount":"0.01000000"}},'
    b'"to":{"code":"usdt_trc20","network":"Tron","amount":"619.987654",'
    b'"address":"TXyzExampleRecipientAddress0001","tx":{"id":null,"amount":null}},'
    b'"back":{"address":"bc1qexamplerefundaddress0000001","tx":{"id":null}},'
    b'"emergency":{"status":[],"choice":"NONE"},"rate":"62450.12345678","networkFee":"1.20","markupBps":50},'
    b'"ts":1716800123456}'
)
TV10_SIGN = "dedae6eeeaa43ffbb7f11a46fa27e4e02d07498e19c53e7ff52839d01502ae9d"

ZEROTRACE_VECTORS = [
    (
        "TV0",
        "Jefe",
        b"what do ya want for nothing?",
        28,
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    ),
    ("TV1", API_SECRET, TV1, 88, "54b0ef3cd3f3331828c92735ceb38aada251bc5e995bbf6e6b5939c2013349dd"),
    (
        "TV2",
        API_SECRET,
        b'{"type":"float","fromCcy":"btc","toCcy":"usdt_trc20","direction":"from","amount":"0.01","afftax":50}',
        100,
        "e34718c048f8507bfea134a635de96cccea9f79af9211419b638d3c9f998d348",
    ),
    ("TV3", API_SECRET, TV3, 184, "dfc293ec9f4535ae0a336f2caef7b60692b8736c58e7e2dd53cde75154d84e75"),
    ("TV4", API_SECRET, TV4, 99, "5baf3eea58c950ab9ce8ffa4d24f7cebaee86264c59da63a7f88fc9c8ea835e0"),
    ("TV5", API_SECRET, TV5, 119, "ffddb8c7d8f952b1b178547c69a53d149086409759e2c78d212db16eae51935c"),
    (
        "TV6",
        API_SECRET,
        b'{"rotate":["apiSecret","webhookSecret"]}',
        40,
        "2c25858a98a2265ca153fe72c4868a5f010259616390281a74934054b517976b",
    ),
    ("TV7", API_SECRET, b"", 0, "8d0ffa717c277be391256101caedc4f6dd930009ce484b9e40e4eb114181fc60"),
    ("TV8", API_SECRET, b"{}", 2, "985c6751f8886c86aaaddbabde900bbf09294c54b98b9c801046d6e9585bc133"),
    (
        "TV9",
        API_SECRET,
        b'{"code":"casino-front"}',
        23,
        "ce5401ae047d1b9312ba9a0cd2d4f28924c38fe5b0e4399621032c3d2258f12a",
    ),
    ("TV10", WEBHOOK_SECRET, TV10, 708, TV10_SIGN),
    ("TV11", API_SECRET, TV1 + b"\n", 89, "7eb8da1c6bdf61855d570d496cbd658fdeed6e0640a5fd2f7dd67e7f727cebc6"),
]


@pytest.mark.parametrize(("name", "secret", "body", "length", "expected"), ZEROTRACE_VECTORS)
def test_zerotrace_vectors(name: str, secret: str, body: bytes, length: int, expected: str) -> None:
    assert len(body) == length, name
    assert sign_body(body, secret) == expected
    assert sign_body(body, SecretStr(secret)) == expected


def test_tv11_trailing_newline_does_not_verify_as_tv1() -> None:
    tv1_sign = "54b0ef3cd3f3331828c92735ceb38aada251bc5e995bbf6e6b5939c2013349dd"
    assert sign_body(TV1 + b"\n", API_SECRET) != tv1_sign


def test_tv3_is_exactly_what_the_client_serialises() -> None:
    params = ZeroTraceParams(
        fromCcy="btc",
        toCcy="usdt_trc20",
        direction="from",
        amount="0.01",
        toAddress="TXyzExampleRecipientAddress0001",
        refundAddress="bc1qexamplerefundaddress0000001",
    )
    assert compact_json(params.wire_body()) == TV3


def test_tv4_tv5_bodies_are_what_the_client_serialises() -> None:
    order_id, token = "1f8c5e0b-9c92-4d6a-b0a8-3c5f8d6e7a4b", "v8k3Po9xQ2mN7bL4cD1eF6gH0jK5lM8nP3qR9sT2uVw"
    assert compact_json({"id": order_id, "token": token}) == TV4
    assert compact_json({"id": order_id, "token": token, "choice": "EXCHANGE"}) == TV5


def test_tv10_webhook_verifies() -> None:
    assert verify_zerotrace_webhook(TV10, TV10_SIGN, [WEBHOOK_SECRET])
    assert verify_zerotrace_webhook(TV10, TV10_SIGN.upper(), [WEBHOOK_SECRET]), "upper-case hex tolerated"
    assert verify_zerotrace_webhook(TV10, TV10_SIGN, [SecretStr("new-secret"), SecretStr(WEBHOOK_SECRET)])


@pytest.mark.parametrize(
    "header",
    [None, "", "zz", TV10_SIGN[:-1], TV10_SIGN + "0", "g" * 64, "é" * 64, TV10_SIGN[:-1] + "0"],
)
def test_tv10_webhook_rejects_bad_signatures(header: str | None) -> None:
    assert not verify_zerotrace_webhook(TV10, header, [WEBHOOK_SECRET])


def test_tv10_webhook_rejects_modified_body_and_wrong_secret() -> None:
    assert not verify_zerotrace_webhook(TV10 + b"\n", TV10_SIGN, [WEBHOOK_SECRET])
    assert not verify_zerotrace_webhook(TV10, TV10_SIGN, [API_SECRET])
    assert not verify_zerotrace_webhook(TV10, TV10_SIGN, [])
    # parsed and re-serialised bytes differ, so they must not verify
    assert not verify_zerotrace_webhook(json.dumps(json.loads(TV10)).encode(), TV10_SIGN, [WEBHOOK_SECRET])


def test_tv10_timestamp_window() -> None:
    ts = "1716800123"
    for now in (1716800063, 1716800123, 1716800423):
        assert zerotrace_timestamp_ok(ts, now=now), now
    for now in (1716800062, 1716800424):
        assert not zerotrace_timestamp_ok(ts, now=now), now
    for bad in (None, "", "abc", "nan", "inf", "-inf"):
        assert not zerotrace_timestamp_ok(bad, now=1716800123)


def test_generic_window_bounds_are_inclusive() -> None:
    assert timestamp_in_window(100, now=110, max_future=5, max_age=10)
    assert timestamp_in_window(115, now=110, max_future=5, max_age=10)
    assert not timestamp_in_window(99.5, now=110, max_future=5, max_age=10)
    assert not timestamp_in_window(115.5, now=110, max_future=5, max_age=10)


def test_nonce_is_fresh_32_hex() -> None:
    nonces = {new_nonce() for _ in range(200)}
    assert len(nonces) == 200
    assert all(re.fullmatch(r"[0-9a-f]{32}", n) for n in nonces)


# --- itrx (spec §12) -------------------------------------------------------------------------------

ITRX_SECRET = "0285A2741D0E76E2E187260EB23E51851D48403A756333E7D0CF845406ABF3E8"
ADDR = "TExWKszFWYTKZH8LYiovAPKzS3L9MLZ4kw"
V1_DATA = {
    "callback_url": "http://{mydomain}/callback",
    "energy_amount": 32000,
    "out_trade_no": "123456",
    "period": "1D",
    "receive_address": ADDR,
}
V1_BODY = (
    b'{"callback_url":"http://{mydomain}/callback","energy_amount":32000,"out_trade_no":"123456",'
    b'"period":"1D","receive_address":"TExWKszFWYTKZH8LYiovAPKzS3L9MLZ4kw"}'
)
V1_SIGN = "07c125cabfe006614a02131f927cca9e7a654f7644a817b155fad591e1c50f7b"
V7_SERIAL = "7297a8a2a9e39b86fc5bad0d2e9edda2"
V7A_SIGN = "a6df5433f696d1d88bd23eee5adda740f28bcc0be7b67887a639eee7d576c205"
V7B_SIGN = "e4c35f53ae60fa845b71c7b49c0a8f67f00caf0aa9dac0b2d90381155daf8474"
V7B_BODY = b'{"out_trade_no":"123456","serial":"7297a8a2a9e39b86fc5bad0d2e9edda2","status":40}'


def test_itrx_v1_official_vector() -> None:
    body = canonical_json(V1_DATA)
    assert body == V1_BODY
    assert itrx_sign(ITRX_SECRET, "1686796826", body) == V1_SIGN
    # the key is the secret's ASCII text; a hex-decoded key gives something else
    wrong = hmac.new(bytes.fromhex(ITRX_SECRET), b"1686796826&" + body, hashlib.sha256).hexdigest()
    assert wrong != V1_SIGN


def test_itrx_v2_period_1h() -> None:
    body = canonical_json({**V1_DATA, "period": "1H"})
    assert itrx_sign(ITRX_SECRET, "1686796826", body) == (
        "97befcf19587cf2fcb0091d69afcceca7e8d37b6f574fd280148ac901e913f33"
    )


def test_itrx_v3_non_ascii_escaped_vs_raw() -> None:
    data = {"energy_amount": 65000, "out_trade_no": "订单-42", "period": "1H", "receive_address": ADDR}
    body = canonical_json(data)
    assert body == (
        b'{"energy_amount":65000,"out_trade_no":"\\u8ba2\\u5355-42","period":"1H",'
        b'"receive_address":"TExWKszFWYTKZH8LYiovAPKzS3L9MLZ4kw"}'
    )
    assert itrx_sign(ITRX_SECRET, "1700000000", body) == (
        "0a0f0152a30b4b6ad7b6b479f644405397281d7315575749c91376cf9df6945a"
    )
    raw = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert b"\xe8\xae\xa2\xe5\x8d\x95" in raw
    assert itrx_sign(ITRX_SECRET, "1700000000", raw) == (
        "3416b1f41200b73b887b46bb556b82e17431be1225fb49b6c0c1d1eb97c1900a"
    )


def test_itrx_v4_nested_sorted_recursively_and_php_variant() -> None:
    data = {
        "period": "1D",
        "meta": {"z": 1.5, "a": [3, 1, {"y": 0.1, "b": None}]},
        "flag": True,
        "energy_amount": 32000,
    }
    body = canonical_json(data)
    assert (
        body
        == b'{"energy_amount":32000,"flag":true,"meta":{"a":[3,1,{"b":null,"y":0.1}],"z":1.5},"period":"1D"}'
    )
    assert itrx_sign(ITRX_SECRET, "1700000001", body) == (
        "d9c12cebe0e228a5b3c7c7421cd67f2bc03b09c38f0ebdaee62219233f4ce7a5"
    )
    php = b'{"energy_amount":32000,"flag":true,"meta":{"z":1.5,"a":[3,1,{"y":0.1,"b":null}]},"period":"1D"}'
    assert itrx_sign(ITRX_SECRET, "1700000001", php) == (
        "e83223d20b9b2c55836b90e1802efbc79e8336451e9a496bfb9ff8002ff602e9"
    )


def test_itrx_v5_escaped_slashes_differ() -> None:
    body = V1_BODY.replace(b"http://{mydomain}/callback", b"http:\\/\\/{mydomain}\\/callback")
    sign = itrx_sign(ITRX_SECRET, "1686796826", body)
    assert sign == "355ada9630155996ec34a453a4cfdd1ed38c88cdecc061aa3f20ac1f3362f33f"
    assert sign != V1_SIGN
    assert b"\\/" not in canonical_json(V1_DATA)


def test_itrx_v6_reclaim_body() -> None:
    body = canonical_json({"serial": "1bcb40c612aababdcb166ac2cd7e3525"})
    assert body == b'{"serial":"1bcb40c612aababdcb166ac2cd7e3525"}'
    assert itrx_sign(ITRX_SECRET, "1700000002", body) == (
        "796cadee3524b3f3bb4a2f12f4ae8df6d9959d5753ac6fa16c299ebf4451f1f0"
    )


def test_itrx_v7_both_callback_forms_sign_as_published() -> None:
    data = {"out_trade_no": "123456", "serial": V7_SERIAL, "status": 40}
    python_form = json.dumps(data, sort_keys=True).encode()
    assert (
        python_form
        == b'{"out_trade_no": "123456", "serial": "7297a8a2a9e39b86fc5bad0d2e9edda2", "status": 40}'
    )
    assert itrx_sign(ITRX_SECRET, "1700000003", python_form) == V7A_SIGN
    assert canonical_json(data) == V7B_BODY
    assert itrx_sign(ITRX_SECRET, "1700000003", V7B_BODY) == V7B_SIGN


def test_itrx_v8_outside_bmp_and_slash() -> None:
    body = canonical_json({"out_trade_no": "A😀/B"})
    assert body == b'{"out_trade_no":"A\\ud83d\\ude00/B"}'
    assert itrx_sign(ITRX_SECRET, "1700000004", body) == (
        "1e78c0ddeaaa55465bd9de648dda811a4bfdbfa951bad54797a399c925e967ec"
    )


# --- itrx callback verification (spec §7 recommendation) -------------------------------------------


def test_v7a_verifies_with_python_default_form() -> None:
    assert verify_itrx_callback(V7B_BODY, "1700000003", V7A_SIGN, [ITRX_SECRET]) == "python_default"


def test_v7b_verifies_on_raw_bytes() -> None:
    assert verify_itrx_callback(V7B_BODY, "1700000003", V7B_SIGN, [ITRX_SECRET]) == "raw"
    assert verify_itrx_callback(V7B_BODY, "1700000003", V7B_SIGN.upper(), [ITRX_SECRET]) == "raw"


def test_compact_sorted_form_matches_a_differently_serialised_body() -> None:
    pretty = (
        b'{\n  "status": 40,\n  "serial": "7297a8a2a9e39b86fc5bad0d2e9edda2",\n  "out_trade_no": "123456"\n}'
    )
    assert verify_itrx_callback(pretty, "1700000003", V7B_SIGN, [ITRX_SECRET]) == "compact_sorted"
    assert verify_itrx_callback(pretty, "1700000003", V7A_SIGN, [ITRX_SECRET]) == "python_default"


def test_itrx_callback_tries_every_secret() -> None:
    assert verify_itrx_callback(V7B_BODY, "1700000003", V7B_SIGN, ["other", SecretStr(ITRX_SECRET)]) == "raw"


@pytest.mark.parametrize(
    ("body", "timestamp", "signature", "secrets"),
    [
        (V7B_BODY, "1700000004", V7B_SIGN, [ITRX_SECRET]),  # other timestamp
        (V7B_BODY, "1700000003", V7B_SIGN, ["wrong"]),
        (V7B_BODY, "1700000003", V7B_SIGN, []),
        (V7B_BODY.replace(b"40", b"43"), "1700000003", V7B_SIGN, [ITRX_SECRET]),
        (V7B_BODY, None, V7B_SIGN, [ITRX_SECRET]),
        (V7B_BODY, "1700000003", None, [ITRX_SECRET]),
        (V7B_BODY, "1700000003", "", [ITRX_SECRET]),
        (V7B_BODY, "١٧٠٠٠٠٠٠٠٣", V7B_SIGN, [ITRX_SECRET]),  # non-ASCII digits
        (b"not json", "1700000003", V7B_SIGN, [ITRX_SECRET]),
    ],
)
def test_itrx_callback_rejections(
    body: bytes, timestamp: str | None, signature: str | None, secrets: list[str]
) -> None:
    assert verify_itrx_callback(body, timestamp, signature, secrets) is None


def test_itrx_callback_raw_non_json_body_can_still_verify_raw() -> None:
    body = b"opaque"
    sign = itrx_sign(ITRX_SECRET, "1700000003", body)
    assert verify_itrx_callback(body, "1700000003", sign, [ITRX_SECRET]) == "raw"


def test_itrx_timestamp_window() -> None:
    assert itrx_timestamp_ok("1700000000", now=1700000100)
    assert not itrx_timestamp_ok("1700000000", now=1700000101)
    assert itrx_timestamp_ok("1700000060", now=1700000000)
    assert not itrx_timestamp_ok("1700000061", now=1700000000)
