"""Fixtures for the provider tests; the stand-in servers themselves live in ``partner_stubs``."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest

from tests.providers.partner_stubs import Observations, RawServer, StubServer, hold_silently
from worker.transport import PartnerHttp


@pytest.fixture(autouse=True)
def _no_proxy_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """The transport honours the standard proxy variables; these tests talk to loopback servers directly
    whatever the developer's shell says (a test that wants a proxy sets its own)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = StubServer()
    yield server
    server.close()


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket], None]], RawServer]]:
    servers: list[RawServer] = []

    def make(behaviour: Callable[[socket.socket], None]) -> RawServer:
        server = RawServer(behaviour)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def silent_server(raw_server: Callable[[Callable[[socket.socket], None]], RawServer]) -> RawServer:
    ref: list[RawServer] = []
    server = raw_server(hold_silently(ref))
    ref.append(server)
    return server


@pytest.fixture
def refused_url() -> str:
    """A 127.0.0.1 port that was just free: nothing listens, so connecting is refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def http() -> Iterator[PartnerHttp]:
    client = PartnerHttp(connect_timeout=0.5, read_timeout=0.5, pool_size=4)
    yield client
    client.close()


@pytest.fixture
def observer() -> Observations:
    return Observations()
