"""Fixtures of the reliability suite: sizes, seeds, verdicts, canaries, sandboxes, stacks, ledgers.

Run it: ``pytest tests/reliability`` (CI sizes) or ``pytest tests/reliability --reliability-size=large``
(or ``ORDER_WORKER_RELIABILITY_SIZE=large``). Verdicts go to stdout and to the JSON-lines report
(``$ORDER_WORKER_RELIABILITY_REPORT``, default ``.run/reliability.jsonl``);
``python tests/reliability/report.py`` turns it into a Markdown table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.rig import Canaries, RelStack, Sizes, Verdict, canary_sandbox, new_seed, pick_sizes
from tests.support.stack import RABBITMQ_URL, Sandbox, require_service


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "reliability: reliability and security scenario (real processes)")
    config.addinivalue_line("markers", "scenario(name): the scenario name used in the verdict line")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rel_report_{report.when}", report)


@pytest.fixture(scope="session")
def sizes(request: pytest.FixtureRequest) -> Sizes:
    return pick_sizes(request.config.getoption("--reliability-size"))


@pytest.fixture
def seed() -> int:
    return new_seed()


@pytest.fixture
def canaries() -> Canaries:
    return Canaries.fresh()


@pytest.fixture
def verdict(request: pytest.FixtureRequest, seed: int, sizes: Sizes) -> Iterator[Verdict]:
    marker = request.node.get_closest_marker("scenario")
    name = marker.args[0] if marker else request.node.name
    record = Verdict(name, seed, sizes.name)
    param = getattr(request.node, "callspec", None)
    if param is not None:
        record.count(params=dict(param.params))
    yield record
    if not record.emitted:
        report = getattr(request.node, "rel_report_call", None)
        text = str(report.longrepr)[-400:] if report is not None and report.failed else "no verdict"
        record.abort(text)


@pytest.fixture
def make_sandbox(log_dir: Path, canaries: Canaries, seed: int) -> Iterator[Callable[..., Sandbox]]:
    require_service("127.0.0.1", 5672, f"RabbitMQ ({RABBITMQ_URL})", "Run 'bash deploy/dev.sh broker'.")
    started: list[Sandbox] = []

    def make(**options: Any) -> Sandbox:
        options.setdefault("seed", seed)
        box = canary_sandbox(log_dir, canaries, **options)
        started.append(box)
        return box

    yield make
    for box in started:
        box.process.stop()


@pytest.fixture
def make_stack(ledger_url: str, log_dir: Path, canaries: Canaries) -> Iterator[Callable[..., RelStack]]:
    stacks: list[RelStack] = []

    def make(sandbox: Sandbox, **options: Any) -> RelStack:
        stack = RelStack(sandbox, ledger_url, log_dir, canaries=canaries, **options)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()
