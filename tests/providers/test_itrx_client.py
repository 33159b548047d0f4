"""ItrxClient against a local stub: signing over the sent bytes, parsing, and every error mapping."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr

from tests.providers.partner_stubs import (
    Observations,
    RawServer,
    Received,
    Reply,
    StubServer,
    close_after_request,
    json_reply,
)
from worker.partners.base import Fate, PartnerError
from worker.partners.itrx.client import ItrxClient, parse_callback
from worker.partners.itrx.params import ItrxParams
from worker.partners.itrx.signing import canonical_json, itrx_sign
from worker.status import Status
from worker.transport import PartnerHttp

SPEC_SECRET = "0285A2741D0E76E2E187260EB23E51851D48403A756333E7D0CF845406ABF3E8"
SECRET = "CANARY-itrx-secret-5c1d8e"
API_KEY = "CANARYITRXKEY0000000000000000001"
CALLBACK = "https://hooks.example/itrx?auth=CANARY-CALLBACK-TOKEN"
ADDR = "TExWKszFWYTKZH8LYiovAPKzS3L9MLZ4kw"
SERIAL = "5d0c1f2e9a7b4c3d8e6f0a1b2c3d4e5f"
PARAMS = ItrxParams(energy_amount=32000, period="1D", receive_address=ADDR)

QUERY_ANSWER: dict[str, Any] = {
    "errno": 0,
    "receive_address": "TKxZ3Nv1t2n2e6S9uVd8Qm4Ew7Yb5Rc1Lp",
    "order_no": SERIAL,
    "energy_amount": 65000,
    "pay_amount": 65000.0,
    "amount": 6500000,
    "details": [
        {
            "delegate_hash": "aa" * 32,
            "delegate_time": "2024-03-01T08:00:03.120000Z",
            "reclaim_hash": "bb" * 32,
            "reclaim_time": "2024-03-01T09:00:03.120000Z",
            "reclaim_time_real": "2024-03-01T08:07:41.500000Z",
            "status": 30,
        }
    ],
    "create_time": "2024-03-01T16:00:01.004512+08:00",
    "api_name": "worker-prod",
    "period": 0,
    "status": 40,
    "refund_amount": 0,
}


@pytest.fixture
def client(stub: StubServer, http: PartnerHttp, observer: Observations) -> ItrxClient:
    return ItrxClient(
        stub.url, API_KEY, SecretStr(SECRET), http, observer=observer, clock=lambda: 1700000000.9
    )


def _fails(call: Any) -> PartnerError:
    with pytest.raises(PartnerError) as info:
        call()
    return info.value


def assert_no_canary(*things: object) -> None:
    for thing in things:
        assert "CANARY" not in repr(thing), repr(thing)
        assert "CANARY" not in str(thing)


# --- create ------------------------------------------------------------------------------------------


def test_create_reproduces_the_official_vector(stub: StubServer, http: PartnerHttp) -> None:
    client = ItrxClient(
        stub.url, "B433BFF1CDE7450AA38A56BEAC690DD4", SecretStr(SPEC_SECRET), http, clock=lambda: 1686796826
    )
    stub.reply(200, {"errno": 0, "serial": SERIAL, "amount": 3120000, "balance": 795000000000})
    client.create(PARAMS, "123456", "http://{mydomain}/callback")
    (request,) = stub.received
    assert request.body == (
        b'{"callback_url":"http://{mydomain}/callback","energy_amount":32000,"out_trade_no":"123456",'
        b'"period":"1D","receive_address":"TExWKszFWYTKZH8LYiovAPKzS3L9MLZ4kw"}'
    )
    assert request.headers["timestamp"] == "1686796826"
    assert request.headers["signature"] == "07c125cabfe006614a02131f927cca9e7a654f7644a817b155fad591e1c50f7b"


def test_create_headers_body_and_result(client: ItrxClient, stub: StubServer, observer: Observations) -> None:
    stub.reply(200, {"errno": 0, "serial": SERIAL, "amount": 3120000, "balance": 795000000000})
    result = client.create(PARAMS, "order-worker:cmd-0001:itrx", CALLBACK)
    (request,) = stub.received
    assert (request.method, request.path) == ("POST", "/api/v1/frontend/order")
    assert request.headers["api-key"] == API_KEY
    assert request.headers["content-type"] == "application/json"
    assert request.headers["timestamp"] == "1700000000"
    # the stub recomputes the signature over the raw bytes it received
    assert request.headers["signature"] == itrx_sign(SECRET, request.headers["timestamp"], request.body)
    assert request.body == canonical_json(json.loads(request.body))
    assert json.loads(request.body) == {
        "energy_amount": 32000,
        "period": "1D",
        "receive_address": ADDR,
        "out_trade_no": "order-worker:cmd-0001:itrx",
        "callback_url": CALLBACK,
    }
    assert result.token is None and not result.replayed
    assert result.order.order_id == SERIAL
    assert (result.order.provider_status, result.order.status) == ("accepted", Status.PROCESSING)
    assert result.order.order == {
        "serial": SERIAL,
        "out_trade_no": "order-worker:cmd-0001:itrx",
        "energy_amount": 32000,
        "period": "1D",
        "receive_address": ADDR,
        "cost_sun": "3120000",
        "balance_sun": "795000000000",
    }
    assert observer.calls[0][:3] == ("itrx", "create", "ok")
    assert observer.calls[0][4] == 0


def test_create_never_reuses_a_kept_alive_connection_and_reads_do(
    client: ItrxClient, stub: StubServer
) -> None:
    stub.reply(200, {"errno": 0, "serial": SERIAL, "amount": 3120000, "balance": 795000000000})
    client.create(PARAMS, "order-worker:cmd-0001:itrx", CALLBACK)
    client.create(PARAMS, "order-worker:cmd-0002:itrx", CALLBACK)
    stub.reply(200, QUERY_ANSWER)
    client.fetch(SERIAL)
    client.fetch(SERIAL)
    first, second, read, next_read = (r.client_port for r in stub.received)
    assert first != second, "the second create went on a connection opened for it"
    assert read == next_read == second, "reads keep using the pool"


def test_create_optional_fields(client: ItrxClient, stub: StubServer) -> None:
    stub.reply(200, {"errno": 0, "serial": SERIAL, "balance": 1})
    params = ItrxParams(energy_amount=65000, period="1H", receive_address=ADDR, active=1, exclusive=1)
    result = client.create(params, "trade-0001")
    sent = json.loads(stub.received[0].body)
    assert sent == {
        "active": 1,
        "energy_amount": 65000,
        "exclusive": 1,
        "out_trade_no": "trade-0001",
        "period": "1H",
        "receive_address": ADDR,
    }
    assert "callback_url" not in sent
    assert result.order.order["cost_sun"] is None


@pytest.mark.parametrize(
    ("out_trade_no", "callback_url"),
    [("", None), ("订单-42", None), ("ok-0001", "ftp://x"), ("ok-0001", "https://é")],
)
def test_bad_local_input_is_refused_before_sending(
    client: ItrxClient, stub: StubServer, out_trade_no: str, callback_url: str | None
) -> None:
    error = _fails(lambda: client.create(PARAMS, out_trade_no, callback_url))
    assert (error.fate, error.retryable) == (Fate.NOT_SENT, False)
    assert stub.received == []


# --- error mapping (spec §4) ---------------------------------------------------------------------------

CREATE_ERRORS = [
    # (http status, body, headers, fate, code, retryable)
    (200, {"errno": 1, "message": "insufficient balance"}, {}, Fate.REFUSED, "errno_1", False),
    (200, {"errno": 7, "message": "address not activated"}, {}, Fate.REFUSED, "errno_7", False),
    (
        400,
        {"energy_amount": ["Ensure this value is greater than or equal to 10000."]},
        {},
        Fate.REFUSED,
        "invalid_fields",
        False,
    ),
    (400, {"detail": "API not found"}, {}, Fate.REFUSED, "rejected", False),
    (400, b"<html>bad</html>", {}, Fate.REFUSED, "http_400", False),
    (403, {"detail": "forbidden"}, {}, Fate.REFUSED, "http_403", False),
    (404, b"not here", {}, Fate.REFUSED, "http_404", False),
    (429, b"", {"Retry-After": "9"}, Fate.REFUSED, "http_429", True),
    (500, b"oops", {}, Fate.UNKNOWN, "http_500", True),
    (502, b"bad gateway", {}, Fate.UNKNOWN, "http_502", True),
    (503, {"errno": 0, "serial": SERIAL}, {}, Fate.UNKNOWN, "http_503", True),
    (302, b"", {"Location": "/x"}, Fate.UNKNOWN, "http_302", True),
    (200, b"not json", {}, Fate.UNKNOWN, "bad_response", True),
    (200, {"errno": 0}, {}, Fate.UNKNOWN, "bad_response", True),
    (200, {"errno": "0", "serial": SERIAL}, {}, Fate.UNKNOWN, "bad_response", True),
    (200, [1, 2], {}, Fate.UNKNOWN, "bad_response", True),
]


@pytest.mark.parametrize(("status", "body", "headers", "fate", "code", "retryable"), CREATE_ERRORS)
def test_create_error_mapping(
    client: ItrxClient,
    stub: StubServer,
    observer: Observations,
    status: int,
    body: Any,
    headers: dict[str, str],
    fate: Fate,
    code: str,
    retryable: bool,
) -> None:
    if isinstance(body, bytes):
        stub.reply_raw(status, body, headers)
    else:
        stub.reply(status, body, headers)
    error = _fails(lambda: client.create(PARAMS, "trade-0001", CALLBACK))
    assert (error.fate, error.code, error.retryable) == (fate, code, retryable)
    assert error.http_status == status
    assert len(stub.received) == 1, "itrx create is never re-sent by the client"
    assert observer.calls[-1][:3] == ("itrx", "create", code)
    assert_no_canary(error, observer.calls)
    if status == 429:
        assert error.retry_after == 9.0


def test_errno_message_becomes_the_reason(client: ItrxClient, stub: StubServer) -> None:
    stub.reply(200, {"errno": 1, "message": "insufficient balance"})
    assert _fails(lambda: client.create(PARAMS, "trade-0001")).reason == "create: insufficient balance"


def test_field_errors_list_fields_but_not_callback_values(client: ItrxClient, stub: StubServer) -> None:
    stub.reply(
        400,
        {
            "period": ['"2W" is not a valid choice.'],
            "callback_url": [f"{CALLBACK} is not reachable"],
            "energy_amount": ["Ensure this value is greater than or equal to 10000."],
        },
    )
    error = _fails(lambda: client.create(PARAMS, "trade-0001", CALLBACK))
    assert error.code == "invalid_fields"
    assert "callback_url" in error.reason
    assert "period" in error.reason and "energy_amount" in error.reason
    assert "10000" in error.reason
    assert_no_canary(error)


def test_echoed_secret_and_key_are_masked(
    client: ItrxClient, stub: StubServer, observer: Observations
) -> None:
    def echo(request: Received) -> Reply:
        return json_reply(200, {"errno": 1, "message": f"bad sig {SECRET} for {request.headers['api-key']}"})

    stub.responder = echo
    error = _fails(lambda: client.create(PARAMS, "trade-0001"))
    assert "***" in error.reason
    assert_no_canary(error, client, observer.calls)
    assert repr(client).startswith("ItrxClient(http://127.0.0.1:")


def test_timeout_on_create_is_unknown(silent_server: RawServer) -> None:
    with PartnerHttp(connect_timeout=0.5, read_timeout=0.2) as http:
        client = ItrxClient(silent_server.url, API_KEY, SecretStr(SECRET), http)
        error = _fails(lambda: client.create(PARAMS, "trade-0001"))
    assert (error.fate, error.code) == (Fate.UNKNOWN, "timeout")
    assert len(silent_server.requests) == 1


def test_close_mid_exchange_on_create_is_unknown(raw_server: Any, http: PartnerHttp) -> None:
    server = raw_server(close_after_request)
    client = ItrxClient(server.url, API_KEY, SecretStr(SECRET), http)
    error = _fails(lambda: client.create(PARAMS, "trade-0001"))
    assert error.fate is Fate.UNKNOWN


def test_refused_connection_is_not_sent(refused_url: str, http: PartnerHttp, observer: Observations) -> None:
    client = ItrxClient(refused_url, API_KEY, SecretStr(SECRET), http, observer=observer)
    error = _fails(lambda: client.create(PARAMS, "trade-0001"))
    assert (error.fate, error.code, error.retryable) == (Fate.NOT_SENT, "connection_refused", True)
    assert observer.calls[0][:3] == ("itrx", "create", "connection_refused")


# --- query -------------------------------------------------------------------------------------------


def test_fetch_parses_the_spec_example(client: ItrxClient, stub: StubServer, observer: Observations) -> None:
    stub.reply(200, QUERY_ANSWER)
    order = client.fetch(SERIAL)
    (request,) = stub.received
    assert (request.method, request.path) == ("GET", f"/api/v1/frontend/order/query?serial={SERIAL}")
    assert request.headers["api-key"] == API_KEY
    assert "signature" not in request.headers and "timestamp" not in request.headers
    assert order.order_id == SERIAL
    assert (order.provider_status, order.status) == ("40", Status.COMPLETED)
    assert order.updated_at is None
    assert order.order == {
        "serial": SERIAL,
        "receive_address": "TKxZ3Nv1t2n2e6S9uVd8Qm4Ew7Yb5Rc1Lp",
        "energy_amount": 65000,
        "delegated_energy": 65000,
        "period": "1H",
        "cost_sun": "6500000",
        "refund_sun": "0",
        "created_at": "2024-03-01T08:00:01.004Z",
        "created_at_unix": 1709280001,
        "delegations": [
            {
                "delegate_tx_id": "aa" * 32,
                "delegated_at": "2024-03-01T08:00:03.120Z",
                "reclaim_tx_id": "bb" * 32,
                "reclaim_due_at": "2024-03-01T09:00:03.120Z",
                "reclaimed_at": "2024-03-01T08:07:41.500Z",
                "status": 30,
            }
        ],
    }
    json.dumps(order.order)
    assert observer.calls[0][:3] == ("itrx", "query", "ok")


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (0, Status.EXPIRED),
        (10, Status.AWAITING_DEPOSIT),
        (32, Status.PROCESSING),
        (41, Status.REFUNDED),
        (43, Status.FAILED),
        (42, None),
    ],
)
def test_fetch_status_mapping(client: ItrxClient, stub: StubServer, raw: int, status: Status | None) -> None:
    stub.reply(200, {**QUERY_ANSWER, "status": raw})
    order = client.fetch(SERIAL)
    assert (order.provider_status, order.status) == (str(raw), status)


def test_fetch_unknown_serial(client: ItrxClient, stub: StubServer, observer: Observations) -> None:
    stub.reply(200, {"errno": 404, "message": "Order not found"})
    error = _fails(lambda: client.fetch(SERIAL))
    assert (error.fate, error.code, error.retryable) == (Fate.REFUSED, "errno_404", False)
    assert "Order not found" in error.reason
    assert observer.calls[0][:3] == ("itrx", "query", "errno_404")


@pytest.mark.parametrize(
    "answer",
    [
        {**QUERY_ANSWER, "status": None},
        {**QUERY_ANSWER, "status": "x"},
        {**QUERY_ANSWER, "order_no": "other"},
    ],
)
def test_fetch_unusable_answer_is_unknown(
    client: ItrxClient, stub: StubServer, answer: dict[str, Any]
) -> None:
    stub.reply(200, answer)
    error = _fails(lambda: client.fetch(SERIAL))
    assert (error.fate, error.code) == (Fate.UNKNOWN, "bad_response")


def test_fetch_serial_is_url_encoded(client: ItrxClient, stub: StubServer) -> None:
    stub.reply(200, {**QUERY_ANSWER, "order_no": "a&b c"})
    client.fetch("a&b c")
    assert stub.received[0].path == "/api/v1/frontend/order/query?serial=a%26b+c"


# --- balance / price -------------------------------------------------------------------------------------


def test_balance(client: ItrxClient, stub: StubServer, observer: Observations) -> None:
    stub.reply(200, {"platform_avail_energy": 1200000, "small_addition": 0.6, "balance": 795000000000})
    assert client.balance() == 795000000000
    assert stub.received[0].path == "/api/v1/frontend/index-data"
    assert observer.calls[0][:3] == ("itrx", "index-data", "ok")


def test_balance_empty_data_means_wrong_key(client: ItrxClient, stub: StubServer) -> None:
    stub.reply(200, {})
    error = _fails(client.balance)
    assert (error.fate, error.code, error.retryable) == (Fate.REFUSED, "no_balance", False)


def test_price(client: ItrxClient, stub: StubServer, observer: Observations) -> None:
    stub.reply(
        200, {"period": "1D", "energy_amount": 65000, "price": 90, "total_price": 5850000, "addition": 0}
    )
    assert client.price(65000, "1D") == 5850000
    assert stub.received[0].path == "/api/v1/frontend/order/price?period=1D&energy_amount=65000"
    assert observer.calls[0][:3] == ("itrx", "price", "ok")


def test_price_without_total_is_unknown(client: ItrxClient, stub: StubServer) -> None:
    stub.reply(200, {"price": 90})
    assert _fails(lambda: client.price(65000, "1D")).code == "bad_response"


def test_get_403_is_refused(client: ItrxClient, stub: StubServer) -> None:
    stub.reply(403, {"detail": "forbidden"})
    error = _fails(lambda: client.price(65000, "1D"))
    assert (error.fate, error.code, error.retryable) == (Fate.REFUSED, "http_403", False)


# --- callbacks -----------------------------------------------------------------------------------------


def test_parse_callback_with_serial_and_status() -> None:
    serial, trade, order = parse_callback(
        {"out_trade_no": "123456", "serial": "7297a8a2a9e39b86fc5bad0d2e9edda2", "status": 40}
    )
    assert (serial, trade) == ("7297a8a2a9e39b86fc5bad0d2e9edda2", "123456")
    assert order is not None
    assert (order.order_id, order.provider_status, order.status) == (serial, "40", Status.COMPLETED)
    assert order.order["out_trade_no"] == "123456"
    assert ItrxClient.parse_callback({"serial": "s1", "status": 40})[2] is not None


def test_parse_callback_shaped_like_a_query_answer() -> None:
    body = {k: v for k, v in QUERY_ANSWER.items() if k != "errno"} | {
        "out_trade_no": "t-1",
        "energy_amount": "65000",
    }
    serial, trade, order = parse_callback(body)
    assert (serial, trade) == (SERIAL, "t-1")
    assert (
        order is not None and order.order["energy_amount"] == 65000 and order.order["cost_sun"] == "6500000"
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"out_trade_no": "123456"}, (None, "123456", False)),
        ({"serial": "s1"}, ("s1", None, False)),
        ({"serial": "s1", "status": "40"}, ("s1", None, True)),
        ({"serial": "s1", "status": "done"}, ("s1", None, False)),
        ({"order_no": "s2", "status": 20, "out_trade_no": 77}, ("s2", "77", True)),
        ({"serial": 5, "status": 40}, ("5", None, True)),
        ({"serial": True, "status": 40}, (None, None, False)),
        ({}, (None, None, False)),
        ([], (None, None, False)),
        ("text", (None, None, False)),
        (None, (None, None, False)),
    ],
)
def test_parse_callback_is_lenient(body: Any, expected: tuple[str | None, str | None, bool]) -> None:
    serial, trade, order = parse_callback(body)
    assert (serial, trade, order is not None) == expected
