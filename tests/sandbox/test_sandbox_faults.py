"""Fault injection: lose_response commits then drops, reset drops before commit, times/probability/latency."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import pytest
import requests
from order_worker_sandbox.testing import ControlError, RunningSandbox

from tests.sandbox.conftest import CREATE, Itrx, ZeroTrace


def test_lose_response_commits_then_drops_0trace(zt: ZeroTrace, sb: RunningSandbox) -> None:
    sb.control.add_fault("0trace.create", "lose_response")
    with pytest.raises(requests.ConnectionError):
        zt.send("/api/v1/create", CREATE, headers={"Idempotency-Key": "lost-0000001"})
    (committed,) = sb.control.orders()
    assert committed["idempotency_key"] == "lost-0000001" and committed["status"] == "NEW"
    # the documented recovery: same key -> same order, token null (the orphaned-order case)
    replay = zt.create(idem="lost-0000001")
    assert replay["id"] == committed["id"] and replay["token"] is None
    assert len(sb.control.orders()) == 1
    assert sb.control.stats()["faults_triggered"] == {"0trace.create:lose_response": 1}


def test_lose_response_on_itrx_shows_non_idempotency(itrx: Itrx, sb: RunningSandbox) -> None:
    sb.control.add_fault("itrx.order", "lose_response")
    with pytest.raises(requests.ConnectionError):
        itrx.order(out_trade_no="retry-me")
    assert len(sb.control.orders("itrx")) == 1
    assert itrx.order(out_trade_no="retry-me").json()["errno"] == 0  # a blind retry double-orders
    assert [o["out_trade_no"] for o in sb.control.orders("itrx")] == ["retry-me", "retry-me"]


def test_reset_drops_before_commit(zt: ZeroTrace, sb: RunningSandbox) -> None:
    sb.control.add_fault("0trace.create", "reset")
    with pytest.raises(requests.ConnectionError):
        zt.send("/api/v1/create", CREATE)
    assert sb.control.orders() == []
    assert zt.create()["token"]


def test_times_fires_exactly_n_times(zt: ZeroTrace, sb: RunningSandbox) -> None:
    rule = sb.control.add_fault("0trace.order", "http_503", times=2)
    order = zt.create()
    ref = {"id": order["id"], "token": order["token"]}
    assert zt.call("/api/v1/order", ref) == (503, {"code": 11, "msg": "UPSTREAM_ERROR"})
    assert zt.call("/api/v1/order", ref) == (503, {"code": 11, "msg": "UPSTREAM_ERROR"})
    assert zt.call("/api/v1/order", ref)[0] == 200
    (listed,) = sb.control.faults()
    assert listed["id"] == rule["id"] and listed["fired"] == 2


def test_probability_with_seeded_rng(zt: ZeroTrace, sb: RunningSandbox) -> None:
    sb.control.patch_config(seed=1234)  # deterministic draws: the assertion below cannot flake
    sb.control.add_fault("0trace.price", "http_500", probability=0.3)
    price = {"type": "float", "fromCcy": "btc", "toCcy": "eth", "direction": "from", "amount": "0.01"}
    statuses = [zt.send("/api/v1/price", price, anonymous=True).status_code for _ in range(200)]
    failures = statuses.count(500)
    assert statuses.count(200) + failures == 200
    assert 30 <= failures <= 90, failures  # binomial(200, 0.3): mean 60, sd 6.5
    assert sb.control.faults()[0]["fired"] == failures


def test_probability_capped_by_times(zt: ZeroTrace, sb: RunningSandbox) -> None:
    sb.control.add_fault("0trace.*", "http_500", probability=1.0, times=3)
    statuses = [zt.send("/api/v1/currencies", b"", anonymous=True).status_code for _ in range(5)]
    assert statuses == [500, 500, 500, 200, 200]


def test_latency_and_latency_after(zt: ZeroTrace, sb: RunningSandbox) -> None:
    sb.control.add_fault("0trace.currencies", "latency", latency_ms=300)
    t0 = time.monotonic()
    assert zt.send("/api/v1/currencies", b"", anonymous=True).status_code == 200
    assert time.monotonic() - t0 >= 0.3
    sb.control.add_fault("0trace.create", "latency_after", latency_ms=1500)
    with pytest.raises(requests.Timeout):
        zt.send("/api/v1/create", CREATE, timeout=0.3)
    assert len(sb.control.orders()) == 1, "the slow answer was committed before the client gave up"


def test_429_fault_and_itrx_500(zt: ZeroTrace, itrx: Itrx, sb: RunningSandbox) -> None:
    sb.control.add_fault("0trace.create", "http_429", retry_after=7)
    r = zt.send("/api/v1/create", CREATE)
    assert r.status_code == 429 and r.headers["Retry-After"] == "7" and r.json()["code"] == 5
    sb.control.add_fault("itrx.order", "http_500")
    r = itrx.order()
    assert r.status_code == 500 and r.headers["Content-Type"].startswith("text/html")
    assert sb.control.orders() == []


def test_custom_error_and_clearing(zt: ZeroTrace, sb: RunningSandbox) -> None:
    sb.control.add_fault(
        "0trace.keys_rotate", "error", status=409, body={"code": 14, "msg": "ROTATION_CONFLICT"}
    )
    assert zt.call("/api/v1/keys/rotate", {"rotate": ["apiSecret"]}) == (
        409,
        {"code": 14, "msg": "ROTATION_CONFLICT"},
    )
    sb.control.add_fault("*", "http_503", times=5)
    sb.control.add_fault("itrx.order", "http_503", times=5)
    assert sb.control.clear_faults("itrx.order") == 1
    assert sb.control.clear_faults() == 2  # exhausted rules stay listed (with "fired") until cleared
    assert zt.send("/api/v1/currencies", b"", anonymous=True).status_code == 200


@pytest.mark.parametrize(
    "bad",
    [
        {"endpoint": "0trace.nope", "kind": "reset"},
        {"endpoint": "0trace.create", "kind": "explode"},
        {"endpoint": "0trace.create", "kind": "reset", "times": 0},
        {"endpoint": "0trace.create", "kind": "reset", "probability": 1.5},
        {"endpoint": "0trace.create", "kind": "latency"},
    ],
)
def test_bad_fault_rules_are_400(sb: RunningSandbox, bad: dict[str, object]) -> None:
    with pytest.raises(ControlError) as info:
        sb.control.request("POST", "/faults", bad)
    assert info.value.status == 400 and "error" in info.value.body


def test_idle_close_spares_a_new_connection_and_drops_a_reused_one_unread(sb: RunningSandbox) -> None:
    sb.control.add_fault("itrx.order", "idle_close", probability=1.0)
    kept_alive = Itrx(sb.base_url)  # one Session: one kept-alive connection
    assert kept_alive.order(out_trade_no="first-on-its-connection").json()["errno"] == 0
    with pytest.raises(requests.ConnectionError):
        kept_alive.order(out_trade_no="on-a-reused-connection")
    assert Itrx(sb.base_url).order(out_trade_no="on-a-new-connection").json()["errno"] == 0
    orders = [o["out_trade_no"] for o in sb.control.orders("itrx")]
    assert orders == ["first-on-its-connection", "on-a-new-connection"], (
        "a request closed unread commits nothing"
    )
    assert sb.control.stats()["faults_triggered"] == {"itrx.order:idle_close": 1}


def test_idle_close_knows_a_new_connection_from_the_port_of_a_closed_one(sb: RunningSandbox) -> None:
    """On loopback a client's next connection may leave from the port its last one used (Linux reuses a
    port still in TIME_WAIT there), so the sandbox must not take the port's history for the connection's."""
    sb.control.add_fault("itrx.order", "idle_close", probability=1.0)
    itrx = Itrx(sb.base_url)
    address = urlsplit(itrx.base_url)
    host, port = address.hostname or "127.0.0.1", address.port or 80

    def order_on(local_port: int, out_trade_no: str) -> tuple[int, bytes]:
        body = itrx.encode(itrx.order_data(out_trade_no=out_trade_no))
        head = {**itrx.signed_headers(body), "Host": f"{host}:{port}", "Content-Length": str(len(body))}
        head["Connection"] = "close"  # the sandbox closes first, so its side holds the TIME_WAIT
        request = f"POST {address.path}/order HTTP/1.1\r\n".encode()
        request += b"".join(f"{name}: {value}\r\n".encode() for name, value in head.items()) + b"\r\n" + body
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as conn:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            conn.bind((host, local_port))
            conn.settimeout(10)
            conn.connect((host, port))
            conn.sendall(request)
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
            return conn.getsockname()[1], answer

    local_port, first = order_on(0, "first-from-this-port")
    again, second = order_on(local_port, "second-from-this-port")
    assert again == local_port
    assert first.startswith(b"HTTP/1.1 200") and second.startswith(b"HTTP/1.1 200"), second[:200]
    assert [o["out_trade_no"] for o in sb.control.orders("itrx")] == [
        "first-from-this-port",
        "second-from-this-port",
    ]
    assert sb.control.stats()["faults_triggered"] == {}
