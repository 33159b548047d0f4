"""Prometheus' own tool on the rules and the configuration: syntax, and the alert unit tests.

The unit tests (deploy/prometheus/alerts.test.yml) prove among others that the rate-budget alert follows
the configured budget and window, and the queue alerts the configured queue names. promtool is not on
PyPI; deploy/check.sh installs it (the fast tier's ``bash deploy/dev.sh test`` runs it first), and a
missing promtool fails here instead of skipping the suite.
"""

from __future__ import annotations

import subprocess

from tests.deploy.conftest import DEPLOY, tool

PROMETHEUS = DEPLOY / "prometheus"


def promtool(*args: str) -> str:
    done = subprocess.run(
        [tool("promtool"), *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_prometheus_configuration_and_rules_are_valid() -> None:
    promtool("check", "config", "prometheus.yml")
    assert "SUCCESS" in promtool("check", "rules", "alerts.yml")


def test_the_alert_unit_tests_pass() -> None:
    assert "SUCCESS" in promtool("test", "rules", "alerts.test.yml")
