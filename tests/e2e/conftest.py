from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.e2e.harness import POSTGRES_URL, RABBITMQ_URL, Sandbox, Stack, require_service, start_sandbox


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def sandbox(log_dir: Path) -> Iterator[Sandbox]:
    require_service("127.0.0.1", 5672, f"RabbitMQ ({RABBITMQ_URL})", "Run 'bash deploy/dev.sh broker'.")
    box = start_sandbox(log_dir)
    yield box
    box.process.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    require_service("127.0.0.1", 5432, "PostgreSQL", "Run 'bash deploy/dev.sh postgres'.")
    schema = f"e2e_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def stack(sandbox: Sandbox, ledger_url: str, log_dir: Path) -> Iterator[Stack]:
    deployment = Stack(sandbox, ledger_url, log_dir)
    yield deployment
    deployment.stop()
