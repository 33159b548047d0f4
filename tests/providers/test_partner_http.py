"""PartnerHttp: keep-alive, no retries, no redirects, and the fate of every way a call can break."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    EmptyPoolError,
    LocationParseError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from tests.providers.partner_stubs import (
    RawServer,
    Reply,
    StubServer,
    close_after_request,
    garbage_response,
    reset_after_request,
    truncate_response,
)
from worker.partners.base import Fate, PartnerError
from worker.transport import PartnerHttp, classify_transport_error, parse_retry_after, safe_text

RawFactory = Callable[[Callable[[socket.socket], None]], RawServer]


def _fails(call: Callable[[], object]) -> PartnerError:
    with pytest.raises(PartnerError) as info:
        call()
    return info.value


def test_returns_status_headers_and_body(stub: StubServer, http: PartnerHttp) -> None:
    stub.reply_raw(418, b"teapot", {"X-Thing": "1"})
    status, headers, body = http.post(f"{stub.url}/p", b"abc", {"Content-Type": "application/json"})
    assert (status, headers["x-thing"], body) == (418, "1", b"teapot")
    assert stub.received[0].body == b"abc"
    assert stub.received[0].headers["user-agent"].startswith("order-worker/")


def test_connections_are_kept_alive(stub: StubServer, http: PartnerHttp) -> None:
    for _ in range(3):
        http.get(f"{stub.url}/x", {})
    assert len({r.client_port for r in stub.received}) == 1


def test_a_post_that_asks_for_a_new_connection_gets_one_and_leaves_it_to_the_pool(
    stub: StubServer, http: PartnerHttp
) -> None:
    http.get(f"{stub.url}/poll", {})
    http.post(f"{stub.url}/create", b"{}", {}, new_connection=True)
    http.post(f"{stub.url}/create", b"{}", {}, new_connection=True)
    http.get(f"{stub.url}/poll", {})
    poll, create, again, next_poll = (r.client_port for r in stub.received)
    assert len({poll, create, again}) == 3, "each such post opened its own connection"
    assert next_poll == again, "and the connection it opened serves later calls"


def test_redirects_are_not_followed(stub: StubServer, http: PartnerHttp) -> None:
    stub.reply_raw(302, b"", {"Location": "/elsewhere"})
    status, _, _ = http.post(f"{stub.url}/api", b"{}", {})
    assert status == 302
    assert [r.path for r in stub.received] == ["/api"]


def test_5xx_is_returned_not_retried(stub: StubServer, http: PartnerHttp) -> None:
    stub.reply_raw(503, b"busy", {"Retry-After": "1"})
    assert http.post(f"{stub.url}/api", b"{}", {}).status == 503
    assert len(stub.received) == 1


def test_refused_connection_is_not_sent(refused_url: str, http: PartnerHttp) -> None:
    error = _fails(lambda: http.post(f"{refused_url}/api/v1/create", b"{}", {}))
    assert (error.fate, error.code, error.retryable) == (Fate.NOT_SENT, "connection_refused", True)
    assert error.reason == "POST /api/v1/create: could not open a connection (refused)"


@pytest.fixture
def full_backlog() -> Iterator[str]:
    """A listener whose accept queue is full: new SYNs are dropped, so connecting times out."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        for _ in range(8):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.settimeout(0.2)
            fillers.append(probe)
            try:
                probe.connect(("127.0.0.1", port))
            except TimeoutError:
                break
        else:
            pytest.skip("this kernel does not drop SYNs on a full backlog")
        yield f"http://127.0.0.1:{port}"
    finally:
        for sock in fillers:
            sock.close()
        listener.close()


def test_connect_timeout_is_not_sent(full_backlog: str) -> None:
    with PartnerHttp(connect_timeout=0.2, read_timeout=0.2) as http:
        error = _fails(lambda: http.post(f"{full_backlog}/api", b"{}", {}))
    assert (error.fate, error.code, error.retryable) == (Fate.NOT_SENT, "connect_timeout", True)


def test_silence_after_sending_is_unknown_timeout(silent_server: RawServer) -> None:
    with PartnerHttp(connect_timeout=0.5, read_timeout=0.3) as http:
        started = time.monotonic()
        error = _fails(lambda: http.post(f"{silent_server.url}/api/v1/order", b'{"a":1}', {}))
        elapsed = time.monotonic() - started
    assert (error.fate, error.code, error.retryable) == (Fate.UNKNOWN, "timeout", True)
    assert 0.25 < elapsed < 2.0
    assert silent_server.requests and silent_server.requests[0].endswith(b'{"a":1}')
    assert "0.3s" in error.reason


@pytest.mark.parametrize(
    ("behaviour", "codes"),
    [
        (close_after_request, {"connection_closed", "connection_reset"}),
        (reset_after_request, {"connection_reset", "connection_closed"}),
        (truncate_response, {"truncated_response"}),
        (garbage_response, {"protocol_error"}),
    ],
)
def test_broken_exchanges_are_unknown(
    raw_server: RawFactory, http: PartnerHttp, behaviour: Callable[[socket.socket], None], codes: set[str]
) -> None:
    server = raw_server(behaviour)
    error = _fails(lambda: http.post(f"{server.url}/api/v1/create", b"{}", {}))
    assert error.fate is Fate.UNKNOWN
    assert error.retryable
    assert error.code in codes


def test_oversized_answer_is_unknown_and_pool_recovers(stub: StubServer) -> None:
    with PartnerHttp(max_response_bytes=100) as http:
        stub.reply_raw(200, b"x" * 1000)
        error = _fails(lambda: http.get(f"{stub.url}/big", {}))
        assert (error.fate, error.code, error.http_status) == (Fate.UNKNOWN, "response_too_large", 200)
        stub.reply_raw(200, b"small")
        assert http.get(f"{stub.url}/ok", {}).body == b"small"


def test_error_text_has_no_host_query_or_userinfo(refused_url: str, http: PartnerHttp) -> None:
    port = refused_url.rsplit(":", 1)[1]
    url = f"http://user:CANARY-PW@127.0.0.1:{port}/api/v1/order?serial=CANARY-Q"
    error = _fails(lambda: http.get(url, {"API-KEY": "CANARY-KEY"}))
    for text in (str(error), repr(error)):
        assert "CANARY" not in text
        assert "127.0.0.1" not in text
    assert error.__cause__ is None and error.__suppress_context__


def test_bad_scheme_is_not_sent_and_final(http: PartnerHttp) -> None:
    error = _fails(lambda: http.get("ftp://127.0.0.1/x", {}))
    assert (error.fate, error.code, error.retryable) == (Fate.NOT_SENT, "bad_url", False)


def test_pool_size_is_validated() -> None:
    with pytest.raises(ValueError, match="pool_size"):
        PartnerHttp(pool_size=0)


def test_keep_alive_pool_survives_server_closing_idle_connection(stub: StubServer, http: PartnerHttp) -> None:
    """urllib3 checks a pooled connection before reuse, so an idle close does not fail the next call."""
    stub.responder = lambda _req: Reply(200, b"ok", {"Connection": "close"})
    assert http.get(f"{stub.url}/a", {}).body == b"ok"
    assert http.get(f"{stub.url}/b", {}).body == b"ok"


# --- classification of exceptions that are hard to provoke on loopback ------------------------------

URL = "https://user:pw@partner.example/api/v1/create?x=1"
NO_POOL: Any = None  # urllib3 wants the pool/connection; classification never looks at it


def _cause(outer: Exception, inner: BaseException) -> Exception:
    outer.__cause__ = inner
    return outer


@pytest.mark.parametrize(
    ("exc", "fate", "code", "retryable"),
    [
        (
            NameResolutionError("partner.example", NO_POOL, socket.gaierror(-2, "nope")),
            Fate.NOT_SENT,
            "dns",
            True,
        ),
        (
            _cause(
                NewConnectionError(NO_POOL, "Failed to establish"), ConnectionRefusedError(111, "refused")
            ),
            Fate.NOT_SENT,
            "connection_refused",
            True,
        ),
        (
            _cause(NewConnectionError(NO_POOL, "Failed"), OSError(101, "unreachable")),
            Fate.NOT_SENT,
            "connect_failed",
            True,
        ),
        (ConnectTimeoutError(NO_POOL, "timed out"), Fate.NOT_SENT, "connect_timeout", True),
        (ReadTimeoutError(NO_POOL, URL, "Read timed out."), Fate.UNKNOWN, "timeout", True),
        (SSLError(ssl.SSLCertVerificationError(1, "bad cert")), Fate.NOT_SENT, "tls_verify", False),
        (SSLError(ssl.SSLError(1, "record layer")), Fate.UNKNOWN, "tls_error", True),
        (LocationParseError("bad"), Fate.NOT_SENT, "bad_url", False),
        (EmptyPoolError(NO_POOL, "empty"), Fate.NOT_SENT, "pool_unavailable", True),
        (ClosedPoolError(NO_POOL, "closed"), Fate.NOT_SENT, "pool_unavailable", True),
        (
            ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")),
            Fate.UNKNOWN,
            "connection_reset",
            True,
        ),
        (
            ProtocolError("Connection aborted.", BrokenPipeError(32, "pipe")),
            Fate.UNKNOWN,
            "connection_reset",
            True,
        ),
        (ProtocolError("weird"), Fate.UNKNOWN, "protocol_error", True),
        (OSError("something"), Fate.UNKNOWN, "transport_error", True),
    ],
)
def test_classification(exc: Exception, fate: Fate, code: str, retryable: bool) -> None:
    error = classify_transport_error(exc, "POST", URL, 10.0)
    assert (error.fate, error.code, error.retryable) == (fate, code, retryable)
    assert error.reason.startswith("POST /api/v1/create: ")
    assert "partner.example" not in error.reason and "pw" not in error.reason and "x=1" not in error.reason


# --- helpers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("-1", None),
        ("nan", None),
        ("inf", None),
        ("", None),
        (None, None),
        ("soon", None),
    ],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", now=now) == pytest.approx(30.0)
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:00 GMT", now=now) == 0.0


def test_safe_text_masks_secrets_controls_and_length() -> None:
    text = safe_text("bad SECRET-VALUE here\n\x1b[31m" + "x" * 300, ["SECRET-VALUE", "", "ab"])
    assert "SECRET-VALUE" not in text and "***" in text
    assert "\n" not in text and "\x1b" not in text
    assert len(text) <= 163
