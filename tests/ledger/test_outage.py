"""Which errors mean the ledger is out, and how a unit of work waits for it: real engine errors, not mocks."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.ledger.helpers import PG_URL
from tests.support.rabbit import _free_low_port
from worker.ledger.outage import LedgerUnavailable, LedgerWaiter, unavailable_reason


def _disk_full_error(tmp_path: Path) -> sqlite3.OperationalError:
    """SQLite's own SQLITE_FULL, from a file capped at a few pages (what a full filesystem raises)."""
    connection = sqlite3.connect(tmp_path / "full.db")
    connection.execute("CREATE TABLE t (x BLOB)")
    connection.commit()
    connection.execute("PRAGMA max_page_count = 3")
    try:
        for _ in range(100):
            connection.execute("INSERT INTO t VALUES (?)", (b"\0" * 4096,))
            connection.commit()
    except sqlite3.OperationalError as error:
        return error
    finally:
        connection.close()
    raise AssertionError("SQLite never said the file was full")


def test_a_full_sqlite_file_is_named_as_a_full_disk(tmp_path: Path) -> None:
    reason = unavailable_reason(_disk_full_error(tmp_path))
    assert reason is not None and reason.startswith("disk full") and "SQLITE_FULL" in reason
    assert str(tmp_path) not in reason


def test_an_error_raised_from_an_outage_is_an_outage(tmp_path: Path) -> None:
    cause = _disk_full_error(tmp_path)
    try:
        try:
            raise cause
        except sqlite3.OperationalError as error:
            raise RuntimeError("the ledger transaction was not committed") from error
    except RuntimeError as wrapped:
        assert unavailable_reason(wrapped) == unavailable_reason(cause)


def test_a_wrong_statement_is_not_an_outage(tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / "x.db")
    with pytest.raises(sqlite3.OperationalError) as raised:
        connection.execute("SELEC 1")
    connection.close()
    assert unavailable_reason(raised.value) is None
    assert unavailable_reason(ValueError("no")) is None


def test_a_refused_postgres_connection_is_an_outage_without_the_address() -> None:
    port = _free_low_port()
    with pytest.raises(psycopg.OperationalError) as raised:
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/x", connect_timeout=2)
    reason = unavailable_reason(raised.value)
    assert reason is not None and reason.startswith("PostgreSQL")
    assert str(port) not in reason and "127.0.0.1" not in reason


def test_a_terminated_postgres_session_is_an_outage_and_a_bad_statement_is_not() -> None:
    name = f"ow-test-{uuid.uuid4().hex[:8]}"
    victim = psycopg.connect(PG_URL, autocommit=True, application_name=name)
    try:
        with pytest.raises(psycopg.errors.SyntaxError) as bad:
            victim.execute("SELEC 1")
        assert unavailable_reason(bad.value) is None
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (name,)
            )
        with pytest.raises(psycopg.OperationalError) as cut:
            victim.execute("SELECT 1")
        assert unavailable_reason(cut.value) is not None
    finally:
        victim.close()


def test_the_waiter_tries_again_while_the_ledger_is_out(tmp_path: Path) -> None:
    full = _disk_full_error(tmp_path)
    pauses: list[float] = []
    failures = [full, full]

    def unit() -> str:
        if failures:
            raise failures.pop()
        return "committed"

    waiter = LedgerWaiter(first=0.25, cap=1.0, sleep=pauses.append)
    assert waiter.hold(unit, "a test") == "committed"
    assert len(pauses) == 2 and 0.18 <= pauses[0] <= 0.25 and pauses[1] <= 0.5


def test_the_waiter_gives_up_at_its_deadline_and_raises_other_errors_at_once(tmp_path: Path) -> None:
    full = _disk_full_error(tmp_path)
    waiter = LedgerWaiter(first=10.0, cap=10.0, sleep=lambda seconds: None)

    def out() -> None:
        raise full

    with pytest.raises(LedgerUnavailable) as raised:
        waiter.hold(out, "a test", deadline=0.0)
    assert raised.value.reason.startswith("disk full")
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise KeyError("not an outage")

    with pytest.raises(KeyError):
        waiter.hold(broken, "a test")
    assert calls == [1]


def test_sqlite_readiness_says_when_the_disk_beside_the_file_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads go on when the filesystem is full, so the probe also checks the free space."""
    from worker.ledger import open_ledger
    from worker.ledger import sqlite as sqlite_adapter

    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        ledger.migrate()
        ledger.ping()
        monkeypatch.setattr(sqlite_adapter, "MIN_FREE_BYTES", 1 << 62)  # more than any disk has free
        with pytest.raises(LedgerUnavailable) as raised:
            ledger.ping()
        assert raised.value.reason.startswith("disk full") and str(tmp_path) not in raised.value.reason
    finally:
        ledger.close()


def test_postgres_readiness_answers_within_seconds_when_the_server_is_gone() -> None:
    """A stopped server makes the probe fail after at most its short wait, not the pool's 30 s."""
    import time

    from worker.ledger import open_ledger
    from worker.ledger.postgres import PROBE_TIMEOUT

    ledger = open_ledger(f"postgresql://postgres@127.0.0.1:{_free_low_port()}/x?pool_timeout=30")
    try:
        started = time.monotonic()
        with pytest.raises(LedgerUnavailable) as raised:
            ledger.ping()
        assert time.monotonic() - started < PROBE_TIMEOUT + 2
        assert raised.value.reason.startswith("PostgreSQL")
    finally:
        ledger.close()
