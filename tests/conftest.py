"""Options and fixtures of the whole test tree (pytest reads options only from a conftest at or above the paths
it is given)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.ledger import open_ledger
from worker.ledger.base import Ledger


def pytest_addoption(parser: pytest.Parser) -> None:
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
