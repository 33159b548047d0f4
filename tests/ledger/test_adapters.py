"""Engine adapters: what the shared logic relies on from each backend."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.ledger.helpers import T0, command, hold_sqlite_writer_lock, ref
from worker.ledger import open_ledger
from worker.ledger import sqlite as sqlite_adapter
from worker.ledger.base import ClaimOutcome, Ledger
from worker.ledger.sqlite import SqliteDatabase


@pytest.mark.parametrize(
    ("configured", "durable", "relaxed"), [("full", 2, 1), ("extra", 3, 1), ("normal", 1, 1), ("off", 0, 0)]
)
def test_sqlite_durability_per_transaction(
    tmp_path: Path, configured: str, durable: int, relaxed: int
) -> None:
    db = SqliteDatabase(str(tmp_path / "d.db"), synchronous=configured)
    try:
        for _ in range(2):  # a pooled connection switches back and forth
            with db.write() as tx:
                assert tx.one("PRAGMA synchronous") == (durable,)
            with db.write(durable=False) as tx:
                assert tx.one("PRAGMA synchronous") == (relaxed,)
            with db.single() as tx:
                assert tx.one("PRAGMA synchronous") == (relaxed,)
    finally:
        db.close()


def test_sqlite_writer_waits_for_another_process_lock(tmp_path: Path) -> None:
    """A write lock held by a client that does not take the lock file (an sqlite3 shell) is waited for
    (busy_timeout), not failed on."""
    path = tmp_path / "busy.db"
    ledger = open_ledger(f"sqlite:///{path}")
    ledger.migrate()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(0.3, lambda: other.execute("COMMIT")).start()
    started = time.monotonic()
    try:
        assert ledger.claim(command("cmd-00000001"), ref("cmd-00000001"), T0).outcome is ClaimOutcome.NEW
        assert time.monotonic() - started >= 0.25
    finally:
        ledger.close()
        other.close()


def test_sqlite_writers_queue_on_the_lock_file_and_a_killed_holder_frees_it(tmp_path: Path) -> None:
    """Processes queue on ``<file>-writer.lock``. The holder here forked a child before taking it, as
    Dramatiq's main process does: when the holder is killed the lock must be free, although the child
    (which inherited the holder's descriptors) lives on."""
    path = tmp_path / "held.db"
    db = SqliteDatabase(str(path))
    with db.write() as tx:
        tx.run("CREATE TABLE t (x INTEGER)")
    ready = tmp_path / "ready"
    holder = multiprocessing.get_context("spawn").Process(
        target=hold_sqlite_writer_lock, args=(str(path), str(ready))
    )
    holder.start()
    child_pid = 0
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and holder.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        child_pid = int(ready.read_text())
        written = threading.Event()

        def write() -> None:
            with db.write() as tx:
                tx.run("INSERT INTO t VALUES (1)")
            written.set()

        threading.Thread(target=write, daemon=True).start()
        assert not written.wait(0.5), "the writer did not wait for the other process's lock"
        os.kill(holder.pid or 0, signal.SIGKILL)
        holder.join(10)
        assert written.wait(10), "the killed holder's lock outlived it"
        with db.read() as s:
            assert s.one("SELECT COUNT(*) FROM t") == (1,)
    finally:
        if holder.is_alive():
            holder.kill()
        if child_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child_pid, signal.SIGKILL)
        db.close()


def test_sqlite_lock_file_is_shared_per_file_and_closed_with_its_last_ledger(tmp_path: Path) -> None:
    """One lock-file descriptor per file and process, however many ledger objects use it (a second one
    would queue this process behind itself), closed when the last of them closes (no descriptor leak)."""
    first = SqliteDatabase(str(tmp_path / "f.db"))
    second = SqliteDatabase(str(tmp_path / "f.db"))
    gate = first._gate
    assert second._gate is gate
    lock_path = f"/proc/self/fd/{gate.lock_fd}"
    first.close()
    first.close()  # a second close must not count twice
    assert os.readlink(lock_path).endswith("f.db-writer.lock")  # still open for the other ledger
    with second.write() as tx:
        tx.run("CREATE TABLE t (x INTEGER)")
    second.close()
    assert gate.key not in sqlite_adapter._GATES
    with contextlib.suppress(FileNotFoundError):  # the number may already belong to another file
        assert not os.readlink(lock_path).endswith("f.db-writer.lock")


def test_sqlite_rolls_back_and_reuses_the_connection_after_an_error(tmp_path: Path) -> None:
    db = SqliteDatabase(str(tmp_path / "r.db"))
    try:
        with db.write() as tx:
            tx.run("CREATE TABLE t (x INTEGER)")
        with pytest.raises(RuntimeError), db.write() as tx:
            tx.run("INSERT INTO t VALUES (1)")
            raise RuntimeError("boom")
        with db.read() as s:
            assert s.one("SELECT COUNT(*) FROM t") == (0,)
    finally:
        db.close()
    with pytest.raises(RuntimeError, match="closed"), db.read():
        pass


def test_sqlite_units_sharing_a_transaction_fail_alone(tmp_path: Path) -> None:
    """Writers queued behind a running unit join its transaction; one that fails is undone alone, and the
    others are still committed (the first unit runs without a savepoint, the later ones in their own)."""
    db = SqliteDatabase(str(tmp_path / "g.db"))
    try:
        with db.write() as tx:
            tx.run("CREATE TABLE t (x INTEGER)")
        outcomes: dict[int, str] = {}

        def unit(value: int, fail: bool) -> None:
            try:
                with db.write() as tx:
                    tx.run("INSERT INTO t VALUES (?)", (value,))
                    if fail:
                        raise RuntimeError("boom")
                outcomes[value] = "committed"
            except RuntimeError:
                outcomes[value] = "failed"

        queued = [threading.Thread(target=unit, args=(value, value == 2)) for value in (2, 3)]
        with db.write() as tx:
            tx.run("INSERT INTO t VALUES (1)")
            for thread in queued:
                thread.start()
            deadline = time.monotonic() + 5
            while db._gate.waiting < len(queued) and time.monotonic() < deadline:
                time.sleep(0.001)
            assert db._gate.waiting == len(queued)
        for thread in queued:
            thread.join(5)
        assert outcomes == {2: "failed", 3: "committed"}
        with db.read() as s:
            assert s.rows("SELECT x FROM t ORDER BY x") == [(1,), (3,)]
    finally:
        db.close()


def _claim_in_child(ledger: Ledger, command_id: str) -> None:
    outcome = ledger.claim(command(command_id), ref(command_id), T0).outcome
    raise SystemExit(0 if outcome is ClaimOutcome.NEW else 1)


def test_a_forked_child_opens_its_own_connections(ledger: Ledger) -> None:
    """Dramatiq forks workers; a ledger opened before the fork must not share sockets or file locks."""
    ledger.claim(command("cmd-parent-01"), ref("cmd-parent-01"), T0)  # the parent holds connections
    child = multiprocessing.get_context("fork").Process(
        target=_claim_in_child, args=(ledger, "cmd-child-001")
    )
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert ledger.get("cmd-child-001") is not None  # the parent's connections still work
    assert ledger.claim(command("cmd-parent-02"), ref("cmd-parent-02"), T0).outcome is ClaimOutcome.NEW
