"""The settings tree: every group reads its flat ORDER_WORKER_* names, bad values are named by variable
and never echoed, and the README's reference and the chart's secret lists follow the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from worker.cli.common import load_settings
from worker.cli.operators import settings_markdown, settings_reference
from worker.settings import GROUPS, Settings, get_settings

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "order-worker"


def _variables() -> list[str]:
    return [doc.variable for section in settings_reference() for doc in section.settings]


def _secret_names() -> set[str]:
    return {
        doc.variable.removeprefix("ORDER_WORKER_")
        for section in settings_reference()
        for doc in section.settings
        if doc.secret
    }


def test_each_group_reads_its_flat_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDER_WORKER_POLL_QUEUE", "tenant-a.poll")
    monkeypatch.setenv("ORDER_WORKER_RETENTION_SECONDS", "7200")
    monkeypatch.setenv("ORDER_WORKER_POLLING_ENABLED", "false")
    settings = Settings(bus={"create_queue": "tenant-a.create"})
    assert (settings.bus.create_queue, settings.bus.poll_queue) == ("tenant-a.create", "tenant-a.poll")
    assert settings.ledger.retention_seconds == 7200
    assert settings.tracking.polling_enabled is False
    assert settings.tracking.poll_interval("awaiting_deposit") == 45


def test_no_two_settings_share_a_variable() -> None:
    variables = _variables()
    assert len(variables) == len(set(variables))
    fields = [name for group in GROUPS.values() for name in group.model_fields]
    assert len(fields) == len(set(fields)), "a core field name must name one group's setting"


def test_a_bad_value_is_named_by_its_variable_and_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDER_WORKER_DELIVERY_LIMIT", "7777777")
    monkeypatch.setenv("ORDER_WORKER_LEDGER_URL", "mysql://root:CANARY-PW@db/orders")
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as info:
            load_settings()
    finally:
        get_settings.cache_clear()
    message = str(info.value.code)
    assert "ORDER_WORKER_" in message and "CANARY" not in message and "7777777" not in message
    assert "ORDER_WORKER_DELIVERY_LIMIT:" in message and "ORDER_WORKER_LEDGER_URL:" in message


def test_secrets_are_masked_in_the_tree() -> None:
    settings = Settings(ledger={"ledger_url": SecretStr("postgresql://u:CANARY-PW@db/x")})
    assert "CANARY" not in repr(settings) and "CANARY" not in str(settings.model_dump())


def test_the_readme_reference_is_what_the_code_reads() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    embedded = re.search(
        r"<!-- settings reference:[^\n]*-->\n(.*?)<!-- end of settings reference -->", readme, re.S
    )
    assert embedded, "README.md lost its settings reference markers"
    assert embedded.group(1) == settings_markdown(settings_reference()), (
        "the README's settings reference is stale: paste the output of `order-worker settings`"
    )


def test_the_chart_keeps_every_secret_out_of_its_configmap() -> None:
    validate = (CHART / "templates" / "_validate.tpl").read_text(encoding="utf-8")
    refused = set(re.findall(r'"([A-Z0-9_]+)"', re.search(r"\$secretEnv := list ([^}]*)", validate).group(1)))
    assert _secret_names() <= refused, f"config.extraEnv would accept secrets: {_secret_names() - refused}"


def test_the_chart_names_the_secret_file_of_every_secret() -> None:
    values = (CHART / "values.yaml").read_text(encoding="utf-8")
    named = {name.upper() for name in re.findall(r"order_worker_([a-z0-9_]+)", values)}
    assert _secret_names() <= named, (
        f"values.yaml does not name these secret files: {_secret_names() - named}"
    )
