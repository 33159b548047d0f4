"""PartnerHttp on the wire: how answers are framed, what keeps a connection, TLS, and requests that must
never leave (a header or path that could split the request)."""

from __future__ import annotations

import datetime
import gzip
import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.providers.partner_stubs import RawServer, StubServer, read_request
from worker.partners.base import Fate, PartnerError
from worker.transport import PartnerHttp

RawFactory = Callable[[Callable[[socket.socket], None]], RawServer]


def _answering(*answers: bytes) -> Callable[[socket.socket], None]:
    """Answers each request on a connection with the next of ``answers`` (the last one repeats), verbatim."""

    def behaviour(conn: socket.socket) -> None:
        served = 0
        while read_request(conn):
            conn.sendall(answers[min(served, len(answers) - 1)])
            served += 1

    return behaviour


def _connections(server: RawServer) -> int:
    return len(server._held)


def test_chunked_answer_is_read_whole_and_keeps_the_connection(
    raw_server: RawFactory, http: PartnerHttp
) -> None:
    server = raw_server(
        _answering(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
    )
    for _ in range(3):
        assert http.get(f"{server.url}/x", {}).body == b"hello world"
    assert _connections(server) == 1


def test_informational_answers_are_skipped(raw_server: RawFactory, http: PartnerHttp) -> None:
    server = raw_server(
        _answering(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nok"
        )
    )
    answer = http.post(f"{server.url}/x", b"{}", {})
    assert (answer.status, answer.body, answer.headers["x-a"]) == (201, b"ok", "1")


def test_a_body_delimited_by_close_is_read_and_the_connection_dropped(
    raw_server: RawFactory, http: PartnerHttp
) -> None:
    def until_close(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
        conn.close()

    server = raw_server(until_close)
    assert http.get(f"{server.url}/a", {}).body == b"until the end"
    assert http.get(f"{server.url}/b", {}).body == b"until the end"
    assert _connections(server) == 2


def test_bytes_after_the_answer_retire_the_connection(raw_server: RawFactory, http: PartnerHttp) -> None:
    server = raw_server(_answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokJUNK"))
    assert http.get(f"{server.url}/a", {}).body == b"ok"
    assert http.get(f"{server.url}/b", {}).body == b"ok"
    assert _connections(server) == 2


def test_connection_close_is_honoured(raw_server: RawFactory, http: PartnerHttp) -> None:
    server = raw_server(_answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"))
    assert http.get(f"{server.url}/a", {}).body == b"ok"
    assert http.get(f"{server.url}/b", {}).body == b"ok"
    assert _connections(server) == 2


def test_a_compressed_answer_is_decoded(stub: StubServer, http: PartnerHttp) -> None:
    stub.reply_raw(200, gzip.compress(b'{"code":0}'), {"Content-Encoding": "gzip"})
    assert http.get(f"{stub.url}/x", {}).body == b'{"code":0}'


def test_a_chunked_answer_over_the_limit_is_dropped(raw_server: RawFactory) -> None:
    chunk = b"x" * 80
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(3)) + b"0\r\n\r\n"
    server = raw_server(_answering(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body))
    with PartnerHttp(max_response_bytes=100) as http, pytest.raises(PartnerError) as info:
        http.get(f"{server.url}/big", {})
    assert (info.value.fate, info.value.code, info.value.http_status) == (
        Fate.UNKNOWN,
        "response_too_large",
        200,
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Signature": "abc\r\nX-Injected: CANARY-VALUE"},
        {"X-Signature": "abc\nCANARY-VALUE"},
        {"X-Bad Name": "CANARY-VALUE"},
        {"X-Signature": "CANARY-VALUE-\u20ac"},
    ],
)
def test_a_header_that_could_split_the_request_is_never_sent(
    raw_server: RawFactory, http: PartnerHttp, headers: dict[str, str]
) -> None:
    server = raw_server(_answering(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
    with pytest.raises(PartnerError) as info:
        http.post(f"{server.url}/api/v1/create", b"{}", headers)
    error = info.value
    assert (error.fate, error.code, error.retryable) == (Fate.NOT_SENT, "bad_request_header", False)
    assert "CANARY" not in str(error) and "CANARY" not in repr(error)
    assert _connections(server) == 0


def test_a_path_with_a_space_is_never_sent(raw_server: RawFactory, http: PartnerHttp) -> None:
    server = raw_server(_answering(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
    with pytest.raises(PartnerError) as info:
        http.get(f"{server.url}/api/v1/order?id=1 HTTP/1.1\r\nX: y", {})
    assert (info.value.fate, info.value.code) == (Fate.NOT_SENT, "bad_url")
    assert _connections(server) == 0


# --- TLS ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, as (certificate file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "partner sandbox")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls_stub(certificate: tuple[Path, Path]) -> Iterator[StubServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    server = StubServer(tls=context)
    yield server
    server.close()


def test_tls_exchanges_share_one_connection(tls_stub: StubServer, certificate: tuple[Path, Path]) -> None:
    tls_stub.reply_raw(200, b'{"code":0}', {"Content-Type": "application/json"})
    with PartnerHttp(connect_timeout=2, read_timeout=2, ca_bundle=certificate[0]) as http:
        for _ in range(3):
            assert (
                http.post(f"{tls_stub.url}/api/v1/create", b'{"a":1}', {"X-Sig": "s"}).body == b'{"code":0}'
            )
    assert [r.body for r in tls_stub.received] == [b'{"a":1}'] * 3
    assert len({r.client_port for r in tls_stub.received}) == 1


def test_an_untrusted_certificate_is_not_sent_and_final(tls_stub: StubServer) -> None:
    with PartnerHttp(connect_timeout=2, read_timeout=2) as http, pytest.raises(PartnerError) as info:
        http.post(f"{tls_stub.url}/api/v1/create", b"{}", {})
    assert (info.value.fate, info.value.code, info.value.retryable) == (Fate.NOT_SENT, "tls_verify", False)
    assert tls_stub.received == []
