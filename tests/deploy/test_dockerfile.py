"""deploy/Dockerfile: hadolint-clean, multi-stage, non-root, one entrypoint for every role.

No Docker engine runs here, so the image is not built: these checks read the Dockerfile itself.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from tests.deploy.conftest import CHART, DEPLOY, REPO, load_yaml, tool

DOCKERFILE = DEPLOY / "Dockerfile"
BUILD_TOOLS = ("apt-get", "apk ", "gcc", "build-essential", "make ", "cargo", "git ")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined: list[str] = []
    current = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        joined.append(current + line)
        current = ""
    return [
        (item.split(None, 1)[0].upper(), item.split(None, 1)[1] if " " in item else "") for item in joined
    ]


def stages() -> dict[str, list[tuple[str, str]]]:
    """Each named stage's instructions, its FROM first."""
    named: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for op, args in instructions():
        if op == "FROM":
            current = []
            named[args.split()[-1]] = current
        current.append((op, args))
    return named


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def effective(stage: str) -> dict[str, str]:
    """A stage's settings as the image has them: its own instructions over those of the stages it is
    built FROM (ENTRYPOINT, STOPSIGNAL... are inherited)."""
    chain = stages()
    settings: dict[str, str] = {}
    while stage in chain:
        for op, args in reversed(chain[stage][1:]):
            settings.setdefault(op, args)
        stage = chain[stage][0][1].split()[0]
    return settings


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [tool("hadolint"), "--format", "json", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings: list[dict[str, Any]] = json.loads(result.stdout or "[]")
    assert findings == [] and result.returncode == 0, findings or result.stderr


def test_multi_stage_and_the_final_stage_carries_no_build_tools() -> None:
    froms = [args for op, args in instructions() if op == "FROM"]
    assert len(froms) >= 2
    final = final_stage()
    assert final[0][1].endswith(" AS runtime")
    for op, args in final:
        if op == "RUN":
            assert not any(word in args for word in BUILD_TOOLS), args
    copies = [args for op, args in final if op == "COPY"]
    assert copies and all(args.startswith("--from=build ") for args in copies), copies


def test_runs_as_a_numeric_non_root_user_matching_the_chart_and_compose() -> None:
    users = [args for op, args in final_stage() if op == "USER"]
    assert users == ["10001:10001"]
    pod = load_yaml(CHART / "values.yaml")["podSecurityContext"]
    assert (pod["runAsUser"], pod["runAsGroup"]) == (10001, 10001)
    compose = load_yaml(DEPLOY / "docker-compose.yml")
    assert compose["x-order-worker"]["user"] == "10001:10001"


def test_one_entrypoint_for_every_role_and_sigterm() -> None:
    final = effective("runtime")
    assert json.loads(final["ENTRYPOINT"]) == ["order-worker"]
    assert json.loads(final["CMD"]) == ["worker"]
    assert final["STOPSIGNAL"] == "SIGTERM"
    assert set(final["EXPOSE"].split()) == {"9191", "8091"}


def test_the_production_image_carries_no_simulator_and_the_sandbox_target_does() -> None:
    named = stages()
    assert final_stage() == named["runtime"]
    copied = [args for op, args in named["runtime"] if op == "COPY"]
    assert copied == ["--from=build /opt/order-worker /opt/order-worker"]
    assert all("sandbox" not in args for op, args in named["build"])
    sandbox = effective("sandbox")
    assert json.loads(sandbox["CMD"]) == ["sandbox"] and sandbox["EXPOSE"] == "8090"
    assert sandbox["USER"] == "10001:10001"


def test_the_build_context_is_an_allow_list_of_what_the_package_needs() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    rules = [line for line in ignore if line and not line.startswith("#")]
    assert rules[0] == "*"
    assert {"!pyproject.toml", "!worker/"} <= set(rules)
    for op, args in instructions():
        if op == "COPY" and not args.startswith("--from="):
            for source in args.split()[:-1]:
                assert f"!{source}" in rules or f"!{source.rstrip('*')}" in rules, source
                if not source.endswith("*"):
                    assert (REPO / source).exists(), source
