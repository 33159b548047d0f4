"""Canary secrets through the whole service: none may surface in logs, events, dead letters or /metrics.

The sandbox and the worker share canary credentials; the run covers successful orders of both partners,
partner failures (5xx, refusals, lost answers), malformed commands and pushes, so every error path writes
its logs. Tokens are recovered from the ledger with the canary key, then searched for as plaintext.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.support.partners import itrx_command, zerotrace_command
from tests.support.stack import Sandbox, Stack, collect_events, spawn_sandbox, terminal_for_all
from worker.sealing import TokenSealer

ZT_KEY = "canary-zt-key-7f3a9c"
ZT_SECRET = "CANARY-ZT-SECRET-5d1e0b7a9f3c2e4d6b8a"
ZT_WEBHOOK = "CANARY-ZT-WEBHOOK-3b9d7f1e5c2a4d6e8f0a"
ITRX_KEY = "CANARYITRXKEY0A1B2C3D4E5F60718293"
ITRX_SECRET = "CANARYITRXSECRET9F8E7D6C5B4A39281706F5E4D3C2B1A0F9E8D7C6B5A4938271"
TOKEN_KEY_MATERIAL = base64.b64encode(b"canary-token-key-32-bytes-long!!").decode()


@pytest.fixture
def canary_sandbox(log_dir: Path) -> Iterator[Sandbox]:
    sandbox_settings = {
        "zerotrace_api_key": ZT_KEY,
        "zerotrace_api_secret": ZT_SECRET,
        "zerotrace_webhook_secret": ZT_WEBHOOK,
        "itrx_api_key": ITRX_KEY,
        "itrx_api_secret": ITRX_SECRET,
    }
    extra = [arg for name, value in sandbox_settings.items() for arg in ("--set", f"{name}={value}")]
    box = spawn_sandbox(log_dir, extra=extra)
    yield box
    box.process.stop()


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_no_secret_or_token_escapes(canary_sandbox: Sandbox, ledger_url: str, log_dir: Path) -> None:
    stack = Stack(
        canary_sandbox,
        ledger_url,
        log_dir,
        settings={
            "ORDER_WORKER_ZEROTRACE_API_KEY": ZT_KEY,
            "ORDER_WORKER_ZEROTRACE_API_SECRET": ZT_SECRET,
            "ORDER_WORKER_ZEROTRACE_WEBHOOK_SECRETS": ZT_WEBHOOK,
            "ORDER_WORKER_ITRX_API_KEY": ITRX_KEY,
            "ORDER_WORKER_ITRX_API_SECRET": ITRX_SECRET,
            "ORDER_WORKER_TOKEN_KEYS": f"canary:{TOKEN_KEY_MATERIAL}",
            "ORDER_WORKER_LOG_LEVEL": "DEBUG",
        },
    )
    try:
        webhooks = stack.start_webhooks()
        canary_sandbox.control(
            "webhooks", {"zerotrace_webhook_url": f"http://127.0.0.1:{stack.webhooks_port}/webhooks/0trace"}
        )
        worker = stack.start_worker()
        scheduler = stack.start_scheduler()
        canary_sandbox.control("faults", {"endpoint": "0trace.create", "kind": "http_503", "times": 2})
        canary_sandbox.control("faults", {"endpoint": "0trace.order", "kind": "http_500", "times": 3})
        good = [zerotrace_command() for _ in range(3)] + [itrx_command() for _ in range(2)]
        refused = zerotrace_command(toCcy="doge")  # valid command, unknown asset: the partner refuses it
        with stack.watcher() as watcher, stack.producer() as producer:
            for command in good:
                producer.create_order(command)
            producer.create_order(refused, validate=False)
            producer.publish_raw(stack.create_queue, b"{broken json " + ZT_KEY.encode())
            ids = {c["command_id"] for c in [*good, refused]}
            events = collect_events(watcher, terminal_for_all(ids), timeout=90)
            canary_sandbox.control("faults", {"endpoint": "itrx.order", "kind": "lose_response", "times": 1})
            doubtful = itrx_command()
            producer.create_order(doubtful)
            events += collect_events(watcher, terminal_for_all({doubtful["command_id"]}), timeout=60)
        # a forged push and a signed push with garbage, so the receiver's rejection paths log too
        for body, sign in ((b'{"event":"order.status_changed"}', "0" * 64), (b"\xff\xfe", "f" * 64)):
            request = urllib.request.Request(
                f"http://127.0.0.1:{stack.webhooks_port}/webhooks/0trace",
                data=body,
                headers={"X-Partner-Webhook-Sign": sign, "X-Partner-Webhook-Timestamp": "1"},
            )
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(request, timeout=5)

        failed = [e for e in events if e["type"] == "failed"]
        assert failed and failed[0]["command_id"] == refused["command_id"]

        ledger = stack.ledger()
        sealer = TokenSealer.from_settings([SecretStr(f"canary:{TOKEN_KEY_MATERIAL}")])
        tokens = []
        for command in good[:3]:
            record = ledger.get(command["command_id"])
            assert record is not None and record.sealed_token is not None and record.order_id is not None
            tokens.append(sealer.open(record.sealed_token, record.order_id))
        assert all(len(token) == 43 for token in tokens)

        surfaces = {
            "events": json.dumps(events),
            "dead letters": json.dumps(ledger.dead_letters(100)),
            "metrics": "".join(stack.metrics(p) for p in (worker, scheduler))
            + urllib.request.urlopen(f"http://127.0.0.1:{stack.webhooks_port}/metrics").read().decode(),
        }
        for process in stack.processes:
            surfaces[f"log of {process.name}"] = process.output()
        ledger_file = Path(ledger_url.removeprefix("sqlite:///"))
        raw_db = b"".join(p.read_bytes() for p in ledger_file.parent.glob(ledger_file.name + "*"))
        canaries = [ZT_SECRET, ZT_WEBHOOK, ITRX_KEY, ITRX_SECRET, TOKEN_KEY_MATERIAL, *tokens]
        leaks = [
            (name, canary[:12]) for name, text in surfaces.items() for canary in canaries if canary in text
        ]
        assert leaks == []
        assert not [token for token in tokens if token.encode() in raw_db], "a token is stored in clear"
        # The scan read real log lines: JSON ones (the canaries hold no character JSON would escape, so a
        # leak cannot hide behind an escape), at the DEBUG level asked for, Dramatiq's processes included.
        for process in (webhooks, worker, scheduler):
            levels = {json.loads(line)["level"] for line in process.output().splitlines() if line.strip()}
            assert "info" in levels, process.name
        assert "debug" in {json.loads(line)["level"] for line in worker.output().splitlines() if line.strip()}
    finally:
        canary_sandbox.control("webhooks", {"zerotrace_webhook_url": None})
        stack.stop()
