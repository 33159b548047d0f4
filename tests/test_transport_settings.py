"""A partner's transport: the shared ORDER_WORKER_HTTP_* values and the partner's own proxy and TLS
files (ORDER_WORKER_<PARTNER>_PROXY_URL, _CA_BUNDLE, _CLIENT_CERT, _CLIENT_KEY) become one
TransportSettings, checked when the service starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from worker.partners import registry
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
    groups = registry.checked_groups(settings)
    itrx = registry.transport_settings(settings.calls, groups["itrx"])
    zerotrace = registry.transport_settings(settings.calls, groups["0trace"])
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


def test_a_partner_group_may_set_its_own_timeouts_and_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDER_WORKER_HTTP_READ_TIMEOUT", "7")
    monkeypatch.setenv("ORDER_WORKER_ITRX_READ_TIMEOUT", "25")
    monkeypatch.setenv("ORDER_WORKER_ITRX_CONNECT_TIMEOUT", "1.5")
    monkeypatch.setenv("ORDER_WORKER_ZEROTRACE_POOL_SIZE", "4")
    settings = Settings()
    groups = registry.checked_groups(settings)
    itrx = registry.transport_settings(settings.calls, groups["itrx"])
    zerotrace = registry.transport_settings(settings.calls, groups["0trace"])
    assert (itrx.connect_timeout, itrx.read_timeout, itrx.pool_size) == (1.5, 25.0, 16)
    assert (zerotrace.connect_timeout, zerotrace.read_timeout, zerotrace.pool_size) == (3.0, 7.0, 4)
    for text in (repr(settings), str(settings), repr(groups["itrx"]), repr(itrx), repr(PartnerHttp(itrx))):
        assert "CANARY" not in text


def test_a_bad_partner_transport_fails_at_start_up_without_echoing_it() -> None:
    settings = Settings(partners={"itrx": {"proxy_url": SecretStr("socks5://worker:CANARY-PW@proxy:1080")}})
    with pytest.raises(ValueError, match="itrx transport: ") as info:
        registry.checked_groups(settings)
    assert "CANARY" not in str(info.value)
    with pytest.raises(ValueError, match=r"0trace transport: .*client_key is set without client_cert"):
        registry.checked_groups(Settings(partners={"0trace": {"client_key": Path("/k.pem")}}))


def test_every_partner_gets_a_client_of_its_own() -> None:
    connected = registry.connect(Settings())
    clients = [c.http for c in connected.values()]
    assert len(clients) == 2 and clients[0] is not clients[1]
    for client in clients:
        assert client is not None
        client.close()


def test_transport_settings_are_bounded() -> None:
    with pytest.raises(ValidationError):
        TransportSettings(max_header_count=101)  # http.client refuses more than 100 header lines anyway
    with pytest.raises(ValidationError):
        TransportSettings(idle_expiry=0)
