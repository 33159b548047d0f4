"""Alert rules, Prometheus configuration and the Grafana dashboard.

Expressions are parsed by a real PromQL parser (promql-parser) and every metric they name must belong to
the metrics contract; here the promtool suite's coverage is checked (every alert has a firing and a quiet
case), and test_promtool.py runs it.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.deploy.conftest import DEPLOY, KNOWN_METRICS, load_json, load_yaml, require_module

ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "order-worker.json"
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$namespace": ".*"}


def metric_names(expr: str) -> set[str]:
    """Every metric a PromQL expression selects (raises ValueError when it does not parse)."""
    promql = require_module("promql_parser")
    names: set[str] = set()

    def visit(node: Any) -> None:
        name = getattr(node, "name", None)
        if isinstance(node, promql.VectorSelector) and name:
            names.add(name)
        for attr in ("expr", "lhs", "rhs", "vector_selector", "param"):
            child = getattr(node, attr, None)
            if child is not None and not isinstance(child, (str, int, float)):
                visit(child)
        for child in getattr(node, "args", None) or []:
            visit(child)

    visit(promql.parse(expr))
    return names


def rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def dashboard_targets() -> list[tuple[str, str]]:
    panels = load_json(DASHBOARD)["panels"]
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]


def grafana_to_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


# ------------------------------------------------------------------------------------------ alert rules
def test_metric_name_extraction_sees_through_functions_and_operators() -> None:
    expr = (
        "histogram_quantile(0.9, sum by (le) (rate(a_bucket[5m]))) / on() group_left max(b) > bool scalar(c)"
    )
    assert metric_names(expr) == {"a_bucket", "b", "c"}


def test_the_alerts_the_issue_asks_for_exist() -> None:
    names = {rule["alert"] for rule in rules()}
    assert names >= {
        "OrderWorkerOutboxStuck",
        "OrderWorkerOutboxNotPublishing",
        "OrderWorkerOrdersInDoubt",
        "OrderWorkerOrdersUntrackable",
        "OrderWorkerPartnerErrorRate",
        "OrderWorkerRateBudgetHigh",
        "OrderWorkerCommandsWaiting",
        "OrderWorkerDeadLetters",
        "OrderWorkerDeadLetterQueueGrowing",
    }
    assert len(names) == len(rules()), "alert names must be unique"


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_alert_rule_shape(rule: dict[str, Any]) -> None:
    assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
    assert DURATION.match(rule["for"])
    assert rule["labels"]["severity"] in {"info", "warning", "critical"}
    assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
    assert rule["annotations"]["runbook_url"] == f"RUNBOOK.md#{rule['alert'].lower()}"
    names = metric_names(rule["expr"])
    assert names, rule["expr"]
    assert names <= KNOWN_METRICS, names - KNOWN_METRICS
    # Aggregations keep the namespace and the release, so several releases in one cluster (or one
    # namespace) alert separately. RabbitMQ's series carry the broker's labels and are grouped by queue.
    for by, operand in re.findall(r"by \(([^)]*)\)\s*\(([^)]*)", rule["expr"]):
        if "rabbitmq_" not in operand:
            assert {"namespace", "release"} <= {label.strip() for label in by.split(",")}, rule["expr"]


def test_every_alert_has_a_runbook_section() -> None:
    runbook = (DEPLOY / "prometheus" / "RUNBOOK.md").read_text(encoding="utf-8")
    anchors = {line[3:].strip().lower() for line in runbook.splitlines() if line.startswith("## ")}
    assert {rule["alert"].lower() for rule in rules()} <= anchors


def test_no_rule_copies_a_setting() -> None:
    """Budgets and queue names come from the gauges the service exports, never from numbers or names."""
    for rule in rules():
        assert "2500" not in rule["expr"] and "orders." not in rule["expr"], rule["alert"]
        assert 'status="untrackable"' not in rule["expr"], rule["alert"]
    for _, expr in dashboard_targets():
        assert "2500" not in expr and "orders\\." not in expr and "XQ" not in expr, expr


def test_rate_budget_alert_is_80_percent_of_the_configured_budget() -> None:
    rule = next(r for r in rules() if r["alert"] == "OrderWorkerRateBudgetHigh")
    assert metric_names(rule["expr"]) == {
        "order_worker_partner_weight_total",
        "order_worker_partner_budget_weight",
        "order_worker_partner_budget_window_seconds",
    }
    assert rule["expr"].rstrip().endswith("> 0.8")


def test_in_doubt_alert_is_critical() -> None:
    rule = next(r for r in rules() if r["alert"] == "OrderWorkerOrdersInDoubt")
    assert rule["labels"]["severity"] == "critical"
    assert 'status="in_doubt"' in rule["expr"]


def test_every_alert_has_a_firing_promtool_case() -> None:
    suite = load_yaml(DEPLOY / "prometheus" / "alerts.test.yml")
    assert suite["rule_files"] == ["alerts.yml"]
    firing = {
        case["alertname"] for test in suite["tests"] for case in test["alert_rule_test"] if case["exp_alerts"]
    }
    quiet = {
        case["alertname"]
        for test in suite["tests"]
        for case in test["alert_rule_test"]
        if not case["exp_alerts"]
    }
    names = {rule["alert"] for rule in rules()}
    assert firing == names, f"no firing test for {names - firing}"
    assert quiet == names, f"no quiet test for {names - quiet}"
    for test in suite["tests"]:
        for series in test["input_series"]:
            assert metric_names(series["series"]) <= KNOWN_METRICS


def test_prometheus_config_scrapes_every_role_and_rabbitmq() -> None:
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    discovered = {(name, sd["port"]) for sd in jobs["order-worker"]["dns_sd_configs"] for name in sd["names"]}
    assert discovered == {("worker", 9191), ("scheduler", 9191), ("webhooks", 8091)}
    rabbit = jobs["rabbitmq"]
    assert rabbit["metrics_path"] == "/metrics/per-object"  # keeps the queue label
    assert rabbit["static_configs"][0]["targets"] == ["rabbitmq:15692"]


# ------------------------------------------------------------------------------------------- dashboard
def test_dashboard_expressions_parse_and_use_known_metrics() -> None:
    targets = dashboard_targets()
    assert len(targets) >= 20
    for title, expr in targets:
        try:
            names = metric_names(grafana_to_promql(expr))
        except ValueError as error:
            pytest.fail(f"{title}: {error}: {expr}")
        assert names <= KNOWN_METRICS, (title, names - KNOWN_METRICS)


def test_dashboard_covers_what_operators_need() -> None:
    exprs = " ".join(expr for _, expr in dashboard_targets())
    latency = "sum by (provider, endpoint, le) (rate(order_worker_partner_request_seconds_bucket"
    for needle in (
        "order_worker_commands_total",  # throughput
        f"histogram_quantile(0.5, {latency}",  # partner latency p50
        f"histogram_quantile(0.99, {latency}",  # and p99
        "sum by (provider, endpoint, result) (rate(order_worker_partner_requests_total",  # result codes
        "order_worker_orders",  # open orders by status
        'status="in_doubt"',
        "order_worker_orders_untrackable",
        "order_worker_outbox_backlog",
        "rate(order_worker_partner_weight_total",  # rate budget
        "order_worker_partner_budget_weight",  # against the configured one
        "order_worker_partner_budget_window_seconds",
        "rabbitmq_queue_messages_ready",  # queue depth
        'order_worker_queue_info{namespace=~"$namespace", kind="commands"}',  # of the configured queues
        "order_worker_dead_letters_total",
        'kind="dead_letters"',  # dead-letter queues
        "order_worker_build_info",
    ):
        assert needle in exprs, needle


def test_dashboard_structure() -> None:
    dashboard = load_json(DASHBOARD)
    assert dashboard["uid"] == "order-worker"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["namespace"]["allValue"] == ".*"
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    occupied: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
        if panel["type"] != "row":
            assert panel.get("description"), panel["title"]
        if panel["type"] not in ("row", "text"):  # a text panel queries nothing
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_grafana_provisioning_points_at_the_compose_services() -> None:
    datasource = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")[
        "datasources"
    ][0]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    provider = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "order-worker.yml")[
        "providers"
    ][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
