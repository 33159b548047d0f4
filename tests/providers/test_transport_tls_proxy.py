"""The transport against the sandbox over real TLS (a test CA made here with trustme, client
certificates) and through a real forward proxy (tests/support/proxy.py), on loopback only."""

from __future__ import annotations

import base64
import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from order_worker_sandbox.testing import RunningSandbox, running_sandbox
from pydantic import SecretStr
from urllib3.exceptions import SSLError

from tests.providers.partner_stubs import RawServer
from tests.support.proxy import TestProxy
from worker.partners.base import Fate, PartnerError
from worker.partners.itrx.client import ItrxClient
from worker.partners.itrx.settings import DEVELOPMENT_API_KEY as SANDBOX_ITRX_API_KEY
from worker.partners.itrx.settings import DEVELOPMENT_API_SECRET as SANDBOX_ITRX_API_SECRET
from worker.transport import PartnerHttp, TransportSettings, classify_transport_error


class Pki:
    """A partner CA with the sandbox's server certificate, and a client CA with our certificate."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ca = trustme.CA()
        self.client_ca = trustme.CA()
        self.ca_file = self._write("ca.pem", self.ca.cert_pem.bytes())
        server = self.ca.issue_cert("127.0.0.1", "localhost")
        self.server_cert = self._write("server.pem", server.cert_chain_pems[0].bytes())
        self.server_key = self._write("server.key", server.private_key_pem.bytes())
        self.client_ca_file = self._write("client-ca.pem", self.client_ca.cert_pem.bytes())
        client = self.client_ca.issue_cert("order-worker@test")
        self.client_cert = self._write("client.pem", client.cert_chain_pems[0].bytes())
        self.client_key = self._write("client.key", client.private_key_pem.bytes())
        self.other_ca_file = self._write("other-ca.pem", trustme.CA().cert_pem.bytes())

    def _write(self, name: str, data: bytes) -> Path:
        path = self.folder / name
        path.write_bytes(data)
        return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def https_sandbox(pki: Pki) -> Iterator[RunningSandbox]:
    with running_sandbox(tls_cert_file=str(pki.server_cert), tls_key_file=str(pki.server_key)) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def mtls_sandbox(pki: Pki) -> Iterator[RunningSandbox]:
    with running_sandbox(
        tls_cert_file=str(pki.server_cert),
        tls_key_file=str(pki.server_key),
        tls_client_ca_file=str(pki.client_ca_file),
    ) as sandbox:
        yield sandbox


@pytest.fixture
def http_sandbox() -> Iterator[RunningSandbox]:
    with running_sandbox() as sandbox:
        yield sandbox


def _balance(base_url: str, **transport: object) -> int:
    settings = TransportSettings(connect_timeout=2, read_timeout=5, proxy_from_env=False, **transport)  # type: ignore[arg-type]
    with PartnerHttp(settings) as http:
        client = ItrxClient(base_url, SANDBOX_ITRX_API_KEY, SecretStr(SANDBOX_ITRX_API_SECRET), http)
        return client.balance()


def _refusal(base_url: str, **transport: object) -> PartnerError:
    with pytest.raises(PartnerError) as info:
        _balance(base_url, **transport)
    return info.value


# --- TLS ------------------------------------------------------------------------------------------------


def test_the_sandbox_serves_https_verified_by_our_ca(https_sandbox: RunningSandbox, pki: Pki) -> None:
    assert https_sandbox.base_url.startswith("https://")
    assert _balance(https_sandbox.base_url, ca_bundle=pki.ca_file) > 0


def test_a_certificate_from_another_ca_is_refused_before_sending(
    https_sandbox: RunningSandbox, pki: Pki
) -> None:
    error = _refusal(https_sandbox.base_url, ca_bundle=pki.other_ca_file)
    assert (error.fate, error.code, error.retryable) == (Fate.NOT_SENT, "tls_verify", False)
    assert error.reason == "GET /api/v1/frontend/index-data: partner TLS certificate rejected"


def test_mtls_with_our_client_certificate(mtls_sandbox: RunningSandbox, pki: Pki) -> None:
    balance = _balance(
        mtls_sandbox.base_url, ca_bundle=pki.ca_file, client_cert=pki.client_cert, client_key=pki.client_key
    )
    assert balance > 0


@pytest.mark.parametrize("with_certificate", [False, True], ids=["no-certificate", "from-an-unknown-ca"])
def test_mtls_without_an_accepted_client_certificate_is_refused(
    mtls_sandbox: RunningSandbox, pki: Pki, with_certificate: bool
) -> None:
    """With TLS 1.3 the server judges our certificate after our side of the handshake is done, so our
    request is already written when the sandbox drops the connection (without an alert, as asyncio's TLS
    does): the sandbox's application never sees it, but all the client can prove is UNKNOWN."""
    extra: dict[str, object] = {}
    if with_certificate:  # a certificate the sandbox does not trust: issued by the partner CA
        leaf = pki.ca.issue_cert("stranger@test")
        extra["client_cert"] = pki._write("stranger.pem", leaf.private_key_and_cert_chain_pem.bytes())
    before = _mtls_requests(mtls_sandbox, pki)
    error = _refusal(mtls_sandbox.base_url, ca_bundle=pki.ca_file, **extra)
    assert (error.fate, error.code) == (Fate.UNKNOWN, "connection_closed")
    assert _mtls_requests(mtls_sandbox, pki) == before


def _mtls_requests(sandbox: RunningSandbox, pki: Pki) -> int:
    with PartnerHttp(ca_bundle=pki.ca_file, client_cert=pki.client_cert, client_key=pki.client_key) as http:
        answer = http.get(f"{sandbox.base_url}/_sandbox/stats", {})
    counted: dict[str, int] = json.loads(answer.body)["requests"]
    return sum(counted.values())


def test_a_client_certificate_alert_is_not_sent() -> None:
    """A partner whose TLS layer sends the alert (TLS 1.2, or a server that flushes it) proves that its
    application never received the request."""
    alert = ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required")
    alert.reason = "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    error = classify_transport_error(SSLError(alert), "POST", "https://partner.example/api/v1/create")
    assert (error.fate, error.code, error.retryable) == (Fate.NOT_SENT, "tls_client_cert", False)


def test_a_tls_handshake_that_never_completes_is_a_connect_timeout(silent_server: RawServer) -> None:
    """The listener accepts and never answers the ClientHello: no request byte can have been written."""
    url = silent_server.url.replace("http://", "https://")
    started = time.monotonic()
    http = PartnerHttp(connect_timeout=0.3, read_timeout=5, proxy_from_env=False)
    with http, pytest.raises(PartnerError) as info:
        http.post(f"{url}/api/v1/create", b"{}", {})
    assert (info.value.fate, info.value.code, info.value.retryable) == (
        Fate.NOT_SENT,
        "connect_timeout",
        True,
    )
    assert time.monotonic() - started < 2


# --- proxy ----------------------------------------------------------------------------------------------


def test_https_calls_go_through_a_connect_tunnel(https_sandbox: RunningSandbox, pki: Pki) -> None:
    with TestProxy() as proxy:
        for _ in range(2):
            assert _balance(https_sandbox.base_url, ca_bundle=pki.ca_file, proxy_url=proxy.url) > 0
        assert proxy.connects == [f"127.0.0.1:{https_sandbox.port}"] * 2


def test_http_calls_are_forwarded_by_the_proxy(http_sandbox: RunningSandbox) -> None:
    with TestProxy() as proxy:
        assert _balance(http_sandbox.base_url, proxy_url=proxy.url) > 0
    assert proxy.forwarded == [f"GET {http_sandbox.base_url}/api/v1/frontend/index-data"]


def test_a_proxy_refusing_the_tunnel_is_not_sent(https_sandbox: RunningSandbox, pki: Pki) -> None:
    before = _sandbox_requests(https_sandbox, pki)
    with TestProxy(refuse=True) as proxy:
        error = _refusal(https_sandbox.base_url, ca_bundle=pki.ca_file, proxy_url=proxy.url)
        assert proxy.connects == [f"127.0.0.1:{https_sandbox.port}"]
    assert (error.fate, error.code, error.retryable) == (Fate.NOT_SENT, "proxy_refused", True)
    assert _sandbox_requests(https_sandbox, pki) == before


def test_an_unreachable_proxy_is_not_sent(http_sandbox: RunningSandbox, refused_url: str) -> None:
    error = _refusal(http_sandbox.base_url, proxy_url=refused_url)
    assert (error.fate, error.code) == (Fate.NOT_SENT, "proxy_unreachable")


def test_proxy_credentials_are_sent_and_never_shown(http_sandbox: RunningSandbox) -> None:
    expected = "Basic " + base64.b64encode(b"worker:CANARY-PW").decode()
    with TestProxy(require_auth=expected) as proxy:
        url = f"http://worker:CANARY-PW@127.0.0.1:{proxy.port}"
        assert _balance(http_sandbox.base_url, proxy_url=SecretStr(url)) > 0
        with PartnerHttp(proxy_url=SecretStr(url)) as http:
            assert "CANARY" not in repr(http) and "CANARY" not in repr(http.settings)


def test_environment_proxies_and_no_proxy_are_honoured(
    http_sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TestProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        _env_balance(http_sandbox.base_url)
        assert len(proxy.forwarded) == 1
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        _env_balance(http_sandbox.base_url)
        assert len(proxy.forwarded) == 1  # exempt: went direct


def _env_balance(base_url: str) -> None:
    with PartnerHttp(connect_timeout=2, read_timeout=5) as http:
        ItrxClient(base_url, SANDBOX_ITRX_API_KEY, SecretStr(SANDBOX_ITRX_API_SECRET), http).balance()


def _sandbox_requests(sandbox: RunningSandbox, pki: Pki) -> int:
    """Requests the sandbox has counted (its own stats, read over a direct connection)."""
    with PartnerHttp(ca_bundle=pki.ca_file, proxy_from_env=False) as http:
        answer = http.get(f"{sandbox.base_url}/_sandbox/stats", {})
    counted: dict[str, int] = json.loads(answer.body)["requests"]
    return sum(counted.values())
