"""The end-to-end stack: one sandbox for the session, a fresh deployment on each ledger backend per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import RABBITMQ_URL, Sandbox, Stack, require_service, spawn_sandbox


@pytest.fixture(scope="session")
def sandbox(log_dir: Path) -> Iterator[Sandbox]:
    require_service("127.0.0.1", 5672, f"RabbitMQ ({RABBITMQ_URL})", "Run 'bash deploy/dev.sh broker'.")
    box = spawn_sandbox(log_dir)
    yield box
    box.process.stop()


@pytest.fixture
def stack(sandbox: Sandbox, ledger_url: str, log_dir: Path) -> Iterator[Stack]:
    deployment = Stack(sandbox, ledger_url, log_dir)
    yield deployment
    deployment.stop()
