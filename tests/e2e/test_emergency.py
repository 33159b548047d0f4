"""An EMERGENCY 0trace order resolved by the operator command, end to end: real RabbitMQ, both ledgers and
a sandbox whose orders all go EMERGENCY after their deposit (``--scenario emergency``)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.partners import zerotrace_command
from tests.support.stack import Sandbox, Stack, collect_events, spawn_sandbox, terminal_for_all
from worker.messages import EventType, transition_event_id


@pytest.fixture(scope="module")
def emergency_sandbox(log_dir: Path) -> Iterator[Sandbox]:
    box = spawn_sandbox(log_dir, extra=["--scenario", "emergency"])
    yield box
    box.process.stop()


@pytest.fixture
def emergency_stack(emergency_sandbox: Sandbox, ledger_url: str, log_dir: Path) -> Iterator[Stack]:
    deployment = Stack(emergency_sandbox, ledger_url, log_dir)
    yield deployment
    deployment.stop()


def _emergency_calls(sandbox: Sandbox) -> int:
    return int(sandbox.stats()["requests"].get("0trace.emergency", 0))


def _rejected_action(action_id: str) -> Any:
    def check(events: list[dict[str, Any]]) -> bool:
        return any(
            e["type"] == "rejected" and (e.get("action") or {}).get("action_id") == action_id for e in events
        )

    return check


def test_an_emergency_order_resumes_on_the_operators_choice_and_completes(emergency_stack: Stack) -> None:
    stack = emergency_stack
    stack.start_worker()
    stack.start_scheduler()
    command = zerotrace_command(metadata={"shop": "7"})
    cid = command["command_id"]
    action_id = f"act-{uuid.uuid4().hex[:12]}"
    calls_before = _emergency_calls(stack.sandbox)
    with stack.watcher() as watcher, stack.producer() as producer:
        producer.create_order(command)
        events = collect_events(
            watcher,
            lambda ev: any(e["command_id"] == cid and e["status"] == "action_required" for e in ev),
            timeout=60,
        )
        # The operator's command, as an operator runs it.
        answer = subprocess.run(
            [sys.executable, "-m", "worker.cli", "emergency", cid, "--action-id", action_id],
            env=stack.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert answer.returncode == 0, answer.stderr
        assert json.loads(answer.stdout.splitlines()[-1]) == {
            "submitted": action_id,
            "command_id": cid,
            "choice": "EXCHANGE",
        }
        # The same action again (a producer's retry) is acted on once.
        producer.resolve_order({"action_id": action_id, "command_id": cid, "choice": "EXCHANGE"})
        events += collect_events(watcher, terminal_for_all({cid}), timeout=60)
        # Once the order has ended, another choice is refused with a reason.
        late = f"act-{uuid.uuid4().hex[:12]}"
        producer.resolve_order({"action_id": late, "command_id": cid, "choice": "EXCHANGE"})
        events += collect_events(watcher, _rejected_action(late), timeout=30)

    chain = [e for e in events if e["command_id"] == cid and e["type"] != "rejected"]
    statuses = [e["status"] for e in chain]
    assert statuses[-1] == "completed"
    accepted = [e for e in chain if e["type"] == "action_accepted"]
    assert len(accepted) == 1
    assert accepted[0]["source"] == "operator" and accepted[0]["status"] == "action_required"
    assert accepted[0]["action"] == {"action_id": action_id, "choice": "EXCHANGE"}
    assert accepted[0]["metadata"] == {"shop": "7"}
    position = chain.index(accepted[0])
    assert "action_required" in statuses[:position] and "action_required" not in statuses[position + 1 :]
    for sequence, event in enumerate(chain, start=1):
        assert event["event_id"] == transition_event_id(
            cid, sequence, EventType(event["type"]), event["status"]
        )
    assert _emergency_calls(stack.sandbox) - calls_before == 1, "the choice must reach 0trace exactly once"

    refused = [e for e in events if e["type"] == "rejected"]
    assert len(refused) == 1 and refused[0]["action"]["action_id"] == late
    assert refused[0]["error"]["code"] == "not_actionable" and "completed" in refused[0]["error"]["reason"]
    assert refused[0]["source"] == "operator" and refused[0]["provider"] == "0trace"
    action = stack.ledger().get_action(action_id)
    assert action is not None and action.state == "accepted"


def test_a_choice_the_partner_does_not_take_is_rejected_before_any_call(emergency_stack: Stack) -> None:
    stack = emergency_stack
    stack.start_worker()
    stack.start_scheduler()
    command = zerotrace_command()
    cid, action_id = command["command_id"], f"act-{uuid.uuid4().hex[:12]}"
    with stack.watcher() as watcher, stack.producer() as producer:
        producer.create_order(command)
        collect_events(watcher, lambda ev: any(e["command_id"] == cid for e in ev), timeout=30)
        producer.resolve_order({"action_id": action_id, "command_id": cid, "choice": "REFUND"})
        events = collect_events(watcher, _rejected_action(action_id), timeout=30)
    rejected = next(e for e in events if e["type"] == "rejected")
    assert rejected["error"]["code"] == "invalid_choice" and "EXCHANGE" in rejected["error"]["reason"]
    assert stack.ledger().get_action(action_id) is None
