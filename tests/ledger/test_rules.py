"""The order state machine's rules (worker/ledger/rules.py) on plain records, without a database.

The contract tests prove the SQL path end to end on both engines; these pin each decision and the edge
cases the SQL path relies on: which statuses a rule applies to, the ordering guards, lease boundaries and
the event a transition yields.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.ledger.helpers import ERR, T0, command, observed, ref
from worker.ledger import rules
from worker.ledger.base import ClaimOutcome, OrderRecord
from worker.ledger.rows import replace
from worker.messages import EventError, EventType, Source, transition_event_id, utc_moment
from worker.status import TERMINAL, Status

CID = "cmd-00000001"
OTHER_ERR = EventError(code="http_400", reason="bad request")


def fresh(now: float = T0) -> OrderRecord:
    return rules.claimed(command(CID), ref(CID), now)


def leased(now: float = T0) -> OrderRecord:
    """A claimed order whose first attempt began at ``now`` (lease of 60 s)."""
    after = rules.begin(fresh(now), now, 60)
    assert after is not None
    return after


def record(**changes: Any) -> OrderRecord:
    """A claimed order changed as given (e.g. an order already tracked at some status)."""
    return replace(fresh(), **changes)


def tracked(status: Status, partner_updated_at: float | None = T0, **changes: Any) -> OrderRecord:
    """A created order the partner last reported at ``status``."""
    base: dict[str, Any] = {
        "status": status.value,
        "order_id": "po-1",
        "provider_status": status.value.upper(),
        "partner_updated_at": partner_updated_at,
        "next_action_at": T0 + 30,
        "event_seq": 1,
    }
    return record(**{**base, **changes})


# --- helpers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "seen", "kept"),
    [(None, None, None), (None, 5.0, 5.0), (5.0, None, 5.0), (5.0, 7.0, 7.0), (7.0, 5.0, 7.0)],
)
def test_later_never_goes_back_and_fills_a_missing_side(
    stored: float | None, seen: float | None, kept: float | None
) -> None:
    assert rules.later(stored, seen) == kept


def test_settled_clears_the_next_action_of_terminal_statuses_only() -> None:
    for status in Status:
        expected = None if status in TERMINAL else T0
        assert rules.settled(status.value, T0) == expected
    assert rules.settled(Status.IN_DOUBT.value, None) is None


def test_parked_statuses_are_the_terminal_ones_and_in_doubt() -> None:
    assert {Status.COMPLETED, Status.EXPIRED, Status.REFUNDED, Status.FAILED, Status.IN_DOUBT} == rules.PARKED
    assert set(rules.OPEN_CREATE) == {"submitting", "in_doubt"}


# --- claim and attempts ----------------------------------------------------------------------------------


def test_claimed_is_submitting_due_now_with_no_attempt() -> None:
    rec = fresh(T0)
    assert (rec.command_id, rec.provider, rec.partner_ref, rec.status) == (
        CID,
        "0trace",
        ref(CID),
        "submitting",
    )
    assert (rec.attempts, rec.attempt_open, rec.lease_until, rec.event_seq) == (0, False, None, 0)
    assert (rec.next_action_at, rec.created_at, rec.updated_at) == (T0, T0, T0)
    assert rec.fingerprint == command(CID).fingerprint()
    assert rec.command == command(CID).model_dump(mode="json")
    assert rec.order is None and rec.order_id is None and rec.last_error is None and not rec.untrackable


def test_claim_outcome_compares_fingerprints() -> None:
    stored = fresh()
    assert rules.claim_outcome(stored, command(CID).fingerprint()) is ClaimOutcome.DUPLICATE
    assert rules.claim_outcome(stored, command(CID, amount="0.02").fingerprint()) is ClaimOutcome.CONFLICT


def test_begin_takes_the_lease_and_counts_the_attempt() -> None:
    after = rules.begin(fresh(), T0 + 1, 60)
    assert after is not None
    assert (after.attempts, after.attempt_open) == (1, True)
    assert after.lease_until == after.next_action_at == T0 + 61
    assert after.updated_at == T0 + 1


def test_begin_respects_a_live_lease_and_reuses_one_that_ends_exactly_now() -> None:
    attempt = leased()
    assert rules.begin(attempt, T0 + 59.999, 60) is None
    again = rules.begin(attempt, T0 + 60, 60)  # lease_until <= now is free
    assert again is not None and again.attempts == 2 and again.lease_until == T0 + 120


@pytest.mark.parametrize("status", [s for s in Status if s is not Status.SUBMITTING])
def test_begin_only_on_submitting(status: Status) -> None:
    assert rules.begin(record(status=status.value), T0, 60) is None


def test_end_unsent_gives_the_attempt_back_once() -> None:
    attempt = leased()
    ended = rules.end_unsent(attempt, T0 + 5, ERR)
    assert ended is not None
    assert (ended.attempts, ended.attempt_open, ended.lease_until) == (0, False, None)
    assert (ended.next_action_at, ended.last_error) == (T0 + 5, ERR)
    assert ended.updated_at == attempt.updated_at  # bookkeeping of the attempt, not a change of the order
    assert rules.end_unsent(ended, T0 + 9, OTHER_ERR) is None  # no open attempt: would undercount


def test_end_unsent_never_counts_below_zero() -> None:
    odd = record(attempts=0, attempt_open=True)
    ended = rules.end_unsent(odd, T0, ERR)
    assert ended is not None and ended.attempts == 0


def test_end_unsent_and_retry_leave_other_statuses_alone() -> None:
    doubtful = record(status=Status.IN_DOUBT.value, attempt_open=True)
    assert rules.end_unsent(doubtful, T0, ERR) is None
    assert rules.retry(doubtful, T0, ERR) is None
    assert rules.retry(tracked(Status.CONFIRMING), T0, ERR) is None


def test_retry_closes_the_attempt_but_keeps_its_count() -> None:
    attempt = leased()
    retried = rules.retry(attempt, T0 + 20, ERR)
    assert retried is not None
    assert (retried.attempts, retried.attempt_open, retried.lease_until) == (1, False, None)
    assert (retried.next_action_at, retried.last_error, retried.status) == (T0 + 20, ERR, "submitting")


# --- create outcomes -------------------------------------------------------------------------------------


def test_created_writes_the_partner_order_and_closes_the_attempt() -> None:
    attempt = leased()
    change = rules.created(
        attempt, observed(Status.AWAITING_DEPOSIT, updated_at=T0 + 1), b"tok", "k1", False, T0 + 30, T0 + 2
    )
    assert change is not None and change.event_type is EventType.CREATED and change.error is None
    after = change.after
    assert (after.status, after.order_id, after.sealed_token, after.token_key_id) == (
        "awaiting_deposit",
        "po-1",
        b"tok",
        "k1",
    )
    assert (after.attempt_open, after.lease_until, after.attempts) == (False, None, 1)
    assert (after.next_action_at, after.partner_updated_at, after.updated_at) == (T0 + 30, T0 + 1, T0 + 2)


def test_created_with_an_unknown_status_starts_at_awaiting_deposit() -> None:
    change = rules.created(fresh(), observed(None, "MYSTERY"), None, None, False, T0 + 30, T0)
    assert change is not None
    assert (change.after.status, change.after.provider_status) == ("awaiting_deposit", "MYSTERY")


def test_created_untrackable_and_terminal_results() -> None:
    untrackable = rules.created(fresh(), observed(Status.AWAITING_DEPOSIT), None, None, True, T0 + 30, T0)
    assert untrackable is not None and untrackable.event_type is EventType.UNTRACKABLE
    assert untrackable.after.untrackable
    done = rules.created(fresh(), observed(Status.COMPLETED), None, None, False, T0 + 30, T0)
    assert done is not None and done.after.next_action_at is None  # settled: terminal has no next action


def test_created_keeps_the_later_partner_time() -> None:
    doubtful = record(status=Status.IN_DOUBT.value, partner_updated_at=T0 + 50)
    change = rules.created(
        doubtful, observed(Status.CONFIRMING, updated_at=T0 + 10), None, None, False, None, T0
    )
    assert change is not None and change.after.partner_updated_at == T0 + 50


@pytest.mark.parametrize("status", [s for s in Status if s.value not in rules.OPEN_CREATE])
def test_a_create_result_after_the_create_settled_changes_nothing(status: Status) -> None:
    stored = tracked(status)
    assert rules.created(stored, observed(Status.AWAITING_DEPOSIT), b"t", "k", False, T0, T0) is None
    assert rules.failed(stored, ERR, T0) is None
    assert rules.in_doubt(stored, ERR, T0) is None


def test_failed_ends_an_open_create_with_its_error() -> None:
    for before in (fresh(), record(status=Status.IN_DOUBT.value, next_action_at=None)):
        change = rules.failed(rules.begin(before, T0, 60) or before, ERR, T0 + 3)
        assert change is not None and (change.event_type, change.error) == (EventType.FAILED, ERR)
        after = change.after
        assert (after.status, after.attempt_open, after.lease_until, after.next_action_at) == (
            "failed",
            False,
            None,
            None,
        )
        assert (after.last_error, after.updated_at) == (ERR, T0 + 3)


def test_in_doubt_only_from_submitting_and_never_due_again() -> None:
    attempt = leased()
    change = rules.in_doubt(attempt, ERR, T0 + 4)
    assert change is not None and (change.event_type, change.error) == (EventType.IN_DOUBT, ERR)
    assert (change.after.status, change.after.next_action_at, change.after.lease_until) == (
        "in_doubt",
        None,
        None,
    )
    assert not change.after.attempt_open and change.after.attempts == 1
    assert rules.in_doubt(change.after, ERR, T0 + 5) is None


# --- observations ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_nothing_leaves_a_terminal_status(status: Status) -> None:
    stored = tracked(status, next_action_at=None)
    assert (
        rules.observed(stored, observed(Status.PROCESSING, updated_at=T0 + 100), T0 + 1, T0 + 30, True)
        is None
    )


def test_an_older_observation_only_moves_the_cadence_and_the_push_clock() -> None:
    stored = tracked(Status.CONFIRMING, partner_updated_at=T0 + 10)
    change = rules.observed(
        stored, observed(Status.AWAITING_DEPOSIT, updated_at=T0 + 9), T0 + 20, T0 + 50, True
    )
    assert change is not None and change.event_type is None
    assert change.after == replace(stored, next_action_at=T0 + 50, last_push_at=T0 + 20, updated_at=T0 + 20)


def test_an_older_poll_keeps_the_push_clock() -> None:
    stored = tracked(Status.CONFIRMING, partner_updated_at=T0 + 10, last_push_at=T0 + 5)
    change = rules.observed(stored, observed(Status.CONFIRMING, updated_at=T0 + 9), T0 + 20, T0 + 50, False)
    assert change is not None and change.after.last_push_at == T0 + 5


def test_an_unknown_status_refreshes_the_snapshot_only() -> None:
    stored = tracked(Status.CONFIRMING)
    seen = observed(None, "MYSTERY", updated_at=T0 + 5)
    change = rules.observed(stored, seen, T0 + 6, T0 + 40, False)
    assert change is not None and change.event_type is None
    assert (change.after.status, change.after.provider_status, change.after.order) == (
        "confirming",
        "MYSTERY",
        seen.order,
    )
    assert change.after.partner_updated_at == T0 + 5


def test_the_same_status_refreshes_without_an_event_and_keeps_the_known_order_id() -> None:
    stored = tracked(Status.CONFIRMING)
    seen = observed(Status.CONFIRMING, order_id="po-other", updated_at=T0 + 5, amount="1")
    change = rules.observed(stored, seen, T0 + 6, T0 + 40, False)
    assert change is not None and change.event_type is None
    assert change.after.order == seen.order and change.after.order_id == "po-1"
    assert change.after.event_seq == stored.event_seq


@pytest.mark.parametrize("seen_at", [T0, None], ids=["same partner time", "no partner time"])
def test_without_a_newer_time_a_lower_progress_is_ignored(seen_at: float | None) -> None:
    stored = tracked(Status.PROCESSING, partner_updated_at=T0)
    change = rules.observed(stored, observed(Status.CONFIRMING, updated_at=seen_at), T0 + 6, T0 + 40, False)
    assert change is not None and change.event_type is None
    assert change.after.status == "processing" and change.after.provider_status == "PROCESSING"
    assert change.after.next_action_at == T0 + 40


@pytest.mark.parametrize("seen_at", [T0, None], ids=["same partner time", "no partner time"])
def test_without_a_newer_time_equal_or_higher_progress_wins(seen_at: float | None) -> None:
    stored = tracked(Status.CONFIRMING, partner_updated_at=T0)
    sideways = rules.observed(
        stored, observed(Status.ACTION_REQUIRED, updated_at=seen_at), T0 + 6, T0 + 40, False
    )
    assert sideways is not None and sideways.event_type is EventType.STATUS_CHANGED
    assert sideways.after.status == "action_required"


def test_a_provably_newer_observation_may_move_backwards() -> None:
    stored = tracked(Status.ACTION_REQUIRED, partner_updated_at=T0)
    change = rules.observed(stored, observed(Status.CONFIRMING, updated_at=T0 + 1), T0 + 6, T0 + 40, False)
    assert change is not None and change.event_type is EventType.STATUS_CHANGED
    assert (change.after.status, change.after.partner_updated_at) == ("confirming", T0 + 1)


def test_a_first_partner_time_counts_as_provably_newer() -> None:
    stored = tracked(Status.PROCESSING, partner_updated_at=None)
    change = rules.observed(stored, observed(Status.CONFIRMING, updated_at=T0 + 1), T0 + 6, T0 + 40, False)
    assert change is not None and change.after.status == "confirming"


def test_a_terminal_observation_settles_the_next_action() -> None:
    stored = tracked(Status.PROCESSING)
    change = rules.observed(stored, observed(Status.COMPLETED, updated_at=T0 + 5), T0 + 6, T0 + 40, True)
    assert change is not None and change.event_type is EventType.STATUS_CHANGED
    assert (change.after.status, change.after.next_action_at, change.after.last_push_at) == (
        "completed",
        None,
        T0 + 6,
    )


def test_an_observation_settles_an_open_create_with_the_partner_order_id() -> None:
    attempt = leased()
    seen = observed(Status.AWAITING_DEPOSIT, order_id="po-9", updated_at=T0 + 1)
    change = rules.observed(attempt, seen, T0 + 2, T0 + 30, True)
    assert change is not None and change.event_type is EventType.STATUS_CHANGED
    assert (change.after.order_id, change.after.attempt_open, change.after.lease_until) == (
        "po-9",
        False,
        None,
    )
    assert change.after.attempts == 1


def test_an_in_doubt_order_observed_as_in_doubt_is_only_refreshed() -> None:
    stored = record(status=Status.IN_DOUBT.value)
    change = rules.observed(stored, observed(Status.IN_DOUBT, updated_at=T0 + 1), T0 + 2, None, False)
    assert change is not None and change.event_type is None and change.after.status == "in_doubt"


# --- operator resolution ---------------------------------------------------------------------------------


def test_resolved_with_the_found_order_polls_at_once() -> None:
    stored = record(
        status=Status.IN_DOUBT.value, next_action_at=None, attempt_open=True, partner_updated_at=T0 + 9
    )
    seen = observed(Status.CONFIRMING, order_id="po-7", updated_at=T0 + 3)
    change = rules.resolved(stored, seen, "found it", T0 + 100)
    assert change.event_type is EventType.STATUS_CHANGED and change.error is None
    after = change.after
    assert (after.status, after.order_id, after.next_action_at, after.attempt_open) == (
        "confirming",
        "po-7",
        T0 + 100,
        False,
    )
    assert after.partner_updated_at == T0 + 9
    completed = rules.resolved(stored, observed(Status.COMPLETED), "done", T0 + 100)
    assert completed.after.next_action_at is None


def test_resolved_without_an_order_abandons_it() -> None:
    change = rules.resolved(record(status=Status.IN_DOUBT.value), None, "gone", T0 + 100)
    assert change.event_type is EventType.FAILED
    assert change.error == EventError(code="abandoned", reason="gone")
    assert (change.after.status, change.after.last_error) == ("failed", change.error)


def test_resolved_refuses_other_statuses_and_unknown_partner_statuses() -> None:
    with pytest.raises(ValueError, match="not in_doubt"):
        rules.resolved(fresh(), None, "note", T0)
    with pytest.raises(ValueError, match="canonical status"):
        rules.resolved(record(status=Status.IN_DOUBT.value), observed(None, "MYSTERY"), "note", T0)


# --- events ----------------------------------------------------------------------------------------------


def test_sequenced_numbers_the_transition_and_describes_it() -> None:
    stored = tracked(Status.CONFIRMING, event_seq=3, order={"id": "po-1"})
    change = rules.observed(stored, observed(Status.PROCESSING, updated_at=T0 + 5), T0 + 6, T0 + 40, False)
    assert change is not None
    after, event = rules.sequenced(stored, change, Source.WEBHOOK, T0 + 6)
    assert after == replace(change.after, event_seq=4)
    assert event.event_id == transition_event_id(CID, 4, EventType.STATUS_CHANGED, "processing")
    assert (event.type, event.seq, event.source, event.occurred_at) == (
        EventType.STATUS_CHANGED,
        4,
        Source.WEBHOOK,
        utc_moment(T0 + 6),
    )
    assert (event.status, event.previous_status, event.provider_status) == (
        Status.PROCESSING,
        Status.CONFIRMING,
        "PROCESSING",
    )
    assert (event.command_id, event.provider, event.order_id) == (CID, "0trace", "po-1")
    assert event.metadata == {"pipeline": "test"} and event.error is None


def test_sequenced_carries_the_error_and_is_deterministic() -> None:
    change = rules.failed(fresh(), ERR, T0)
    assert change is not None
    first = rules.sequenced(fresh(), change, Source.CREATE, T0)
    second = rules.sequenced(fresh(), change, Source.CREATE, T0)
    assert first == second  # whoever observes the n-th transition derives the same event
    assert first[1].error == ERR and first[1].previous_status is Status.SUBMITTING


def test_sequenced_refuses_a_change_that_is_no_transition() -> None:
    with pytest.raises(ValueError, match="not a transition"):
        rules.sequenced(fresh(), rules.Change(fresh()), Source.POLL, T0)
