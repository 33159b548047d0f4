"""Schema migrations and opening ledgers from URLs."""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.ledger.helpers import PG_URL, T0, command, migrate_in_process, ref
from worker.ledger import open_ledger
from worker.ledger.migrations import latest_version
from worker.ledger.sql import SqlLedger


def test_migrate_is_idempotent(url: str) -> None:
    ledger = open_ledger(url)
    assert isinstance(ledger, SqlLedger)
    try:
        assert ledger.schema_version() == 0
        ledger.migrate()
        ledger.claim(command("cmd-00000001"), ref("cmd-00000001"), T0)
        ledger.migrate()
        assert ledger.schema_version() == latest_version()
        assert ledger.get("cmd-00000001") is not None  # re-running kept the data
    finally:
        ledger.close()
    reopened = open_ledger(url)
    try:
        reopened.migrate()
        reopened.ping()
        assert reopened.get("cmd-00000001") is not None
    finally:
        reopened.close()


def test_concurrent_migrate_from_many_threads(backend: str, fresh_url: Callable[[str], str]) -> None:
    url = fresh_url(backend)
    ledgers = [open_ledger(url) for _ in range(6)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(ledgers))

    def run(ledger: object) -> None:
        assert isinstance(ledger, SqlLedger)
        barrier.wait()
        try:
            ledger.migrate()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(ledger,)) for ledger in ledgers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert ledgers[0].schema_version() == latest_version()  # type: ignore[attr-defined]
    finally:
        for ledger in ledgers:
            ledger.close()


def test_concurrent_migrate_from_processes(backend: str, fresh_url: Callable[[str], str]) -> None:
    url = fresh_url(backend)
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        versions = pool.map(migrate_in_process, [url] * 3)
    assert versions == [latest_version()] * 3


def test_schema_option_creates_and_uses_the_schema(pg_admin: psycopg.Connection) -> None:
    schema = f"ow_test_{uuid.uuid4().hex[:12]}"
    try:
        ledger = open_ledger(f"{PG_URL}?pool_size=2&schema={schema}")
        try:
            ledger.migrate()
            ledger.claim(command("cmd-00000001"), ref("cmd-00000001"), T0)
        finally:
            ledger.close()
        row = pg_admin.execute(f'SELECT count(*) FROM "{schema}".orders').fetchone()
        assert row == (1,)
    finally:
        pg_admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_libpq_options_pass_through_beside_ledger_options(fresh_url: Callable[[str], str]) -> None:
    url = fresh_url("postgres").replace("options=", "pool_size=2&prepare_threshold=none&options=")
    url += "%20-c%20statement_timeout%3D4321"
    ledger = open_ledger(url)
    assert isinstance(ledger, SqlLedger)
    try:
        ledger.migrate()
        with ledger.database.read() as session:
            assert session.one("SHOW statement_timeout") == ("4321ms",)
            assert session.one("SELECT current_schema()") == (url.split("%3D")[1].split("%20")[0],)
    finally:
        ledger.close()


def test_sqlite_is_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    import sqlite3

    ledger = open_ledger(f"sqlite:///{tmp_path / 'w.db'}?busy_timeout=12")
    ledger.migrate()
    ledger.close()
    conn = sqlite3.connect(tmp_path / "w.db")
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://localhost/db", "unsupported ledger URL scheme"),
        ("nonsense", "unsupported ledger URL scheme"),
        ("sqlite:///:memory:", "memory"),
        ("sqlite://host/x.db", "no host"),
        ("sqlite:///x.db?journal=delete", "unknown SQLite ledger option"),
        ("sqlite:///x.db?busy_timeout=1", "busy_timeout"),
        ("sqlite:///x.db?synchronous=sometimes", "synchronous"),
        ("postgresql://u:secret@127.0.0.1/db?pool=3", "invalid PostgreSQL ledger URL"),
        ("postgresql://u:secret@127.0.0.1/db?schema=a;drop", "schema"),
    ],
)
def test_bad_urls_are_refused_without_echoing_them(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        open_ledger(url)
    assert "secret" not in str(info.value)


def test_keyword_options_override_the_url(tmp_path: Path) -> None:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'k.db'}?synchronous=sometimes", synchronous="normal")
    ledger.close()
