"""A consumer in another language, written from the AsyncAPI document alone (``consumer.mjs``, Node and
amqplib), publishes a create command and receives its order's events from a real worker."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.support.stack import Stack
from worker.schemas import ASYNCAPI, SCHEMA_DIR

HERE = Path(__file__).parents[1] / "contract"


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (HERE / "node_modules" / "amqplib").is_dir():
        pytest.fail(
            "Node.js and tests/contract/node_modules are needed: 'bash deploy/dev.sh test' installs them"
        )
    return node


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("provider", ["0trace", "itrx"])
def test_a_node_consumer_from_the_asyncapi_document_gets_its_events(stack: Stack, provider: str) -> None:
    node = _node()
    stack.start_worker()
    stack.start_scheduler()
    stack.declare_queues()
    command_id = f"node-{uuid.uuid4().hex[:12]}"
    names = {
        "orders.create": stack.create_queue,
        "orders.events": stack.exchange,
        "orders.events.unrouted": f"{stack.exchange}.unrouted",
    }
    env = {
        **os.environ,
        "ASYNCAPI": str(SCHEMA_DIR / ASYNCAPI),
        "AMQP_URL": stack.broker_url.replace("/%2F", "/"),
        "NAMES": json.dumps(names),
        "PROVIDER": provider,
        "COMMAND_ID": command_id,
        "TIMEOUT_MS": "60000",
    }
    run = subprocess.run(
        [node, str(HERE / "consumer.mjs")], env=env, capture_output=True, text=True, timeout=90, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    (first, *_) = report["received"]
    assert first["type"] == first["type_property"] == "created"
    assert first["seq"] == 1 and first["schema_version"] == 1
    assert first["message_id_is_event_id"] and first["content_type"] == "application/json"
    assert first["missing_required"] == []
    order = stack.ledger().get(command_id)
    assert order is not None and order.provider == provider
