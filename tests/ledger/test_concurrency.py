"""Races, with real threads (and real processes on one SQLite file).

Each test makes the racers start together (a barrier) and then checks the invariant the ledger exists
for: one NEW per command, one event per transition, no row handed out twice.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest

from tests.ledger.helpers import ERR, T0, claim_many_in_process, command, created, observed, ref
from worker.ledger import open_ledger
from worker.ledger.base import ClaimOutcome, Ledger, Rejection
from worker.messages import Source
from worker.status import Status

R = TypeVar("R")


def race(workers: int, job: Callable[[int], R]) -> list[R]:
    barrier = threading.Barrier(workers)

    def run(index: int) -> R:
        barrier.wait()
        return job(index)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(run, range(workers)))


@pytest.mark.parametrize("workers", [2, 8])
def test_claim_race_has_one_winner(ledger: Ledger, workers: int) -> None:
    ids = [f"cmd-race-{i:04}" for i in range(20)]

    def job(_: int) -> list[ClaimOutcome]:
        return [ledger.claim(command(cid), ref(cid), T0).outcome for cid in ids]

    outcomes = race(workers, job)
    for position in range(len(ids)):
        counts = Counter(outcome[position] for outcome in outcomes)
        assert counts == {ClaimOutcome.NEW: 1, ClaimOutcome.DUPLICATE: workers - 1}


def test_claim_race_between_ledger_instances(url: str) -> None:
    """Separate pools (as separate replicas have) still agree on one winner."""
    ledgers = [open_ledger(url) for _ in range(4)]
    ledgers[0].migrate()
    try:
        outcomes = race(
            4, lambda i: ledgers[i].claim(command("cmd-race-0001"), ref("cmd-race-0001"), T0).outcome
        )
        assert sorted(outcomes) == sorted([ClaimOutcome.NEW] + [ClaimOutcome.DUPLICATE] * 3)
    finally:
        for opened in ledgers:
            opened.close()


def test_claim_race_between_processes_on_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    setup = open_ledger(url)
    setup.migrate()
    setup.close()
    ids = [f"cmd-proc-{i:04}" for i in range(100)]
    go = tmp_path / "go"
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        pending = [pool.apply_async(claim_many_in_process, (url, ids, str(go))) for _ in range(2)]
        go.touch()
        won = [result.get(timeout=60) for result in pending]
    assert sorted(won[0] + won[1]) == ids  # every id won exactly once across the two processes


def test_begin_attempt_race_has_one_lease(ledger: Ledger) -> None:
    ledger.claim(command("cmd-lease-001"), ref("cmd-lease-001"), T0)
    attempts = race(8, lambda _: ledger.begin_attempt("cmd-lease-001", T0, 30))
    assert sum(a is not None for a in attempts) == 1
    assert ledger.get("cmd-lease-001").attempts == 1  # type: ignore[union-attr]


def test_same_change_seen_by_many_observers_makes_one_event(ledger: Ledger) -> None:
    ids = [f"cmd-obs-{i:04}" for i in range(10)]
    for cid in ids:
        created(ledger, cid)
    backlog = ledger.outbox_backlog()

    def job(index: int) -> int:
        source = Source.POLL if index % 2 else Source.WEBHOOK
        events = 0
        for cid in ids:
            obs = observed(Status.CONFIRMING, "PENDING", updated_at=T0 + 10)
            events += len(ledger.apply_observation(cid, obs, source, T0 + 11, T0 + 40, push=index % 2 == 0))
        return events

    assert sum(race(8, job)) == len(ids)
    assert ledger.outbox_backlog() == backlog + len(ids)
    for cid in ids:
        assert ledger.get(cid).event_seq == 2  # type: ignore[union-attr]


def test_concurrent_outcomes_of_one_create_make_one_event(ledger: Ledger) -> None:
    ledger.claim(command("cmd-out-00001"), ref("cmd-out-00001"), T0)

    def job(index: int) -> int:
        if index % 3 == 0:
            return len(ledger.mark_in_doubt("cmd-out-00001", ERR, T0))
        if index % 3 == 1:
            return len(ledger.record_failed("cmd-out-00001", ERR, Source.CREATE, T0))
        obs = observed(Status.AWAITING_DEPOSIT)
        return len(ledger.record_created("cmd-out-00001", obs, None, None, False, T0, T0))

    results = race(6, job)
    # Whichever lands first wins; in_doubt may still be followed by created or failed (that resolves it).
    assert 1 <= sum(results) <= 2
    assert ledger.get("cmd-out-00001").event_seq == sum(results)  # type: ignore[union-attr]


def test_take_due_never_hands_a_row_out_twice(ledger: Ledger) -> None:
    ids = [f"cmd-due-{i:04}" for i in range(150)]
    for cid in ids:
        ledger.claim(command(cid), ref(cid), T0)

    def job(_: int) -> list[str]:
        taken: list[str] = []
        while batch := ledger.take_due("0trace", T0 + 1, 7, 300):
            taken.extend(d.command_id for d in batch)
        return taken

    results = race(6, job)
    everything = [cid for taken in results for cid in taken]
    assert sorted(everything) == ids


def test_claim_outbox_never_hands_a_row_out_twice(ledger: Ledger) -> None:
    for i in range(150):
        ledger.record_rejection(Rejection(f"msg:{i}", None, None, ERR, {}, {}), T0)

    def job(_: int) -> list[str]:
        taken: list[str] = []
        while batch := ledger.claim_outbox(T0 + 1, 9, 300):
            taken.extend(row.event_id for row in batch)
            ledger.mark_published([row.event_id for row in batch], T0 + 2)
        return taken

    results = race(6, job)
    everything = [eid for taken in results for eid in taken]
    assert len(everything) == len(set(everything)) == 150
    assert ledger.outbox_backlog() == 0


def test_concurrent_rejections_and_pushes_are_recorded_once(ledger: Ledger) -> None:
    rejections = race(
        8, lambda _: len(ledger.record_rejection(Rejection("msg:dup", None, None, ERR, {}, {}), T0))
    )
    assert sum(rejections) == 1
    pushes = race(8, lambda _: ledger.record_push("push:dup", T0))
    assert sum(pushes) == 1
