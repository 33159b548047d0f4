"""Scenario: the ledger goes away under load, and comes back.

``ledger_outage`` (PostgreSQL): a throwaway cluster of our own (``tests.support.postgres``) carries the
ledger of a whole deployment (a worker, the scheduler/relay, the webhook receiver). While the commands are
published, every session of the service is cut twice with ``pg_terminate_backend`` (once before, once
after the outage), and the database is stopped (``pg_ctl stop -m fast``) for a minute and started again.

``ledger_disk_full`` (SQLite): the ledger file lives on a small tmpfs mounted by the test; a filler file
takes every free byte for a while, then is deleted.

Criteria: every role stays up (the same processes, none restarted); ``/readyz`` of each role says not
ready while the ledger is out and ready again after; commands wait in the queue and none is dead-lettered
(the broker's dead-letter queues, sampled throughout, stay empty; the rescuer handles nothing; Dramatiq
gives up on none and retries none: an outage must not spend a command's retries); nothing is lost or doubled (every command one partner order, one ledger row, its
events), nothing is left in doubt or untrackable, and the backlog settles soon after recovery (the seconds
are in the verdict). For the full disk, the logs name the problem.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.audit import full_audit
from tests.reliability.rig import RelStack, Sizes, Supervisor, Verdict
from tests.support.events import EventWitness, create_bodies, publish_reliably, witness
from tests.support.ledger_views import _sql_rows, is_settled, order_rows, outbox_ids
from tests.support.partners import commands_mix
from tests.support.postgres import PostgresNode
from tests.support.stack import Process, Sandbox
from worker.processes import poll

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(900)]

# Log lines that mean a command was given up on or went through the dead-letter path.
DEATH_LINES = (
    b"Retries exceeded",
    b"dead_letter_dropped",
    b"dead_letter_sent_again_alone",
    b"poison_command",
)


def readyz(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Watch:
    """Samples, every half second, each role's /readyz and the broker's dead-letter queues."""

    stack: RelStack
    urls: dict[str, str]
    started: float = field(default_factory=time.monotonic)
    transitions: dict[str, list[tuple[float, bool]]] = field(default_factory=dict)
    dead_letter_peak: int = 0
    queue_peak: int = 0
    """Most create commands seen waiting (ready) in their queue at once."""
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                depths = self.stack.queue_depths()
                self.dead_letter_peak = max(
                    self.dead_letter_peak, sum(n for q, n in depths.items() if q.endswith(".XQ"))
                )
                self.queue_peak = max(self.queue_peak, depths.get(self.stack.create_queue, 0))
            for role, url in self.urls.items():
                ready = readyz(url)
                seen = self.transitions.setdefault(role, [])
                if not seen or seen[-1][1] != ready:
                    seen.append((round(time.monotonic() - self.started, 1), ready))
            self.samples += 1
            self._stop.wait(0.5)

    def not_ready_between(self, start: float, end: float) -> dict[str, bool]:
        """Per role: some sample in [start, end] (seconds since the watch began) said not ready."""
        found = {}
        for role, seen in self.transitions.items():
            state = True
            hit = False
            for at, ready in seen:
                if at <= start:
                    state = ready
                elif at <= end:
                    hit = hit or not ready
            found[role] = hit or not state
        return found

    def close(self) -> dict[str, list[tuple[float, bool]]]:
        self._stop.set()
        self._thread.join(10)
        return self.transitions


@dataclass
class Deployment:
    stack: RelStack
    sandbox: Sandbox
    worker: Supervisor
    scheduler: Supervisor
    webhooks: Process
    pids: dict[str, int]
    watch: Watch
    events: EventWitness

    def supervise(self) -> None:
        for supervisor in (self.worker, self.scheduler):
            supervisor.ensure()

    def now(self) -> float:
        """Seconds since the watch began (the scenario's timeline)."""
        return time.monotonic() - self.watch.started

    def at_second(self, second: float) -> None:
        """Keep supervising until ``second`` of the timeline: the scenario's schedule, not a hope."""
        while self.now() < second:
            self.supervise()
            time.sleep(0.2)

    def same_processes(self) -> bool:
        now = {
            "worker": self.worker.process.popen.pid,
            "scheduler": self.scheduler.process.popen.pid,
            "webhooks": self.webhooks.popen.pid,
        }
        alive = self.worker.process.alive and self.scheduler.process.alive and self.webhooks.alive
        restarts = self.worker.restarts + self.scheduler.restarts
        return alive and restarts == 0 and now == self.pids


@contextlib.contextmanager
def deployment(
    make_sandbox: Callable[..., Sandbox], make_stack: Callable[..., RelStack]
) -> Iterator[Deployment]:
    sandbox = make_sandbox()
    stack = make_stack(sandbox)
    stack.declare_queues()
    webhooks = stack.start_webhooks()
    with witness(stack.broker_url, stack.exchange) as events:
        worker = Supervisor(stack, "worker", "--processes", "1", "--threads", "8")
        scheduler = Supervisor(stack, "scheduler")
        worker.wait_ready(90)
        scheduler.wait_ready(90)
        urls = {
            "worker": f"http://127.0.0.1:{worker.process.metrics_port}/readyz",
            "scheduler_relay": f"http://127.0.0.1:{scheduler.process.metrics_port}/readyz",
            "webhooks": f"http://127.0.0.1:{stack.webhooks_port}/readyz",
        }
        pids = {
            "worker": worker.process.popen.pid,
            "scheduler": scheduler.process.popen.pid,
            "webhooks": webhooks.popen.pid,
        }
        watch = Watch(stack, urls)
        try:
            yield Deployment(stack, sandbox, worker, scheduler, webhooks, pids, watch, events)
        finally:
            watch.close()


class Producer:
    """Publishes the commands evenly over ``seconds`` on a thread of its own."""

    def __init__(self, stack: RelStack, bodies: list[bytes], seconds: float) -> None:
        self.published = 0
        self._stack = stack
        self._bodies = bodies
        self._seconds = seconds
        self._thread = threading.Thread(target=self._run, name="producer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        chunk = max(1, len(self._bodies) // 100)
        started = time.monotonic()
        for index in range(0, len(self._bodies), chunk):
            publish_reliably(
                self._stack.broker_url, self._stack.create_queue, self._bodies[index : index + chunk]
            )
            self.published = min(len(self._bodies), index + chunk)
            lag = started + self._seconds * self.published / len(self._bodies) - time.monotonic()
            if lag > 0:
                time.sleep(lag)

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()


def settle(run: Deployment, ids: list[str], budget: float) -> float | None:
    """Seconds until every command is settled and every committed event was seen, or None."""
    started = time.monotonic()
    while time.monotonic() - started < budget:
        run.supervise()
        with contextlib.suppress(Exception):
            rows = order_rows(run.stack.ledger_url)
            if all(is_settled(rows.get(c)) for c in ids):
                outbox = outbox_ids(run.stack.ledger_url)
                seen = {e["event_id"] for e in run.events.snapshot()}
                if all(outbox.values()) and set(outbox) <= seen:
                    return round(time.monotonic() - started, 1)
        time.sleep(0.5)
    return None


def log_counts(stack: RelStack, needles: tuple[bytes, ...]) -> dict[str, int]:
    logs = stack.service_logs()
    return {needle.decode(): sum(text.count(needle) for text in logs.values()) for needle in needles}


def judge(
    verdict: Verdict,
    run: Deployment,
    ids: list[str],
    settle_seconds: float | None,
    settle_limit: float,
    outage: tuple[float, float],
) -> dict[str, Any]:
    # Ready again once the ledger is back: each role, polled with a deadline (a session cut just before
    # may still show in a cached answer for a few seconds).
    poll(lambda: all(readyz(url) for url in run.watch.urls.values()), 30, 0.5)
    transitions = run.watch.close()
    not_ready = run.watch.not_ready_between(*outage)
    ready_after = {role: readyz(url) for role, url in run.watch.urls.items()}
    deaths = log_counts(run.stack, DEATH_LINES)
    retries = log_counts(run.stack, (b"Retrying message",))["Retrying message"]
    dead_records = _sql_rows(run.stack.ledger_url, "SELECT COUNT(*) FROM dead_letters")[0][0]
    verdict.count(
        readyz_transitions={
            role: [f"{at}s:{'ready' if ok else 'not_ready'}" for at, ok in seen]
            for role, seen in transitions.items()
        },
        outage_window_s=[round(outage[0], 1), round(outage[1], 1)],
        not_ready_during_outage=not_ready,
        ready_after_recovery=ready_after,
        create_queue_peak=run.watch.queue_peak,
        dead_letter_queue_peak=run.watch.dead_letter_peak,
        dead_letter_log_lines=deaths,
        dead_letter_records=dead_records,
        dramatiq_retries=retries,
        settled_after_recovery_s=settle_seconds,
        process_restarts=run.worker.restarts + run.scheduler.restarts,
        liveness_restarts=run.worker.liveness_restarts + run.scheduler.liveness_restarts,
    )
    counts = full_audit(verdict, run.stack, run.sandbox, run.events, ids)
    verdict.check("roles_stayed_up", run.same_processes())
    verdict.check("not_ready_while_ledger_out", all(not_ready.values()) and len(not_ready) == 3)
    verdict.check("ready_after_recovery", all(ready_after.values()) and len(ready_after) == 3)
    verdict.check(
        "nothing_dead_lettered",
        run.watch.dead_letter_peak == 0 and sum(deaths.values()) == 0 and dead_records == 0,
    )
    verdict.check("no_retry_spent_on_the_outage", retries == 0)
    verdict.check("one_partner_order_per_command", counts["partner_orders"] == len(ids))
    verdict.check("none_in_doubt_or_untrackable", counts["in_doubt"] == 0 and counts["untrackable"] == 0)
    verdict.check(
        f"settled_within_{settle_limit:g}s_of_recovery",
        settle_seconds is not None and settle_seconds <= settle_limit,
    )
    return counts


# ------------------------------------------------------------------------------------------ PostgreSQL


@pytest.fixture
def pg_node() -> Iterator[PostgresNode]:
    node = PostgresNode()
    try:
        node.start()
        yield node
    finally:
        node.destroy()


@pytest.fixture
def ledger_url(request: pytest.FixtureRequest) -> str:
    """The stack's ledger: the throwaway cluster, or a file on the small disk (``indirect`` parameter)."""
    if request.param == "postgres":
        node: PostgresNode = request.getfixturevalue("pg_node")
        return node.url
    disk: Path = request.getfixturevalue("small_disk")
    return f"sqlite:///{disk / 'ledger.db'}"


@pytest.mark.scenario("ledger_outage")
@pytest.mark.parametrize("ledger_url", ["postgres"], indirect=True)
def test_postgres_stopped_and_sessions_cut_under_load(
    make_sandbox: Callable[..., Sandbox],
    make_stack: Callable[..., RelStack],
    pg_node: PostgresNode,
    sizes: Sizes,
    seed: int,
    verdict: Verdict,
) -> None:
    commands = commands_mix(sizes.ledger_outage_commands, seed, "lo")
    ids = [c["command_id"] for c in commands]
    with deployment(make_sandbox, make_stack) as run:
        bodies = create_bodies(run.stack.create_queue, commands)
        publish_seconds = 70.0
        producer = Producer(run.stack, bodies, publish_seconds)
        cuts: list[dict[str, float | int]] = []

        run.at_second(8)
        cuts.append({"at_s": round(run.now(), 1), "sessions": pg_node.terminate_backends()})
        run.at_second(20)
        down_at = run.now()
        published_at_stop = producer.published
        pg_node.stop()
        run.at_second(down_at + sizes.ledger_outage_seconds)
        pg_node.start()
        up_at = run.now()
        recovered = time.monotonic()
        run.at_second(up_at + 10)
        cuts.append({"at_s": round(run.now(), 1), "sessions": pg_node.terminate_backends()})
        assert producer.join(publish_seconds * 3), "the producer could not publish every command"
        remaining = settle(run, ids, 240)
        settle_seconds = None if remaining is None else round(time.monotonic() - recovered, 1)
        verdict.count(
            commands_published=len(bodies),
            ledger_down_s=round(up_at - down_at, 1),
            published_when_ledger_stopped=published_at_stop,
            session_cuts=cuts,
        )
        judge(verdict, run, ids, settle_seconds, 60.0, (down_at + 6, up_at))
    verdict.check("sessions_cut_twice", len(cuts) == 2 and all(int(c["sessions"]) > 0 for c in cuts))
    verdict.emit()


# ------------------------------------------------------------------------------------------ SQLite


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 48 MiB tmpfs of our own, unmounted and removed afterwards."""
    mount_point = Path(tempfile.mkdtemp(prefix="owrel-disk-"))
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m,mode=0755", "tmpfs", str(mount_point)], check=True
    )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
        shutil.rmtree(mount_point, ignore_errors=True)


def fill(path: Path) -> int:
    """Write zeros until the filesystem says it is full; returns the bytes taken."""
    block = b"\0" * (1 << 20)
    written = 0
    with path.open("wb", buffering=0) as handle:
        while True:
            try:
                written += handle.write(block)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                block = block[: len(block) // 2]
                if len(block) < 512:
                    break
    return written


@pytest.mark.scenario("ledger_disk_full")
@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_sqlite_ledger_on_a_full_disk(
    make_sandbox: Callable[..., Sandbox],
    make_stack: Callable[..., RelStack],
    small_disk: Path,
    sizes: Sizes,
    seed: int,
    verdict: Verdict,
) -> None:
    commands = commands_mix(sizes.disk_full_commands, seed, "df")
    ids = [c["command_id"] for c in commands]
    filler = small_disk / "filler"
    with deployment(make_sandbox, make_stack) as run:
        bodies = create_bodies(run.stack.create_queue, commands)
        publish_seconds = 40.0
        producer = Producer(run.stack, bodies, publish_seconds)

        run.at_second(8)
        full_at = run.now()
        taken = fill(filler)
        run.at_second(full_at + sizes.disk_full_seconds)
        filler.unlink()
        freed_at = run.now()
        recovered = time.monotonic()
        assert producer.join(publish_seconds * 3), "the producer could not publish every command"
        remaining = settle(run, ids, 240)
        settle_seconds = None if remaining is None else round(time.monotonic() - recovered, 1)
        named = log_counts(run.stack, (b"disk full",))["disk full"]
        verdict.count(
            commands_published=len(bodies),
            disk_full_s=round(freed_at - full_at, 1),
            filler_bytes=taken,
            log_lines_naming_disk_full=named,
        )
        judge(verdict, run, ids, settle_seconds, 60.0, (full_at + 6, freed_at))
    verdict.check("logs_name_the_full_disk", named > 0)
    verdict.emit()
