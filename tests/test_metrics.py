"""Metric labels stay a closed vocabulary, and the gauges alerts compare against follow the settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.ledger.helpers import observed
from worker import metrics
from worker.ledger import open_ledger
from worker.ledger.base import HeldPush
from worker.partners import registry
from worker.scheduler import Scheduler
from worker.settings import Settings
from worker.settings_metrics import REVISION_ENV, build_revision, export_settings
from worker.status import Status
from worker.transport import RESULTS, call_result


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


@pytest.mark.parametrize(
    ("code", "partner", "expected"),
    [
        ("ok", "0trace", "ok"),
        ("5", "0trace", "rate_limited"),  # 0trace's RATE_LIMIT, whatever the HTTP status
        ("3", "0trace", "auth"),
        ("11", "0trace", "unavailable"),
        ("99", "0trace", "server_error"),
        ("57", "0trace", "other"),  # a code the spec does not name
        ("errno_404", "itrx", "not_found"),
        ("errno_1", "itrx", "refused"),
        ("errno_31337", "itrx", "other"),
        ("http_429", "itrx", "rate_limited"),
        ("http_503", "itrx", "unavailable"),
        ("http_500", "0trace", "server_error"),
        ("http_418", "itrx", "refused"),
        ("timeout", "0trace", "timeout"),
        ("connection_refused", "0trace", "unreachable"),
        ("connection_reset", "itrx", "connection_lost"),
        ("bad_response", "itrx", "bad_answer"),
        ("tls_verify", "itrx", "tls"),
        ("error", "itrx", "internal"),
        ("http_abc", "itrx", "other"),
    ],
)
def test_partner_codes_become_named_results(code: str, partner: str, expected: str) -> None:
    assert call_result(code, registry.get(partner).capabilities.call_results) == expected


def test_every_partner_names_its_codes_inside_the_vocabulary() -> None:
    for name in registry.names():
        assert set(registry.get(name).capabilities.call_results.values()) <= RESULTS, name
    # A wrong mapping cannot add a label value either.
    assert call_result("7", {"7": "rate limit!"}) == "other"


def test_the_observer_handed_to_partners_names_the_result() -> None:
    seen: list[tuple[Any, ...]] = []
    observe = registry.named_results(lambda *call: seen.append(call), registry.get("0trace"), "eu")
    assert observe is not None
    observe("0trace", "create", "5", 0.1, 50)
    assert seen == [("0trace", "eu", "create", "rate_limited", 0.1, 50)]
    assert registry.named_results(None, registry.get("0trace"), "eu") is None


def test_a_raw_code_reaching_the_metric_is_counted_as_other() -> None:
    labels = {"provider": "itrx", "account": "default", "endpoint": "t"}
    before = sample("order_worker_partner_requests_total", **labels, result="other") or 0
    metrics.observe_partner_call("itrx", "default", "t", "errno_777", 0.01, 0)
    after = sample("order_worker_partner_requests_total", **labels, result="other")
    assert after == before + 1
    assert sample("order_worker_partner_requests_total", **labels, result="errno_777") is None


def test_the_configured_budget_window_and_queues_are_exported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REVISION_ENV, "0123abc")
    settings = Settings(
        bus={"create_queue": "blue.create", "poll_queue": "blue.poll"},
        partners={
            "0trace": {"weight_budget": 1200, "weight_window": 30.0, "accounts": ["eu"]},
            "0trace:eu": {"weight_budget": 400},
        },
    )
    export_settings(settings)
    default, eu = {"provider": "0trace", "account": "default"}, {"provider": "0trace", "account": "eu"}
    assert sample("order_worker_partner_budget_weight", **default) == 1200
    assert sample("order_worker_partner_budget_window_seconds", **default) == 30
    assert sample("order_worker_partner_budget_weight", **eu) == 400
    assert sample("order_worker_partner_budget_window_seconds", **eu) == 30  # inherited
    assert sample("order_worker_queue_info", actor="create_order", kind="commands", queue="blue.create") == 1
    assert (
        sample("order_worker_queue_info", actor="poll_order", kind="dead_letters", queue="blue.poll.XQ") == 1
    )
    infos = next(s for s in REGISTRY.collect() if s.name == "order_worker_build_info").samples
    assert any(s.labels["revision"] == "0123abc" and s.labels["version"] for s in infos)


def test_an_unprintable_revision_is_not_a_label(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REVISION_ENV, "abc\ndef")
    assert build_revision() == "unknown"
    monkeypatch.delenv(REVISION_ENV)
    assert build_revision() == "unknown"


class _Counts:
    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self.held = 0

    def held_push_count(self) -> int:
        return self.held

    def outbox_backlog(self) -> int:
        return 0

    def outbox_oldest_created_at(self) -> float | None:
        return None

    def count_by_status(self) -> dict[tuple[str, str], int]:
        return dict(self.counts)

    def oldest_due_poll(self, provider: str, now: float) -> tuple[str, float] | None:
        return None


def test_untrackable_orders_are_counted_once_and_gone_statuses_drop_to_zero() -> None:
    ledger = _Counts()
    scheduler = Scheduler(Settings(), ledger, lambda commands: [True] * len(commands))  # type: ignore[arg-type]
    ledger.counts = {("p-gauge", "processing"): 3, ("p-gauge", "in_doubt"): 1, ("p-gauge", "untrackable"): 2}
    scheduler.sample_gauges()
    assert sample("order_worker_orders", provider="p-gauge", status="processing") == 3
    assert sample("order_worker_orders", provider="p-gauge", status="untrackable") is None
    assert sample("order_worker_orders_untrackable", provider="p-gauge") == 2
    ledger.counts = {("p-gauge", "processing"): 4}
    scheduler.sample_gauges()
    assert sample("order_worker_orders", provider="p-gauge", status="in_doubt") == 0
    assert sample("order_worker_orders_untrackable", provider="p-gauge") == 0


def test_the_scheduler_drops_held_pushes_past_their_ttl_and_counts_them(tmp_path: Path) -> None:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'held.db'}")
    ledger.migrate()
    try:
        for n, order_id in enumerate(["po-old-1", "po-old-2", "po-new"]):
            push = HeldPush(
                f"order:{order_id}:PENDING", "0trace", order_id, ("default",), observed(Status.CONFIRMING)
            )
            ledger.hold_push(push, 1000.0 + n * 100, 10, 0.0)
        settings = Settings(tracking={"held_push_seconds": 150})
        scheduler = Scheduler(settings, ledger, lambda commands: [True] * len(commands))
        before = sample("order_worker_held_pushes_expired_total") or 0.0
        assert scheduler.drop_expired_pushes(now=1300.0) == 2  # held at 1000 and 1100; 1200 is fresh
        assert (sample("order_worker_held_pushes_expired_total") or 0.0) - before == 2
        assert ledger.held_push_count() == 1
    finally:
        ledger.close()


def test_held_pushes_waiting_follow_the_ledger() -> None:
    ledger = _Counts()
    scheduler = Scheduler(Settings(), ledger, lambda commands: [True] * len(commands))  # type: ignore[arg-type]
    ledger.held = 7
    scheduler.sample_gauges()
    assert sample("order_worker_held_pushes_waiting") == 7
    ledger.held = 0
    scheduler.sample_gauges()
    assert sample("order_worker_held_pushes_waiting") == 0


def test_multiprocess_exposition_keeps_the_process_metrics(tmp_path: Path) -> None:
    script = (
        "from prometheus_client import generate_latest\n"
        "from worker.observability import metrics_registry\n"
        "print(generate_latest(metrics_registry()).decode())\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    text = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "process_resident_memory_bytes" in text
    assert "python_info" in text
