"""Every test vector of both specs, checked against the sandbox's own signature functions.

Which itrx forms the sandbox accepts, per ``itrx_signature_mode``:

* ``raw`` (default): the signature must cover the exact bytes received (V1, V3a, V3b, V4, V4-php, V5, V8 as
  sent bodies all pass when signed over themselves); a canonical-form signature over a non-canonical body
  (V3b body + V3a signature, V4-php body + V4 signature, V5 body + V1 signature) is refused;
* ``raw_or_canonical``: additionally accepts those three cross cases;
* ``strict_canonical``: only bodies that are already canonical (V1, V3a, V4, V8), never V3b/V4-php/V5.

V7a (Python default separators with spaces) is what one docs sample *verifies* against; the sandbox never
*sends* that form: its callbacks are compact (V7b).
"""

from __future__ import annotations

import json

import pytest
from order_worker_sandbox.signing import (
    canonical_json,
    hmac_hex,
    itrx_callback,
    itrx_sign,
    itrx_verify,
    zerotrace_sign,
    zerotrace_verify,
)

from tests.sandbox.conftest import openssl_hmac

API = "test-api-secret-0123456789abcdef"
WEBHOOK = "test-webhook-secret-fedcba9876543210"
ID = "1f8c5e0b-9c92-4d6a-b0a8-3c5f8d6e7a4b"
TOKEN = "v8k3Po9xQ2mN7bL4cD1eF6gH0jK5lM8nP3qR9sT2uVw"
TV1 = b'{"type":"float","fromCcy":"btc","toCcy":"usdt_trc20","direction":"from","amount":"0.01"}'
TV10 = (
    b'{"event":"order.status_changed","order":{"id":"1f8c5e0b-9c92-4d6a-b0a8-3c5f8d6e7a4b","type":"float",'
    b'"status":"PENDING","time":{"reg":1716800000,"expiration":1716801800,"left":1677,"update":1716800123,'
    b'"finish":null},"from":{"code":"btc","network":"Bitcoin","amount":"0.01000000","address":'
    b'"bc1qexamplepayinaddress00000001","tx":{"id":"abcdef0123456789","amount":"0.01000000"}},"to":{"code":'
    b'"usdt_trc20","network":"Tron","amount":"619.987654","address":"TXyzExampleRecipientAddress0001","tx":'
    b'{"id":null,"amount":null}},"back":{"address":"bc1qexamplerefundaddress0000001","tx":{"id":null}},'
    b'"emergency":{"status":[],"choice":"NONE"},"rate":"62450.12345678","networkFee":"1.20","markupBps":50},'
    b'"ts":1716800123456}'
)

ZT_VECTORS = [
    ("TV1", API, TV1, "54b0ef3cd3f3331828c92735ceb38aada251bc5e995bbf6e6b5939c2013349dd"),
    (
        "TV2",
        API,
        b'{"type":"float","fromCcy":"btc","toCcy":"usdt_trc20","direction":"from","amount":"0.01","afftax":50}',
        "e34718c048f8507bfea134a635de96cccea9f79af9211419b638d3c9f998d348",
    ),
    (
        "TV3",
        API,
        b'{"type":"float","fromCcy":"btc","toCcy":"usdt_trc20","direction":"from","amount":"0.01",'
        b'"toAddress":"TXyzExampleRecipientAddress0001","refundAddress":"bc1qexamplerefundaddress0000001"}',
        "dfc293ec9f4535ae0a336f2caef7b60692b8736c58e7e2dd53cde75154d84e75",
    ),
    (
        "TV4",
        API,
        ('{"id":"' + ID + '","token":"' + TOKEN + '"}').encode(),
        "5baf3eea58c950ab9ce8ffa4d24f7cebaee86264c59da63a7f88fc9c8ea835e0",
    ),
    (
        "TV5",
        API,
        ('{"id":"' + ID + '","token":"' + TOKEN + '","choice":"EXCHANGE"}').encode(),
        "ffddb8c7d8f952b1b178547c69a53d149086409759e2c78d212db16eae51935c",
    ),
    (
        "TV6",
        API,
        b'{"rotate":["apiSecret","webhookSecret"]}',
        "2c25858a98a2265ca153fe72c4868a5f010259616390281a74934054b517976b",
    ),
    ("TV7", API, b"", "8d0ffa717c277be391256101caedc4f6dd930009ce484b9e40e4eb114181fc60"),
    ("TV8", API, b"{}", "985c6751f8886c86aaaddbabde900bbf09294c54b98b9c801046d6e9585bc133"),
    (
        "TV9",
        API,
        b'{"code":"casino-front"}',
        "ce5401ae047d1b9312ba9a0cd2d4f28924c38fe5b0e4399621032c3d2258f12a",
    ),
    ("TV10", WEBHOOK, TV10, "dedae6eeeaa43ffbb7f11a46fa27e4e02d07498e19c53e7ff52839d01502ae9d"),
]


def test_tv0_hmac_primitive() -> None:
    assert (
        hmac_hex(b"Jefe", b"what do ya want for nothing?")
        == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


@pytest.mark.parametrize(("name", "secret", "body", "expected"), ZT_VECTORS, ids=[v[0] for v in ZT_VECTORS])
def test_zerotrace_vectors(name: str, secret: str, body: bytes, expected: str) -> None:
    assert zerotrace_sign(body, secret) == expected
    assert zerotrace_verify(body, secret, expected)
    assert not zerotrace_verify(body, secret, expected.upper()), "docs say lower-case hex"
    assert not zerotrace_verify(body + b" ", secret, expected)


def test_tv10_length_and_openssl() -> None:
    assert len(TV10) == 708
    assert openssl_hmac(WEBHOOK, TV10) == "dedae6eeeaa43ffbb7f11a46fa27e4e02d07498e19c53e7ff52839d01502ae9d"


def test_tv11_echo_newline_is_rejected() -> None:
    tv11 = "7eb8da1c6bdf61855d570d496cbd658fdeed6e0640a5fd2f7dd67e7f727cebc6"
    assert zerotrace_sign(TV1 + b"\n", API) == tv11
    # What a server sees: the TV1 bytes on the wire, signed as if a newline had been sent.
    assert not zerotrace_verify(TV1, API, tv11)
    assert zerotrace_verify(TV1 + b"\n", API, tv11)  # only if those exact bytes were sent


ITRX_SECRET = "0285A2741D0E76E2E187260EB23E51851D48403A756333E7D0CF845406ABF3E8"
V1_BODY = (
    b'{"callback_url":"http://{mydomain}/callback","energy_amount":32000,"out_trade_no":"123456",'
    b'"period":"1D","receive_address":"TExWKszFWYTKZH8LYiovAPKzS3L9MLZ4kw"}'
)
V1_SIG = "07c125cabfe006614a02131f927cca9e7a654f7644a817b155fad591e1c50f7b"
V3A_BODY = (
    b'{"energy_amount":65000,"out_trade_no":"\\u8ba2\\u5355-42","period":"1H",'
    b'"receive_address":"TExWKszFWYTKZH8LYiovAPKzS3L9MLZ4kw"}'
)
V3A_SIG = "0a0f0152a30b4b6ad7b6b479f644405397281d7315575749c91376cf9df6945a"
V3B_BODY = (
    '{"energy_amount":65000,"out_trade_no":"订单-42","period":"1H",'
    '"receive_address":"TExWKszFWYTKZH8LYiovAPKzS3L9MLZ4kw"}'
).encode()
V3B_SIG = "3416b1f41200b73b887b46bb556b82e17431be1225fb49b6c0c1d1eb97c1900a"
V4_BODY = b'{"energy_amount":32000,"flag":true,"meta":{"a":[3,1,{"b":null,"y":0.1}],"z":1.5},"period":"1D"}'
V4_SIG = "d9c12cebe0e228a5b3c7c7421cd67f2bc03b09c38f0ebdaee62219233f4ce7a5"
V4PHP_BODY = (
    b'{"energy_amount":32000,"flag":true,"meta":{"z":1.5,"a":[3,1,{"y":0.1,"b":null}]},"period":"1D"}'
)
V4PHP_SIG = "e83223d20b9b2c55836b90e1802efbc79e8336451e9a496bfb9ff8002ff602e9"
V5_BODY = V1_BODY.replace(b"http://{mydomain}/callback", b"http:\\/\\/{mydomain}\\/callback")
V5_SIG = "355ada9630155996ec34a453a4cfdd1ed38c88cdecc061aa3f20ac1f3362f33f"
V8_BODY = b'{"out_trade_no":"A\\ud83d\\ude00/B"}'
V8_SIG = "1e78c0ddeaaa55465bd9de648dda811a4bfdbfa951bad54797a399c925e967ec"

ITRX_VECTORS = [
    ("V1", "1686796826", V1_BODY, V1_SIG),
    (
        "V2",
        "1686796826",
        V1_BODY.replace(b'"1D"', b'"1H"'),
        "97befcf19587cf2fcb0091d69afcceca7e8d37b6f574fd280148ac901e913f33",
    ),
    ("V3a", "1700000000", V3A_BODY, V3A_SIG),
    ("V3b", "1700000000", V3B_BODY, V3B_SIG),
    ("V4", "1700000001", V4_BODY, V4_SIG),
    ("V4-php", "1700000001", V4PHP_BODY, V4PHP_SIG),
    ("V5", "1686796826", V5_BODY, V5_SIG),
    (
        "V6",
        "1700000002",
        b'{"serial":"1bcb40c612aababdcb166ac2cd7e3525"}',
        "796cadee3524b3f3bb4a2f12f4ae8df6d9959d5753ac6fa16c299ebf4451f1f0",
    ),
    (
        "V7a",
        "1700000003",
        b'{"out_trade_no": "123456", "serial": "7297a8a2a9e39b86fc5bad0d2e9edda2", "status": 40}',
        "a6df5433f696d1d88bd23eee5adda740f28bcc0be7b67887a639eee7d576c205",
    ),
    (
        "V7b",
        "1700000003",
        b'{"out_trade_no":"123456","serial":"7297a8a2a9e39b86fc5bad0d2e9edda2","status":40}',
        "e4c35f53ae60fa845b71c7b49c0a8f67f00caf0aa9dac0b2d90381155daf8474",
    ),
    ("V8", "1700000004", V8_BODY, V8_SIG),
]


@pytest.mark.parametrize(("name", "ts", "body", "expected"), ITRX_VECTORS, ids=[v[0] for v in ITRX_VECTORS])
def test_itrx_vectors_raw(name: str, ts: str, body: bytes, expected: str) -> None:
    assert itrx_sign(body, ts, ITRX_SECRET) == expected
    assert itrx_verify(body, ts, ITRX_SECRET, expected, "raw") == "raw"
    assert itrx_verify(body, str(int(ts) + 1), ITRX_SECRET, expected, "raw") is None


def test_v1_published_digest_uses_1d_not_1h() -> None:
    data = {
        "callback_url": "http://{mydomain}/callback",
        "energy_amount": 32000,
        "out_trade_no": "123456",
        "period": "1D",
        "receive_address": "TExWKszFWYTKZH8LYiovAPKzS3L9MLZ4kw",
    }
    assert canonical_json(data) == V1_BODY
    assert itrx_sign(canonical_json({**data, "period": "1H"}), "1686796826", ITRX_SECRET) != V1_SIG


def test_v3a_v4_v8_are_the_canonical_forms() -> None:
    assert canonical_json(json.loads(V3B_BODY)) == V3A_BODY
    assert canonical_json(json.loads(V4PHP_BODY)) == V4_BODY
    assert canonical_json(json.loads(V5_BODY)) == V1_BODY
    assert canonical_json({"out_trade_no": "A\U0001f600/B"}) == V8_BODY


@pytest.mark.parametrize(
    ("body", "canonical_sig", "ts"),
    [(V3B_BODY, V3A_SIG, "1700000000"), (V4PHP_BODY, V4_SIG, "1700000001"), (V5_BODY, V1_SIG, "1686796826")],
    ids=["V3b-body+V3a-sig", "V4php-body+V4-sig", "V5-body+V1-sig"],
)
def test_itrx_canonical_cross_cases(body: bytes, canonical_sig: str, ts: str) -> None:
    assert itrx_verify(body, ts, ITRX_SECRET, canonical_sig, "raw") is None
    assert itrx_verify(body, ts, ITRX_SECRET, canonical_sig, "raw_or_canonical") == "canonical"
    assert itrx_verify(body, ts, ITRX_SECRET, canonical_sig, "strict_canonical") is None


@pytest.mark.parametrize(
    ("name", "ts", "body", "sig", "accepted"),
    [
        ("V1", "1686796826", V1_BODY, V1_SIG, True),
        ("V3a", "1700000000", V3A_BODY, V3A_SIG, True),
        ("V4", "1700000001", V4_BODY, V4_SIG, True),
        ("V8", "1700000004", V8_BODY, V8_SIG, True),
        ("V3b", "1700000000", V3B_BODY, V3B_SIG, False),
        ("V4-php", "1700000001", V4PHP_BODY, V4PHP_SIG, False),
        ("V5", "1686796826", V5_BODY, V5_SIG, False),
    ],
)
def test_itrx_strict_canonical_mode(name: str, ts: str, body: bytes, sig: str, accepted: bool) -> None:
    assert (itrx_verify(body, ts, ITRX_SECRET, sig, "strict_canonical") == "raw") is accepted


def test_v7_callback_is_signed_compact() -> None:
    payload = {"out_trade_no": "123456", "serial": "7297a8a2a9e39b86fc5bad0d2e9edda2", "status": 40}
    body, sig = itrx_callback(payload, "1700000003", ITRX_SECRET)
    assert body == b'{"out_trade_no":"123456","serial":"7297a8a2a9e39b86fc5bad0d2e9edda2","status":40}'
    assert sig == "e4c35f53ae60fa845b71c7b49c0a8f67f00caf0aa9dac0b2d90381155daf8474"  # V7b
    assert sig != "a6df5433f696d1d88bd23eee5adda740f28bcc0be7b67887a639eee7d576c205"  # V7a (spaces)


def test_itrx_v1_openssl_cross_check() -> None:
    assert openssl_hmac(ITRX_SECRET, b"1686796826&" + V1_BODY) == V1_SIG
