"""The deployment files speak the application's language: settings, secret file names, CLI arguments.

Settings ignore unknown ORDER_WORKER_* variables (extra="ignore"), so a misspelt name in the chart or the
compose file would be silently dropped; these tests read the real Settings model, sandbox configuration
and CLI parser instead.
"""

from __future__ import annotations

from typing import Any

import pytest
from order_worker_sandbox.config import field_names as sandbox_fields

from tests.deploy.conftest import DEPLOY, FULL_VALUES, RELEASE, REPO, Rendered, RenderFn, load_yaml
from worker import cli
from worker.cli.operators import settings_reference
from worker.settings import ENV_PREFIX


def _every_setting() -> set[str]:
    """Every variable the installation reads, core and partners, lower case and without the prefix."""
    return {
        doc.variable.removeprefix(ENV_PREFIX).lower()
        for section in settings_reference()
        for doc in section.settings
    }


SETTINGS = _every_setting()
NOT_A_FIELD = {"ORDER_WORKER_SECRETS_DIR"}  # where the groups read secret files, not a setting itself


def setting_of(variable: str) -> str:
    assert variable.startswith(ENV_PREFIX), variable
    return variable.removeprefix(ENV_PREFIX).lower()


def check_command(args: list[str]) -> Any:
    """Parse a rendered command line as `order-worker` will (roles with their own parser get the rest)."""
    if args[0] in cli.DELEGATED:
        module = {"sandbox": REPO / "sandbox" / "order_worker_sandbox" / "__main__.py"}[args[0]]
        source = module.read_text()
        for option in (a for a in args[1:] if a.startswith("--")):
            assert f'"{option}"' in source, f"{args[0]} has no option {option}"
        return None
    parsed = cli.build_parser().parse_args(args)
    assert parsed.command == args[0]
    return parsed


def env_names(container: dict[str, Any]) -> set[str]:
    return {e["name"] for e in container.get("env", []) if e["name"].startswith(ENV_PREFIX)}


@pytest.fixture(scope="module")
def renderings(render: RenderFn, postgres_values: dict[str, Any]) -> list[Rendered]:
    return [render(), render(files=(FULL_VALUES,)), render(postgres_values)]


def test_chart_settings_are_real_settings(renderings: list[Rendered]) -> None:
    for rendered in renderings:
        names = set(rendered.one("ConfigMap", RELEASE)["data"])
        for _, pod in rendered.pod_templates():
            for c in pod["containers"]:
                names |= env_names(c)
        unknown = {n for n in names - NOT_A_FIELD if setting_of(n) not in SETTINGS}
        assert unknown == set()


def test_chart_secret_keys_are_real_settings(render: RenderFn, postgres_values: dict[str, Any]) -> None:
    every = {
        key: "x"
        for key in (
            "brokerUrl",
            "zerotraceApiKey",
            "zerotraceApiSecret",
            "zerotraceWebhookSecrets",
            "itrxApiKey",
            "itrxApiSecret",
            "itrxPreviousApiSecrets",
        )
    }
    values = {**postgres_values, "secrets": {**postgres_values["secrets"], **every}}
    keys = set(render(values).one("Secret", RELEASE)["data"])
    assert len(keys) == 9
    for key in keys:
        assert key.startswith("order_worker_") and key.removeprefix("order_worker_") in SETTINGS, key
        # pydantic-settings looks secret files up by the lower-case variable name
        assert key == (ENV_PREFIX + key.removeprefix("order_worker_")).lower()


def test_rendered_commands_parse_with_the_real_cli(renderings: list[Rendered]) -> None:
    for rendered in renderings:
        for _, pod in rendered.pod_templates():
            for c in pod["containers"]:
                args = check_command(c["args"])
                if c["args"][0] == "worker":
                    assert args.processes >= 1 and args.threads >= 1 and args.shutdown_timeout > 60


def test_compose_settings_secrets_and_commands_are_real() -> None:
    compose = load_yaml(DEPLOY / "docker-compose.yml")
    for name, service in compose["services"].items():
        if name in {"migrate", "worker", "scheduler", "webhooks", "sandbox"}:
            check_command(service["command"])
    anchor = compose["x-order-worker"]
    unknown = {n for n in set(anchor["environment"]) - NOT_A_FIELD if setting_of(n) not in SETTINGS}
    assert unknown == set()
    for secret in anchor["secrets"]:
        assert secret.removeprefix("order_worker_") in SETTINGS, secret
    sandbox_env = compose["services"]["sandbox"]["environment"]
    fields = set(sandbox_fields())
    for variable in sandbox_env:
        assert variable.removeprefix("ORDER_WORKER_SANDBOX_").lower() in fields, variable


def test_full_values_extra_env_are_real_settings() -> None:
    extra = load_yaml(FULL_VALUES)["config"]["extraEnv"]
    assert {name.lower() for name in extra} <= SETTINGS
