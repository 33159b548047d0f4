"""Options and fixtures of the whole test tree (pytest reads options only from a conftest at or above the paths
it is given)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.ledger import open_ledger
from worker.ledger.base import Ledger

RELIABILITY_DIR = Path(__file__).parent / "reliability"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reliability",
        action="store_true",
        default=False,
        help="also run the reliability scenarios (tests/reliability: real processes killed, paused and "
        "starved, about 20 minutes); naming that folder on the command line includes them too",
    )
    parser.addoption(
        "--reliability-size",
        choices=["ci", "large"],
        default=None,
        help="size of the reliability scenarios (default: $ORDER_WORKER_RELIABILITY_SIZE or ci)",
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """A migrated SQLite ledger of the test's own (``tests/ledger`` overrides it with every backend)."""
    opened = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    opened.migrate()
    yield opened
    opened.close()


def _names_reliability(config: pytest.Config) -> bool:
    for arg in config.args:
        path = Path(arg.split("::", 1)[0]).resolve()
        if path == RELIABILITY_DIR or RELIABILITY_DIR in path.parents:
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The fast tier by default: the reliability scenarios run with ``--reliability`` or when their folder
    (or a file in it) is named, so a plain ``pytest`` answers in minutes whether the project works."""
    if config.getoption("--reliability") or _names_reliability(config):
        return
    scenarios = [item for item in items if RELIABILITY_DIR in Path(str(item.path)).parents]
    if not scenarios:
        return
    config.hook.pytest_deselected(items=scenarios)
    items[:] = [item for item in items if RELIABILITY_DIR not in Path(str(item.path)).parents]
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    if terminal is not None:
        terminal.write_line(
            f"{len(scenarios)} reliability scenarios not run (the fast tier); add --reliability to run them"
        )
