"""Options of the whole test tree (pytest reads them only from a conftest at or above the paths it is given)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reliability-size",
        choices=["ci", "large"],
        default=None,
        help="size of the reliability scenarios (default: $ORDER_WORKER_RELIABILITY_SIZE or ci)",
    )
