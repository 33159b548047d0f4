"""Every role's live /metrics passes ``promtool check metrics`` and says what the settings say.

The alert rules join on the budget, window and queue-name gauges, so they are read here from running
roles started with non-default settings, not from the code that sets them.
"""

from __future__ import annotations

import re
import subprocess
import urllib.request

import pytest

from tests.deploy.conftest import tool
from tests.support.partners import zerotrace_command
from tests.support.stack import Stack, collect_events, terminal_for_all
from worker.transport import RESULTS

pytestmark = pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)

_RESULT = re.compile(r'^order_worker_partner_requests_total\{[^}]*result="([^"]*)"', re.MULTILINE)


THIRD_PARTY_LINT = (
    'dramatiq_message_duration_milliseconds use base unit "seconds" instead of "milliseconds"',
)
"""Findings about names we do not choose: Dramatiq's middleware names its histogram, and the dashboard
reads it by that name."""


def promtool_check_metrics(text: str) -> None:
    """Exposition format (exit 1 when it does not parse) and naming conventions (exit 3), as Prometheus'
    own linter reads them; only the findings listed in THIRD_PARTY_LINT are tolerated."""
    checked = subprocess.run(
        [tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    findings = [line for line in (checked.stdout + checked.stderr).splitlines() if line.strip()]
    assert checked.returncode in (0, 3), findings
    assert set(findings) <= set(THIRD_PARTY_LINT), findings


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def test_every_role_exposes_lintable_metrics_that_follow_the_settings(stack: Stack) -> None:
    stack.settings.update(
        {"ORDER_WORKER_ZEROTRACE_WEIGHT_BUDGET": "1234", "ORDER_WORKER_ZEROTRACE_WEIGHT_WINDOW": "30"}
    )
    worker = stack.start_worker(processes=2, threads=2)
    scheduler = stack.start_scheduler()
    stack.start_webhooks()
    stack.sandbox.control("faults", {"endpoint": "0trace.create", "kind": "http_503", "times": 1})
    command = zerotrace_command()
    with stack.watcher() as watcher, stack.producer() as producer:
        producer.create_order(command)
        collect_events(watcher, terminal_for_all({command["command_id"]}), timeout=60)

    texts = {
        "worker": stack.metrics(worker),
        "scheduler": stack.metrics(scheduler),
        "webhooks": scrape(f"http://127.0.0.1:{stack.webhooks_port}/metrics"),
    }
    for role, text in texts.items():
        promtool_check_metrics(text)
        budget = 'account="default",provider="0trace"'
        assert f"order_worker_partner_budget_weight{{{budget}}} 1234.0" in text, role
        assert f"order_worker_partner_budget_window_seconds{{{budget}}} 30.0" in text, role
        queue = f'queue="{stack.create_queue}"'
        assert f'order_worker_queue_info{{actor="create_order",kind="commands",{queue}}} 1.0' in text, role
        assert re.search(r'^order_worker_build_info\{revision="[^"]+",version="[^"]+"\} 1\.0$', text, re.M), (
            role
        )
        assert "process_resident_memory_bytes" in text, role  # the worker's multiprocess view too

    results = set(_RESULT.findall(texts["worker"]))
    assert results <= RESULTS, results - RESULTS
    assert {"ok", "unavailable"} <= results  # the injected 503 is named, not "http_503"
