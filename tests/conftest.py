"""Options and fixtures of the whole test tree (pytest reads options only from a conftest at or above the paths
it is given)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.stack import POSTGRES_URL, require_service
from worker.ledger import open_ledger
from worker.ledger.base import Ledger

RELIABILITY_DIR = (Path(__file__).parent / "reliability").resolve()


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


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the logs of every process the tests start, so a failure's context is in one place."""
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The ledger of a process stack, on each backend: a SQLite file of the test's own, or a PostgreSQL
    schema of its own (dropped afterwards). ``parametrize("ledger_url", [...], indirect=True)`` picks one."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    require_service("127.0.0.1", 5432, "PostgreSQL", "Run 'bash deploy/dev.sh postgres'.")
    schema = f"stack_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')  # type: ignore[arg-type]
    yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA "{schema}" CASCADE')  # type: ignore[arg-type]


def _is_scenario(item: pytest.Item) -> bool:
    return item.get_closest_marker("reliability") is not None


def _named_on_the_command_line(item: pytest.Item, config: pytest.Config) -> bool:
    """True when an argument names the item's folder, file or node id (``path::test``)."""
    item_path = Path(str(item.path)).resolve()
    too_wide = {Path(str(config.rootpath)).resolve(), Path(__file__).parent.resolve()}
    for arg in config.args:
        path_part, _, node_part = arg.partition("::")
        path = Path(path_part).resolve()
        if path in too_wide or (path != item_path and path not in item_path.parents):
            continue
        if not node_part or item.nodeid.split("::", 1)[-1].startswith(node_part):
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The fast tier by default, so a plain ``pytest`` answers in minutes whether the project works.

    Reliability scenarios (everything in tests/reliability, and fault tests marked ``reliability``
    elsewhere) run with ``--reliability`` (``pytest --reliability -m reliability`` runs only them), or when
    an argument names them: their folder, their file or their node id."""
    for item in items:
        if RELIABILITY_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.reliability)
    if config.getoption("--reliability"):
        return
    held_back = [
        item for item in items if _is_scenario(item) and not _named_on_the_command_line(item, config)
    ]
    if not held_back:
        return
    config.hook.pytest_deselected(items=held_back)
    kept = set(map(id, items)) - set(map(id, held_back))
    items[:] = [item for item in items if id(item) in kept]
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    if terminal is not None:
        terminal.write_line(
            f"{len(held_back)} reliability scenarios not run (the fast tier); add --reliability to run them"
        )
