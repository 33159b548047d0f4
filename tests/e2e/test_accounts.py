"""Two 0trace accounts on one sandbox, each with its own weight budget: neither budget is ever exceeded.

The sandbox knows two apiKeys whose budgets differ (the default account's 900 and ``eu``'s 300 weight in
any 10 real seconds) and answers 429 on the key whose own budget a call would exceed; a create weighs 50.
More creates than a window allows arrive for both accounts at once, on RabbitMQ and a PostgreSQL ledger.
The sandbox's per-key counters must show no 429 for either key, and each partner order must have been
placed with the key of the account its command named. A create naming an account the settings do not
define is rejected with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.partners import zerotrace_command
from tests.support.stack import Sandbox, Stack, collect_events, spawn_sandbox
from worker.pipeline import partner_ref

WINDOW = 10
DEFAULT_KEY, DEFAULT_BUDGET = "accounts-default-key", 900
EU_KEY, EU_BUDGET = "accounts-eu-key", 300
DEFAULT_SECRET = "accounts-default-secret-0123456789abcdef"
EU_SECRET = "accounts-eu-secret-0123456789abcdef0123"
EU_WEBHOOK = "accounts-eu-webhook-0123456789abcdef"


@pytest.fixture
def two_account_sandbox(log_dir: Path) -> Iterator[Sandbox]:
    settings = {
        "zerotrace_api_key": DEFAULT_KEY,
        "zerotrace_api_secret": DEFAULT_SECRET,
        "zerotrace_rate_limit_weight": str(DEFAULT_BUDGET),
        "zerotrace_rate_limit_window": str(WINDOW),
        "zerotrace_accounts": f"{EU_KEY}:{EU_SECRET}:{EU_WEBHOOK}:{EU_BUDGET}",
    }
    box = spawn_sandbox(
        log_dir, extra=[arg for item in settings.items() for arg in ("--set", "=".join(item))]
    )
    yield box
    box.process.stop()


@pytest.mark.parametrize("ledger_url", ["postgres"], indirect=True)
def test_two_accounts_keep_to_their_own_budgets(
    two_account_sandbox: Sandbox, ledger_url: str, log_dir: Path
) -> None:
    stack = Stack(
        two_account_sandbox,
        ledger_url,
        log_dir,
        settings={
            "ORDER_WORKER_ZEROTRACE_API_KEY": DEFAULT_KEY,
            "ORDER_WORKER_ZEROTRACE_API_SECRET": DEFAULT_SECRET,
            "ORDER_WORKER_ZEROTRACE_WEIGHT_BUDGET": str(DEFAULT_BUDGET),
            "ORDER_WORKER_ZEROTRACE_WEIGHT_WINDOW": str(WINDOW),
            "ORDER_WORKER_ZEROTRACE_ACCOUNTS": "eu",
            "ORDER_WORKER_ZEROTRACE_EU_API_KEY": EU_KEY,
            "ORDER_WORKER_ZEROTRACE_EU_API_SECRET": EU_SECRET,
            "ORDER_WORKER_ZEROTRACE_EU_WEBHOOK_SECRETS": EU_WEBHOOK,
            "ORDER_WORKER_ZEROTRACE_EU_WEIGHT_BUDGET": str(EU_BUDGET),
        },
    )
    try:
        _run(stack, two_account_sandbox)
    finally:
        stack.stop()


def _run(stack: Stack, sandbox: Sandbox) -> None:
    # Two windows' worth for each account: the budgets, not the workers, decide when creates go out.
    default = [zerotrace_command(f"acct-default-{i:03d}") for i in range(30)]
    eu = [{**zerotrace_command(f"acct-eu-{i:03d}"), "account": "eu"} for i in range(10)]
    unknown = {**zerotrace_command("acct-unknown-001"), "account": "mars"}
    stack.start_worker(threads=8)
    stack.start_scheduler()
    started = time.monotonic()
    with stack.watcher() as watcher, stack.producer() as producer:
        for command in [*default, *eu, unknown]:
            producer.create_order(command)

        def created(events: list[dict[str, Any]]) -> bool:
            seen = {e["command_id"] for e in events if e["type"] in ("created", "rejected")}
            return all(c["command_id"] in seen for c in [*default, *eu, unknown])

        events = collect_events(watcher, created, timeout=120)
    elapsed = time.monotonic() - started
    rejected = [e for e in events if e["command_id"] == unknown["command_id"]]
    assert [e["type"] for e in rejected] == ["rejected"]
    assert "account" in rejected[0]["error"]["reason"] and "mars" in rejected[0]["error"]["reason"]
    assert not sandbox.orders_for(_ref(unknown))

    keys = sandbox.stats()["zerotrace_keys"]
    assert keys[DEFAULT_KEY]["rate_limited"] == 0, keys
    assert keys[EU_KEY]["rate_limited"] == 0, keys
    assert keys[DEFAULT_KEY]["peak_window_weight"] <= DEFAULT_BUDGET
    assert keys[EU_KEY]["peak_window_weight"] <= EU_BUDGET
    # The eu creates alone weigh more than one eu window allows, so its budget was what paced them.
    assert keys[EU_KEY]["weight"] >= 50 * len(eu) > EU_BUDGET
    assert elapsed > WINDOW, "the eu creates cannot all fit in one window of its budget"
    for commands, key in ((default, DEFAULT_KEY), (eu, EU_KEY)):
        for command in commands:
            orders = sandbox.orders_for(_ref(command))
            assert [o["partner"] for o in orders] == [key], command["command_id"]
    record = stack.ledger().get(eu[0]["command_id"])
    assert record is not None and record.account == "eu"


def _ref(command: dict[str, Any]) -> str:
    return partner_ref("order-worker", command["command_id"])
