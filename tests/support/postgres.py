"""A throwaway PostgreSQL cluster for scenarios that stop the database or cut its connections (never the
shared server on 5432)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tests.support.rabbit import _free_low_port
from tests.support.stack import wait_until
from worker.processes import port_open


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"{name} not found under /usr/lib/postgresql/*/bin")
    return found[-1]


class PostgresNode:
    """A cluster of our own: ``initdb`` into a temporary directory handed to the ``postgres`` user (the
    server refuses to run as root), trust authentication, listening on loopback only on a free port below
    the ephemeral range (so no outgoing connection takes it while the server is down), its socket in the
    same directory. Started and stopped with ``pg_ctl``; ``destroy()`` stops it and removes everything."""

    def __init__(self, base: Path | None = None) -> None:
        self.base = base or Path(tempfile.mkdtemp(prefix="owrel-pg-"))
        self.base.chmod(0o755)
        self.data = self.base / "data"
        self.port = _free_low_port()
        self.starts = 0
        self.stops = 0
        self.downtime = 0.0
        shutil.chown(self.base, "postgres", "postgres")
        self._as_postgres(
            [_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.base}'\nmax_connections = 100\nfsync = off\n"
                "shared_buffers = 32MB\n"
            )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, argv: list[str], timeout: float = 120) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv],
            env=env,
            capture_output=True,
            timeout=timeout,
            cwd=self.base,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{argv[0]} failed: {done.stdout.decode()[-800:]} {done.stderr.decode()[-800:]}"
            )

    def start(self, timeout: float = 60) -> float:
        """``pg_ctl start`` on the same data dir; returns the seconds until it accepted a connection."""
        started = time.monotonic()
        log = self.base / f"server-{self.starts}.log"
        self._as_postgres([_bin("pg_ctl"), "-D", str(self.data), "-l", str(log), "-w", "-t", "60", "start"])
        self.starts += 1
        wait_until(self._answers, timeout, f"PostgreSQL on {self.port} up", interval=0.2)
        return time.monotonic() - started

    def _answers(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=2) as connection:
                connection.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: every session is cut, open transactions roll back, a clean shutdown."""
        self._as_postgres([_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop"])
        self.stops += 1
        wait_until(lambda: not port_open("127.0.0.1", self.port, 0.5), 30, "PostgreSQL port closed")

    def terminate_backends(self, application_name: str = "order-worker") -> int:
        """``pg_terminate_backend`` on every session of the service (by its application_name)."""
        with psycopg.connect(self.url, autocommit=True) as connection:
            rows = connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s"
                " AND pid <> pg_backend_pid()",
                (application_name,),
            ).fetchall()
        return sum(1 for (ok,) in rows if ok)

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            if (self.data / "postmaster.pid").exists():
                self._as_postgres([_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(self.base, ignore_errors=True)
