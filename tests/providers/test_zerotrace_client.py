"""ZeroTraceClient against a local stub: wire correctness, DTO normalisation, every error mapping."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from pydantic import SecretStr

from tests.providers.partner_stubs import (
    Observations,
    RawServer,
    Received,
    Reply,
    StubServer,
    json_reply,
    truncate_response,
)
from tests.support.partners import TV10_ORDER
from worker.partners.base import Fate, PartnerError
from worker.partners.zerotrace.client import ZeroTraceClient, compact_json, parse_order
from worker.partners.zerotrace.params import ZeroTraceParams
from worker.partners.zerotrace.signing import sign_body
from worker.status import Status
from worker.transport import PartnerHttp

SECRET = "CANARY-0trace-secret-7f3a9c"
API_KEY = "CANARY-0trace-key"
TOKEN = "CANARY-TOKEN-Zk3hQ9tXb2vN8mR4pL6sW1yC5dF7gJ0aE"
ORDER_ID = "64656667-6869-4a6b-ac6d-6e6f70717273"

PARAMS = ZeroTraceParams(
    fromCcy="btc",
    toCcy="usdt_trc20",
    direction="from",
    amount="0.01",
    toAddress="TXyzExampleRecipientAddress0001",
    refundAddress="bc1qexamplerefundaddress0000001",
)
TV3_BODY = compact_json(PARAMS.wire_body())

DTO: dict[str, Any] = {
    "id": ORDER_ID,
    "type": "float",
    "status": "NEW",
    "time": {"reg": 1760000000, "expiration": 1760001800, "left": 1800, "update": 1760000000, "finish": None},
    "from": {
        "code": "btc",
        "network": "Bitcoin",
        "amount": "0.02500000",
        "address": "bc1q...payin",
        "tx": {"id": None, "amount": None},
    },
    "to": {
        "code": "usdt_trc20",
        "network": "Tron",
        "amount": "1531.080000",
        "address": "TQ...recipient",
        "tx": {"id": None, "amount": None},
    },
    "back": {"address": "bc1q...refund", "tx": {"id": None}},
    "emergency": {"status": [], "choice": "NONE"},
    "rate": "61600.00000000",
    "networkFee": "1.20",
    "markupBps": 50,
}


def ok(data: Any) -> dict[str, Any]:
    return {"code": 0, "msg": "", "data": data}


@pytest.fixture
def client(stub: StubServer, http: PartnerHttp, observer: Observations) -> ZeroTraceClient:
    return ZeroTraceClient(stub.url, API_KEY, SecretStr(SECRET), http, observer=observer)


def _fails(call: Any) -> PartnerError:
    with pytest.raises(PartnerError) as info:
        call()
    return info.value


def assert_no_canary(*things: object) -> None:
    for thing in things:
        text = thing if isinstance(thing, str) else repr(thing)
        assert "CANARY" not in text, text
        assert "CANARY" not in str(thing)


# --- create ------------------------------------------------------------------------------------------


def test_create_sends_signed_exact_bytes(
    client: ZeroTraceClient, stub: StubServer, observer: Observations
) -> None:
    stub.reply(200, ok({**DTO, "token": TOKEN}))
    result = client.create(PARAMS, "order-worker:cmd-0001:0trace")
    (request,) = stub.received
    assert (request.method, request.path) == ("POST", "/api/v1/create")
    assert request.body == TV3_BODY
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-api-key"] == API_KEY
    # the stub recomputes the signature over the raw bytes it received
    assert request.headers["x-api-sign"] == sign_body(request.body, SECRET)
    assert re.fullmatch(r"[0-9a-f]{32}", request.headers["x-api-nonce"])
    assert request.headers["idempotency-key"] == "order-worker:cmd-0001:0trace"
    assert result.token == TOKEN
    assert not result.replayed
    assert result.order.order_id == ORDER_ID
    assert result.order.status is Status.AWAITING_DEPOSIT
    assert result.order.provider_status == "NEW"
    assert TOKEN not in json.dumps(result.order.order)
    assert TOKEN not in repr(result)
    assert len(observer.calls) == 1
    provider, endpoint, outcome, seconds, weight = observer.calls[0]
    assert (provider, endpoint, outcome, weight) == ("0trace", "create", "ok", 50)
    assert 0 <= seconds < 5


def test_tv3_signature_with_spec_secret(stub: StubServer, http: PartnerHttp) -> None:
    client = ZeroTraceClient(stub.url, "k", SecretStr("test-api-secret-0123456789abcdef"), http)
    stub.reply(200, ok({**DTO, "token": TOKEN}))
    client.create(PARAMS, "idem-key-0001")
    assert (
        stub.received[0].headers["x-api-sign"]
        == "dfc293ec9f4535ae0a336f2caef7b60692b8736c58e7e2dd53cde75154d84e75"
    )


def test_create_with_ref_code_suffixes_api_key(client: ZeroTraceClient, stub: StubServer) -> None:
    stub.reply(200, ok({**DTO, "token": TOKEN}))
    client.create(PARAMS, "idem-key-0001", "widget-eu")
    assert stub.received[0].headers["x-api-key"] == f"{API_KEY}.widget-eu"


def test_every_call_gets_a_fresh_nonce(client: ZeroTraceClient, stub: StubServer) -> None:
    stub.reply(200, ok({**DTO, "token": None}))
    for _ in range(4):
        client.create(PARAMS, "idem-key-0001")
    nonces = [r.headers["x-api-nonce"] for r in stub.received]
    signs = {r.headers["x-api-sign"] for r in stub.received}
    assert len(set(nonces)) == 4
    assert len(signs) == 1, "same body, same signature: only the nonce changes"


def test_replay_with_null_token(client: ZeroTraceClient, stub: StubServer) -> None:
    stub.reply(200, ok({**DTO, "token": None}))
    result = client.create(PARAMS, "idem-key-0001")
    assert result.token is None
    assert result.replayed
    assert result.order.order_id == ORDER_ID


def test_missing_token_key_is_a_replay_too(client: ZeroTraceClient, stub: StubServer) -> None:
    stub.reply(200, ok(DTO))
    assert client.create(PARAMS, "idem-key-0001").replayed


@pytest.mark.parametrize(
    ("key", "ref_code", "code"),
    [
        ("short", None, "invalid_idempotency_key"),
        ("x" * 129, None, "invalid_idempotency_key"),
        ("has space in it", None, "invalid_idempotency_key"),
        ("idem-key-0001", "has.dot", "invalid_ref_code"),
        ("idem-key-0001", "abc", "invalid_ref_code"),
    ],
)
def test_bad_local_input_is_refused_before_sending(
    client: ZeroTraceClient, stub: StubServer, key: str, ref_code: str | None, code: str
) -> None:
    error = _fails(lambda: client.create(PARAMS, key, ref_code))
    assert (error.fate, error.code, error.retryable) == (Fate.NOT_SENT, code, False)
    assert stub.received == []


# --- fetch / emergency --------------------------------------------------------------------------------


def test_fetch_body_signature_and_parse(
    client: ZeroTraceClient, stub: StubServer, observer: Observations
) -> None:
    stub.reply(200, ok({**DTO, "status": "EXCHANGE"}))
    order = client.fetch(ORDER_ID, TOKEN)
    (request,) = stub.received
    assert request.path == "/api/v1/order"
    assert request.body == compact_json({"id": ORDER_ID, "token": TOKEN})
    assert request.headers["x-api-sign"] == sign_body(request.body, SECRET)
    assert "idempotency-key" not in request.headers
    assert order.status is Status.PROCESSING
    assert observer.calls[0][1:3] == ("order", "ok")
    assert observer.calls[0][4] == 1


def test_emergency_sends_exchange(client: ZeroTraceClient, stub: StubServer, observer: Observations) -> None:
    stub.reply(200, ok(True))
    assert client.emergency(ORDER_ID, TOKEN) is True
    assert stub.received[0].path == "/api/v1/emergency"
    assert json.loads(stub.received[0].body) == {"id": ORDER_ID, "token": TOKEN, "choice": "EXCHANGE"}
    assert observer.calls[0][1:3] == ("emergency", "ok")


def test_fetch_requires_id_and_token(client: ZeroTraceClient) -> None:
    assert _fails(lambda: client.fetch(ORDER_ID, "")).fate is Fate.NOT_SENT


# --- error mapping (spec §5) ---------------------------------------------------------------------------

ERRORS = [
    # (endpoint, http status, body, headers, fate, code, retryable, retry_after)
    ("create", 429, {"code": 5, "msg": "RATE_LIMIT"}, {"Retry-After": "17"}, Fate.REFUSED, "5", True, 17.0),
    ("order", 429, {"code": 5, "msg": "RATE_LIMIT"}, {}, Fate.REFUSED, "5", True, None),
    ("create", 429, b"slow down", {"Retry-After": "3"}, Fate.REFUSED, "5", True, 3.0),
    ("create", 503, {"code": 11, "msg": "UPSTREAM_ERROR"}, {}, Fate.UNKNOWN, "11", True, None),
    ("order", 503, {"code": 11, "msg": "UPSTREAM_ERROR"}, {}, Fate.REFUSED, "11", True, None),
    ("create", 500, {"code": 99, "msg": "INTERNAL"}, {}, Fate.UNKNOWN, "99", True, None),
    ("order", 500, {"code": 99, "msg": "INTERNAL"}, {}, Fate.UNKNOWN, "99", True, None),
    ("create", 400, {"code": 1, "msg": "INVALID_REQUEST"}, {}, Fate.REFUSED, "1", False, None),
    ("create", 409, {"code": 1, "msg": "INVALID_REQUEST"}, {}, Fate.REFUSED, "1", False, None),
    ("create", 401, {"code": 2, "msg": "AUTH_REQUIRED"}, {}, Fate.REFUSED, "2", False, None),
    ("create", 401, {"code": 3, "msg": "AUTH_INVALID"}, {}, Fate.REFUSED, "3", False, None),
    ("order", 401, {"code": 4, "msg": "AUTH_DISABLED"}, {}, Fate.REFUSED, "4", False, None),
    ("order", 404, {"code": 6, "msg": "NOT_FOUND"}, {}, Fate.REFUSED, "6", False, None),
    ("emergency", 400, {"code": 12, "msg": "EMERGENCY_INVALID_CHOICE"}, {}, Fate.REFUSED, "12", False, None),
    ("create", 418, {"code": 77, "msg": "NEW_CODE"}, {}, Fate.REFUSED, "77", False, None),
    ("create", 502, {"code": 77, "msg": "NEW_CODE"}, {}, Fate.UNKNOWN, "77", True, None),
    ("create", 502, b"<html>bad gateway</html>", {}, Fate.UNKNOWN, "http_502", True, None),
    ("create", 200, b"<html>ok?</html>", {}, Fate.UNKNOWN, "bad_response", True, None),
    ("create", 200, {"unexpected": 1}, {}, Fate.UNKNOWN, "bad_response", True, None),
    ("create", 200, {"code": "0", "data": {}}, {}, Fate.UNKNOWN, "bad_response", True, None),
    ("create", 200, {"code": 0, "msg": ""}, {}, Fate.UNKNOWN, "bad_response", True, None),
    ("create", 200, ok({"status": "NEW"}), {}, Fate.UNKNOWN, "bad_response", True, None),
    ("create", 200, ok({**DTO, "token": 42}), {}, Fate.UNKNOWN, "bad_response", True, None),
    ("create", 200, ok([1, 2]), {}, Fate.UNKNOWN, "bad_response", True, None),
    ("order", 500, ok(DTO), {}, Fate.UNKNOWN, "http_500", True, None),
]


@pytest.mark.parametrize(
    ("endpoint", "status", "body", "headers", "fate", "code", "retryable", "retry_after"), ERRORS
)
def test_error_mapping(
    client: ZeroTraceClient,
    stub: StubServer,
    observer: Observations,
    endpoint: str,
    status: int,
    body: Any,
    headers: dict[str, str],
    fate: Fate,
    code: str,
    retryable: bool,
    retry_after: float | None,
) -> None:
    if isinstance(body, bytes):
        stub.reply_raw(status, body, headers)
    else:
        stub.reply(status, body, headers)
    calls = {
        "create": lambda: client.create(PARAMS, "idem-key-0001"),
        "order": lambda: client.fetch(ORDER_ID, TOKEN),
        "emergency": lambda: client.emergency(ORDER_ID, TOKEN),
    }
    error = _fails(calls[endpoint])
    assert (error.fate, error.code, error.retryable, error.retry_after) == (
        fate,
        code,
        retryable,
        retry_after,
    )
    assert error.http_status == status
    assert error.rate_limited is (code == "5")  # what holds the account's shared budget for everyone
    if isinstance(body, dict) and isinstance(body.get("msg"), str) and body["msg"]:
        assert body["msg"] in error.reason
    assert len(stub.received) == 1, "never retried inside the client"
    assert observer.calls[-1][1:3] == (endpoint, code)
    assert_no_canary(error, error.reason, observer.calls)


def test_transport_failure_is_observed(refused_url: str, http: PartnerHttp, observer: Observations) -> None:
    client = ZeroTraceClient(refused_url, API_KEY, SecretStr(SECRET), http, observer=observer)
    error = _fails(lambda: client.create(PARAMS, "idem-key-0001"))
    assert (error.fate, error.code) == (Fate.NOT_SENT, "connection_refused")
    assert observer.calls[0][:3] == ("0trace", "create", "connection_refused")


def test_read_timeout_on_create_is_unknown_but_retryable(silent_server: RawServer) -> None:
    with PartnerHttp(connect_timeout=0.5, read_timeout=0.2) as http:
        client = ZeroTraceClient(silent_server.url, API_KEY, SecretStr(SECRET), http)
        error = _fails(lambda: client.create(PARAMS, "idem-key-0001"))
    assert (error.fate, error.code, error.retryable) == (Fate.UNKNOWN, "timeout", True)


def test_truncated_answer_is_unknown(raw_server: Any, http: PartnerHttp) -> None:
    server = raw_server(truncate_response)
    client = ZeroTraceClient(server.url, API_KEY, SecretStr(SECRET), http)
    error = _fails(lambda: client.fetch(ORDER_ID, TOKEN))
    assert (error.fate, error.code) == (Fate.UNKNOWN, "truncated_response")


# --- secrets never leak ---------------------------------------------------------------------------------


def test_echoed_secrets_are_masked(client: ZeroTraceClient, stub: StubServer, observer: Observations) -> None:
    def echo(request: Received) -> Reply:
        body = json.loads(request.body)
        return json_reply(400, {"code": 1, "msg": f"bad {SECRET} {API_KEY} {body.get('token')}"})

    stub.responder = echo
    error = _fails(lambda: client.fetch(ORDER_ID, TOKEN))
    assert error.code == "1"
    assert "***" in error.reason
    assert_no_canary(error, client, observer.calls)


def test_every_configured_secret_is_masked_not_only_the_signing_one(
    stub: StubServer, http: PartnerHttp, observer: Observations
) -> None:
    webhook_secret = "whsec-canary-0001-not-for-logs"
    client = ZeroTraceClient(
        stub.url,
        API_KEY,
        SecretStr(SECRET),
        http,
        observer=observer,
        other_secrets=[SecretStr(webhook_secret)],
    )
    stub.reply(400, {"code": 1, "msg": f"webhook secret {webhook_secret} rejected"})
    error = _fails(lambda: client.fetch(ORDER_ID, TOKEN))
    assert webhook_secret not in error.reason and "***" in error.reason
    assert all(webhook_secret not in repr(call) for call in observer.calls)


def test_repr_of_client_and_result_hold_no_secret(client: ZeroTraceClient, stub: StubServer) -> None:
    stub.reply(200, ok({**DTO, "token": TOKEN}))
    result = client.create(PARAMS, "idem-key-0001")
    assert_no_canary(client, result, result.order)
    assert repr(client).startswith("ZeroTraceClient(http://127.0.0.1:")


def test_broken_observer_does_not_break_the_call(stub: StubServer, http: PartnerHttp) -> None:
    def broken(*_args: object) -> None:
        raise RuntimeError("metrics down")

    client = ZeroTraceClient(stub.url, API_KEY, SecretStr(SECRET), http, observer=broken)
    stub.reply(200, ok({**DTO, "token": TOKEN}))
    assert client.create(PARAMS, "idem-key-0001").token == TOKEN


@pytest.mark.parametrize(
    ("base_url", "api_key", "secret"),
    [
        ("ftp://x", "k", "s"),
        ("http://h/?q=1", "k", "s"),
        ("http://h", "with space", "s"),
        ("http://h", "k", ""),
    ],
)
def test_bad_configuration_fails_fast(http: PartnerHttp, base_url: str, api_key: str, secret: str) -> None:
    with pytest.raises(ValueError):
        ZeroTraceClient(base_url, api_key, SecretStr(secret), http)


# --- DTO normalisation ----------------------------------------------------------------------------------


def test_parse_order_normalises_the_tv10_webhook_order() -> None:
    observed = parse_order(TV10_ORDER)
    assert observed.order_id == "1f8c5e0b-9c92-4d6a-b0a8-3c5f8d6e7a4b"
    assert observed.provider_status == "PENDING"
    assert observed.status is Status.CONFIRMING
    assert observed.updated_at == 1716800123
    assert observed.order == {
        "id": "1f8c5e0b-9c92-4d6a-b0a8-3c5f8d6e7a4b",
        "type": "float",
        "from_code": "btc",
        "from_network": "Bitcoin",
        "from_amount": "0.01000000",
        "deposit_address": "bc1qexamplepayinaddress00000001",
        "deposit_tx_id": "abcdef0123456789",
        "deposit_amount_received": "0.01000000",
        "to_code": "usdt_trc20",
        "to_network": "Tron",
        "to_amount": "619.987654",
        "recipient_address": "TXyzExampleRecipientAddress0001",
        "payout_tx_id": None,
        "payout_amount": None,
        "refund_address": "bc1qexamplerefundaddress0000001",
        "refund_tx_id": None,
        "created_at": "2024-05-27T08:53:20.000Z",
        "created_at_unix": 1716800000,
        "expires_at": "2024-05-27T09:23:20.000Z",
        "expires_at_unix": 1716801800,
        "finished_at": None,
        "finished_at_unix": None,
        "rate": "62450.12345678",
        "network_fee": "1.20",
        "markup_bps": 50,
        "emergency": {"status": [], "choice": "NONE"},
    }
    json.dumps(observed.order)  # JSON-native only
    assert ZeroTraceClient.parse_order(TV10_ORDER) == observed


def test_parse_order_never_copies_a_token_and_tolerates_extras() -> None:
    dto = {**copy.deepcopy(TV10_ORDER), "token": TOKEN, "newField": {"x": 1}, "status": "FUTURE_STATUS"}
    observed = parse_order(dto)
    assert TOKEN not in json.dumps(observed.order)
    assert observed.status is None
    assert observed.provider_status == "FUTURE_STATUS"


def test_parse_order_is_lenient_about_missing_parts() -> None:
    observed = parse_order({"id": "x", "status": "DONE"})
    assert observed.status is Status.COMPLETED
    assert observed.updated_at is None
    assert observed.order["from_amount"] is None
    assert observed.order["emergency"] == {"status": [], "choice": None}


def test_numeric_amounts_keep_their_exact_text(client: ZeroTraceClient, stub: StubServer) -> None:
    body = (
        json.dumps(ok({**DTO, "token": TOKEN}))
        .replace('"1.20"', "1.20")
        .replace('"61600.00000000"', "61600.00000000")
    )
    stub.reply_raw(200, body.encode(), {"Content-Type": "application/json"})
    order = client.create(PARAMS, "idem-key-0001").order.order
    assert (order["network_fee"], order["rate"]) == ("1.20", "61600.00000000")


@pytest.mark.parametrize(
    "dto", [{}, {"id": "x"}, {"status": "NEW"}, {"id": 5, "status": "NEW"}, {"id": "x", "status": ""}]
)
def test_parse_order_requires_id_and_status(dto: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        parse_order(dto)
