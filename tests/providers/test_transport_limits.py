"""The partner's answer never decides how long a call takes or how much memory it needs: each hostile
answer below comes from a real socket and must end in a clear PartnerError, with a bounded peak."""

from __future__ import annotations

import gzip
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator

import pytest

from tests.providers.partner_stubs import RawServer, StubServer, read_request
from worker.partners.base import Fate, PartnerError
from worker.transport import PartnerHttp

RawFactory = Callable[[Callable[[socket.socket], None]], RawServer]
MEMORY_BUDGET = 10 * 1024 * 1024


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """256 MiB of zeros, gzip-compressed to about 255 KB (built in pieces: the test must not hold it)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    parts = [packer.compress(zeros) for _ in range(256)]
    parts.append(packer.flush())
    return b"".join(parts)


def _fails_within_budget(call: Callable[[], object]) -> tuple[PartnerError, int]:
    """The PartnerError the call raises, and the peak of memory allocated while it ran."""
    tracemalloc.start()
    try:
        with pytest.raises(PartnerError) as info:
            call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return info.value, peak


def _then_close(answer: Callable[[socket.socket], None]) -> Callable[[socket.socket], None]:
    def behaviour(conn: socket.socket) -> None:
        read_request(conn)
        answer(conn)

    return behaviour


def test_a_gzip_bomb_stops_at_the_cap(raw_server: RawFactory, http: PartnerHttp, gzip_bomb: bytes) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(gzip_bomb)
    server = raw_server(_then_close(lambda conn: conn.sendall(head + gzip_bomb)))
    error, peak = _fails_within_budget(lambda: http.get(f"{server.url}/api/v1/order", {}))
    assert (error.fate, error.code, error.http_status) == (Fate.UNKNOWN, "response_too_large", 200)
    assert "decoded body" in error.reason
    assert peak < MEMORY_BUDGET


def test_an_endless_chunked_body_stops_at_the_cap(raw_server: RawFactory, http: PartnerHttp) -> None:
    def endless(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (16384, b"x" * 16384)
        while True:
            conn.sendall(chunk)

    server = raw_server(_then_close(endless))
    started = time.monotonic()
    error, peak = _fails_within_budget(lambda: http.get(f"{server.url}/api/v1/order", {}))
    assert (error.fate, error.code, error.http_status) == (Fate.UNKNOWN, "response_too_large", 200)
    assert peak < MEMORY_BUDGET
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("before", "dripped"),
    [
        (b"", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),  # the status line and headers
        (b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n", b"x" * 40),  # the body
    ],
    ids=["headers", "body"],
)
def test_a_slow_drip_ends_at_the_read_timeout(raw_server: RawFactory, before: bytes, dripped: bytes) -> None:
    """One byte a second never trips a per-recv timeout of 2.5 s; the whole answer must still end then."""

    def drip(conn: socket.socket) -> None:
        conn.sendall(before)
        for byte in dripped:
            conn.sendall(bytes([byte]))
            time.sleep(1.0)

    server = raw_server(_then_close(drip))
    with PartnerHttp(connect_timeout=1, read_timeout=2.5) as http:
        started = time.monotonic()
        error, peak = _fails_within_budget(lambda: http.post(f"{server.url}/api/v1/create", b"{}", {}))
        elapsed = time.monotonic() - started
    assert (error.fate, error.code, error.retryable) == (Fate.UNKNOWN, "timeout", True)
    assert 2.4 < elapsed < 3.6
    assert peak < MEMORY_BUDGET


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nX-Huge: " + b"a" * (1024 * 1024) + b"\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"b" * 1000) for i in range(90)) + b"\r\n",
    ],
    ids=["one-huge-line", "a-block-over-the-cap"],
)
def test_a_huge_header_is_refused(raw_server: RawFactory, http: PartnerHttp, head: bytes) -> None:
    def answer(conn: socket.socket) -> None:
        conn.sendall(head)
        conn.close()

    server = raw_server(_then_close(answer))
    error, peak = _fails_within_budget(lambda: http.get(f"{server.url}/api/v1/order", {}))
    assert (error.fate, error.code, error.retryable) == (Fate.UNKNOWN, "header_too_large", True)
    assert peak < MEMORY_BUDGET


@pytest.mark.parametrize(
    ("answer", "codes"),
    [
        (lambda conn: conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n"), {"protocol_error"}),
        (lambda conn: [conn.sendall(b"\x16\x03\x01" * 4096) for _ in iter(int, 1)], {"header_too_large"}),
    ],
    ids=["a-banner", "endless-binary"],
)
def test_a_non_http_answer_is_unknown(
    raw_server: RawFactory, http: PartnerHttp, answer: Callable[[socket.socket], None], codes: set[str]
) -> None:
    server = raw_server(_then_close(answer))
    error, peak = _fails_within_budget(lambda: http.post(f"{server.url}/api/v1/create", b"{}", {}))
    assert error.fate is Fate.UNKNOWN and error.retryable
    assert error.code in codes
    assert peak < MEMORY_BUDGET


# --- keep-alive idle expiry ------------------------------------------------------------------------------


@pytest.fixture
def stub_server() -> Iterator[StubServer]:
    server = StubServer()
    yield server
    server.close()


def test_a_connection_idle_past_the_expiry_is_not_reused(stub_server: StubServer) -> None:
    with PartnerHttp(idle_expiry=0.3) as http:
        http.get(f"{stub_server.url}/a", {})
        http.get(f"{stub_server.url}/b", {})  # at once: the same connection
        time.sleep(0.5)  # longer than the expiry: the next call must open a new connection
        http.get(f"{stub_server.url}/c", {})
    ports = [r.client_port for r in stub_server.received]
    assert ports[0] == ports[1]
    assert ports[2] != ports[1]


def test_a_refused_header_block_retires_the_connection(raw_server: RawFactory) -> None:
    """The body of an answer refused for its headers is never read, so its connection must not carry the
    next request: here the body comes late, after the next request could already have been written."""
    block = b"".join(b"X-%d: v\r\n" % i for i in range(20))
    head = b"HTTP/1.1 200 OK\r\n" + block + b"Content-Length: 2\r\n\r\n"

    def serve(conn: socket.socket) -> None:
        while read_request(conn):
            conn.sendall(head)
            time.sleep(0.3)
            conn.sendall(b"ok")

    server = raw_server(serve)
    with PartnerHttp(max_header_count=10) as http:
        for _ in range(2):
            with pytest.raises(PartnerError) as info:
                http.get(f"{server.url}/a", {})
            assert (info.value.fate, info.value.code) == (Fate.UNKNOWN, "header_too_large")
    assert len(server._held) == 2


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", lambda data: gzip.compress(data[:5]) + gzip.compress(data[5:])),  # two gzip members
        ("deflate", zlib.compress),  # the RFC's deflate: a zlib stream
        ("deflate", _raw_deflate),  # what many servers send as deflate
        ("gzip, deflate", lambda data: zlib.compress(gzip.compress(data))),  # applied in the listed order
        ("identity", lambda data: data),
    ],
)
def test_compressed_answers_are_decoded_within_the_cap(
    stub_server: StubServer, encoding: str, encode: Callable[[bytes], bytes]
) -> None:
    body = b'{"code":0,"data":{"id":"ABC123","status":"NEW"}}'
    stub_server.reply_raw(200, encode(body), {"Content-Encoding": encoding})
    with PartnerHttp() as http:
        assert http.get(f"{stub_server.url}/x", {}).body == body
    with PartnerHttp(max_response_bytes=len(body) - 1) as http, pytest.raises(PartnerError) as info:
        http.get(f"{stub_server.url}/x", {})
    assert info.value.code == "response_too_large"


def test_one_client_serves_many_threads_without_waiting_for_a_slot(stub_server: StubServer) -> None:
    """pool_size bounds the connections kept, not the calls in flight: a thread that finds every pooled
    connection busy opens its own rather than waiting (a wait would be a failure with no partner meaning)."""
    results: list[int] = []
    errors: list[BaseException] = []
    with PartnerHttp(pool_size=2) as http:

        def calls() -> None:
            try:
                for _ in range(25):
                    results.append(http.post(f"{stub_server.url}/api", b"{}", {}).status)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=calls) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert errors == []
    assert results == [200] * 150
    assert len(stub_server.received) == 150
