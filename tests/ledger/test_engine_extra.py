"""PostgreSQL's driver is the ``postgres`` extra: without it, a postgresql:// ledger URL fails with an error
that names the extra (and not the URL, which may hold a password), while SQLite still works."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

WITHOUT_PSYCOPG = textwrap.dedent(
    """
    import sys
    for name in ("psycopg", "psycopg_pool"):
        sys.modules[name] = None  # import fails as if the package were not installed
    from worker.ledger import EngineNotInstalledError, open_ledger
    try:
        open_ledger("postgresql://orders:hunter2-pw@127.0.0.1:5432/orders")
    except EngineNotInstalledError as error:
        print("refused:", error)
    ledger = open_ledger("sqlite:///" + sys.argv[1])
    ledger.migrate()
    ledger.close()
    print("sqlite: ok")
    """
)


def test_a_postgres_url_without_the_extra_names_the_extra(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_PSYCOPG, str(tmp_path / "ledger.db")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    refused = result.stdout.splitlines()[0]
    assert refused.startswith("refused:") and "order-worker[postgres]" in refused
    assert "hunter2" not in result.stdout + result.stderr
    assert "sqlite: ok" in result.stdout
