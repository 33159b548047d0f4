"""A partner defined entirely under tests/ runs create -> poll -> push -> events end to end.

Nothing in ``worker`` knows Acme: the worker, scheduler and webhook processes find it through the
``order_worker.partners`` entry-point group, from package metadata this test writes onto their
PYTHONPATH, exactly as they would find a third-party package installed beside order-worker.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import Sandbox, Stack, collect_events
from tests.third_partner.server import AcmeServer
from worker.partners import registry

REPO = Path(__file__).resolve().parents[2]
API_KEY = "acme-e2e-key"
PUSH_SECRET = "acme-e2e-push-secret"


@pytest.fixture
def acme_installed(tmp_path: Path) -> Iterator[Path]:
    """Package metadata naming the Acme plug-in, on a path of its own (for this process too, so the
    producer's own check of the command finds it), removed again afterwards."""
    site = tmp_path / "site"
    dist = site / "acme_partner-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-partner\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[order_worker.partners]\nacme = tests.third_partner.plugin:partner\n"
    )
    sys.path.insert(0, str(site))
    registry.registered.cache_clear()
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        registry.registered.cache_clear()


def push(stack: Stack, order: dict[str, object]) -> dict[str, object]:
    raw = json.dumps(order).encode()
    timestamp = str(int(time.time()))
    signature = hmac.new(PUSH_SECRET.encode(), timestamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"http://127.0.0.1:{stack.webhooks_port}/webhooks/acme",
        data=raw,
        headers={"X-Acme-Signature": signature, "X-Acme-Timestamp": timestamp},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        decoded: dict[str, object] = json.loads(answer.read())
        return decoded


def test_a_partner_plug_in_from_outside_the_product_runs_end_to_end(
    sandbox: Sandbox, acme_installed: Path, tmp_path: Path, log_dir: Path
) -> None:
    assert "acme" in registry.names()
    acme = AcmeServer(API_KEY)
    stack = Stack(
        sandbox,
        f"sqlite:///{tmp_path / 'ledger.db'}",
        log_dir,
        settings={
            "PYTHONPATH": f"{acme_installed}:{REPO}",
            "ORDER_WORKER_ACME_BASE_URL": acme.url,
            "ORDER_WORKER_ACME_API_KEY": API_KEY,
            "ORDER_WORKER_ACME_PUSH_SECRET": PUSH_SECRET,
        },
    )
    try:
        stack.start_worker()
        stack.start_scheduler()
        stack.start_webhooks()
        command_id = f"acme-{uuid.uuid4().hex[:12]}"
        with stack.watcher() as watcher, stack.producer() as producer:
            producer.create_order(
                {
                    "command_id": command_id,
                    "provider": "acme",
                    "params": {"amount": "2.5", "address": "wallet-7"},
                }
            )
            created = collect_events(watcher, lambda seen: any(e["type"] == "created" for e in seen), 60)
            order_id = created[-1]["order_id"]
            assert isinstance(order_id, str)

            acme.set_status(order_id, "working")  # seen by the scheduler's polls
            polled = collect_events(
                watcher, lambda seen: any(e.get("status") == "processing" for e in seen), 60
            )

            assert push(stack, acme.set_status(order_id, "done")) == {"result": "accepted"}
            pushed = collect_events(
                watcher, lambda seen: any(e.get("status") == "completed" for e in seen), 60
            )
    finally:
        stack.stop()
        acme.close()
    events = created + polled + pushed
    mine = {e["event_id"]: e for e in events if e["command_id"] == command_id}
    transitions = [(e["type"], e["status"], e["source"]) for e in mine.values()]
    assert transitions == [
        ("created", "awaiting_deposit", "create"),
        ("status_changed", "processing", "poll"),
        ("status_changed", "completed", "webhook"),
    ]
    assert {e["provider"] for e in mine.values()} == {"acme"}
    assert len(acme.orders) == 1 and acme.creates == 1
