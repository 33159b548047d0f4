"""Settings.transport: the flat ORDER_WORKER_* variables become one partner's TransportSettings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from worker.settings import Settings
from worker.transport import PartnerHttp, TransportSettings


def test_each_partner_gets_its_own_proxy_and_tls_material(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDER_WORKER_ITRX_PROXY_URL", "http://worker:CANARY-PW@proxy.internal:3128")
    monkeypatch.setenv("ORDER_WORKER_ITRX_CLIENT_CERT", "/etc/order-worker/itrx.pem")
    monkeypatch.setenv("ORDER_WORKER_ITRX_CLIENT_KEY", "/etc/order-worker/itrx.key")
    monkeypatch.setenv("ORDER_WORKER_ZEROTRACE_CA_BUNDLE", "/etc/order-worker/0trace-ca.pem")
    monkeypatch.setenv("ORDER_WORKER_HTTP_READ_TIMEOUT", "7")
    monkeypatch.setenv("ORDER_WORKER_HTTP_IDLE_EXPIRY", "5")
    monkeypatch.setenv("ORDER_WORKER_HTTP_PROXY_FROM_ENV", "false")
    settings = Settings()
    itrx, zerotrace = settings.transport("itrx"), settings.transport("zerotrace")
    assert isinstance(itrx.proxy_url, SecretStr)
    assert itrx.proxy_url.get_secret_value() == "http://worker:CANARY-PW@proxy.internal:3128"
    assert (itrx.client_cert, itrx.client_key, itrx.ca_bundle) == (
        Path("/etc/order-worker/itrx.pem"),
        Path("/etc/order-worker/itrx.key"),
        None,
    )
    assert (zerotrace.proxy_url, zerotrace.ca_bundle) == (None, Path("/etc/order-worker/0trace-ca.pem"))
    for transport in (itrx, zerotrace):
        assert (transport.read_timeout, transport.idle_expiry, transport.proxy_from_env) == (7.0, 5.0, False)
        assert (transport.connect_timeout, transport.pool_size) == (3.0, 16)
    for text in (repr(settings), str(settings), repr(itrx), repr(PartnerHttp(itrx))):
        assert "CANARY" not in text


def test_a_bad_partner_transport_fails_at_start_up_without_echoing_it() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(itrx_proxy_url=SecretStr("socks5://worker:CANARY-PW@proxy:1080"))
    assert "itrx transport: " in str(info.value)
    assert "CANARY" not in str(info.value)
    with pytest.raises(ValidationError, match="client_key is set without client_cert"):
        Settings(zerotrace_client_key=Path("/k.pem"))


def test_unknown_partner_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown partner"):
        Settings().transport("other")


def test_transport_settings_are_bounded() -> None:
    with pytest.raises(ValidationError):
        TransportSettings(max_header_count=101)  # http.client refuses more than 100 header lines anyway
    with pytest.raises(ValidationError):
        TransportSettings(idle_expiry=0)
