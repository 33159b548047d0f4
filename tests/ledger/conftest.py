"""Every ledger test runs against both backends: a SQLite file and a throwaway PostgreSQL schema.

PostgreSQL is required, never skipped: the distributed backend is the one whose locking matters most.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.ledger.helpers import PG_URL, pg_url_for_schema
from worker.ledger import open_ledger
from worker.ledger.base import Ledger

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[psycopg.Connection]:
    try:
        conn = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        password = urlsplit(PG_URL).password
        shown = PG_URL.replace(password, "***") if password else PG_URL
        pytest.fail(
            f"PostgreSQL is not reachable at {shown} ({exc}).\n"
            "The ledger tests need a real server. Start one, e.g.\n"
            "  docker run -d --name ow-pg -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust "
            "-e POSTGRES_DB=test postgres:16\n"
            "or point ORDER_WORKER_TEST_POSTGRES_URL at another server.",
            pytrace=False,
        )
    yield conn
    conn.close()


@pytest.fixture
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Factory of URLs to empty databases of one backend; PostgreSQL schemas are dropped afterwards."""
    schemas: list[str] = []

    def make(backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / f'ledger-{uuid.uuid4().hex[:8]}.db'}"
        admin = request.getfixturevalue("pg_admin")
        schema = f"ow_test_{uuid.uuid4().hex[:12]}"
        admin.execute(f'CREATE SCHEMA "{schema}"')
        schemas.append(schema)
        return pg_url_for_schema(schema)

    yield make
    if schemas:
        admin = request.getfixturevalue("pg_admin")
        for schema in schemas:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(backend: str, fresh_url: Callable[[str], str]) -> str:
    return fresh_url(backend)


@pytest.fixture
def ledger(url: str) -> Iterator[Ledger]:
    opened = open_ledger(url)
    opened.migrate()
    yield opened
    opened.close()
