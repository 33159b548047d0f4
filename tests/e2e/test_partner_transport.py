"""End to end through the partner transport's deployment settings: the sandbox serves HTTPS with a
certificate from a test CA, the workers trust that CA only through ORDER_WORKER_*_CA_BUNDLE and reach the
sandbox only through a CONNECT proxy given by ORDER_WORKER_*_PROXY_URL; orders of both partners complete."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.support.partners import itrx_command, zerotrace_command
from tests.support.proxy import TestProxy
from tests.support.stack import Process, Sandbox, Stack, collect_events, terminal_for_all, wait_until
from worker.partners.base import PartnerError
from worker.processes import free_port, sandbox_argv
from worker.transport import PartnerHttp


class HttpsSandbox(Sandbox):
    ca_file: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


def _answers(url: str, ca_file: Path) -> bool:
    try:
        with PartnerHttp(ca_bundle=ca_file, proxy_from_env=False, connect_timeout=1, read_timeout=2) as http:
            return http.get(f"{url}/_sandbox/ping", {}).status == 200
    except PartnerError:
        return False


@pytest.fixture
def https_sandbox(log_dir: Path, tmp_path: Path) -> Iterator[HttpsSandbox]:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    ca_file, cert_file = tmp_path / "ca.pem", tmp_path / "server.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    port = free_port()
    process = Process(
        "sandbox-https",
        sandbox_argv(port, "--host", "127.0.0.1", "--speed", "100", "--tls-cert", str(cert_file)),
        {k: v for k, v in os.environ.items() if not k.startswith("ORDER_WORKER_")},
        log_dir,
    )
    try:
        wait_until(lambda: _answers(f"https://127.0.0.1:{port}", ca_file) or not process.alive, 30, "sandbox")
        assert process.alive, process.output()
        box = HttpsSandbox(process, port)
        box.ca_file = ca_file
        yield box
    finally:
        process.stop()


def test_orders_complete_over_tls_through_a_connect_proxy(
    https_sandbox: HttpsSandbox, log_dir: Path, tmp_path: Path
) -> None:
    with TestProxy() as proxy:
        settings = {"ORDER_WORKER_HTTP_PROXY_FROM_ENV": "false"}
        for partner in ("ZEROTRACE", "ITRX"):
            settings[f"ORDER_WORKER_{partner}_PROXY_URL"] = proxy.url
            settings[f"ORDER_WORKER_{partner}_CA_BUNDLE"] = str(https_sandbox.ca_file)
        stack = Stack(https_sandbox, f"sqlite:///{tmp_path / 'ledger.db'}", log_dir, settings)
        try:
            stack.start_worker()
            stack.start_scheduler()
            commands = [zerotrace_command(), itrx_command()]
            ids = {c["command_id"] for c in commands}
            with stack.watcher() as watcher, stack.producer() as producer:
                for command in commands:
                    producer.create_order(command)
                events = collect_events(watcher, terminal_for_all(ids), timeout=90)
        finally:
            stack.stop()
        tunnels = list(proxy.connects)
    completed = {e["command_id"] for e in events if e["status"] == "completed"}
    assert completed == ids, events[-4:]
    # each partner has its own client, so at least one tunnel each, all of them to the sandbox
    assert len(tunnels) >= 2 and set(tunnels) == {f"127.0.0.1:{https_sandbox.port}"}
