"""The Ledger contract (worker/ledger/base.py), rule by rule, on both backends."""

from __future__ import annotations

import json

import pytest

from tests.ledger.helpers import ERR, T0, command, created, observed, ref
from worker.ledger.base import ClaimOutcome, DueKind, Ledger, Rejection, UnknownOrderError
from worker.ledger.sql import SqlLedger
from worker.messages import (
    EventError,
    EventType,
    OrderEvent,
    Source,
    iso_from_epoch,
    rejection_event_id,
    transition_event_id,
    utc_moment,
)
from worker.status import Status

CID = "cmd-00000001"


def outbox(ledger: Ledger) -> list[OrderEvent]:
    rows = ledger.claim_outbox(T0 + 10**6, 10_000, 1)
    ledger.release_outbox([row.event_id for row in rows])
    return [OrderEvent.model_validate_json(row.body) for row in rows]


# --- claim --------------------------------------------------------------------------------------------


def test_claim_new_duplicate_conflict(ledger: Ledger) -> None:
    first = ledger.claim(command(CID), ref(CID), T0)
    assert first.outcome is ClaimOutcome.NEW
    rec = first.record
    assert (rec.command_id, rec.provider, rec.partner_ref, rec.status) == (
        CID,
        "0trace",
        ref(CID),
        "submitting",
    )
    assert (rec.attempts, rec.attempt_open, rec.event_seq, rec.untrackable) == (0, False, 0, False)
    assert rec.next_action_at == T0 and rec.created_at == T0 and rec.updated_at == T0
    assert rec.command == command(CID).model_dump(mode="json")
    assert rec.metadata == {"pipeline": "test"}
    assert rec.fingerprint == command(CID).fingerprint()
    assert rec.order is None and rec.sealed_token is None and rec.last_error is None

    again = ledger.claim(command(CID), ref(CID), T0 + 5)
    assert again.outcome is ClaimOutcome.DUPLICATE
    assert again.record == rec  # nothing rewritten by the redelivery

    other = ledger.claim(command(CID, amount="0.02"), ref(CID), T0 + 6)
    assert other.outcome is ClaimOutcome.CONFLICT
    assert other.record.fingerprint == rec.fingerprint
    assert ledger.get(CID) == rec


def test_claim_attempt_returns_the_rows_it_wrote(ledger: Ledger) -> None:
    assert isinstance(ledger, SqlLedger)
    claim, attempt = ledger.claim_attempt(command(CID), ref(CID), T0, 90)
    assert claim.outcome is ClaimOutcome.NEW and attempt is not None
    assert attempt.record == ledger.get(CID)
    assert (attempt.record.attempts, attempt.record.attempt_open, attempt.record.lease_until) == (
        1,
        True,
        T0 + 90,
    )
    assert (claim.record.attempts, claim.record.attempt_open, claim.record.lease_until) == (0, False, None)
    again, none = ledger.claim_attempt(command(CID), ref(CID), T0 + 1, 90)
    assert again.outcome is ClaimOutcome.DUPLICATE and none is None
    assert again.record == attempt.record


def test_claim_refuses_a_partner_ref_owned_by_another_command(ledger: Ledger) -> None:
    ledger.claim(command(CID), "shared-ref", T0)
    with pytest.raises(ValueError, match="partner_ref"):
        ledger.claim(command("cmd-00000002"), "shared-ref", T0)
    assert ledger.get("cmd-00000002") is None


def test_lookups(ledger: Ledger) -> None:
    assert ledger.get(CID) is None
    created(ledger, CID)
    assert ledger.find_by_partner_ref("0trace", ref(CID)).command_id == CID  # type: ignore[union-attr]
    assert ledger.find_by_partner_ref("itrx", ref(CID)) is None
    assert ledger.find_by_order_id("0trace", "po-1").command_id == CID  # type: ignore[union-attr]
    assert ledger.find_by_order_id("0trace", "po-2") is None
    assert ledger.find_by_order_id("itrx", "po-1") is None


# --- create attempts ----------------------------------------------------------------------------------


def test_begin_attempt_takes_an_exclusive_lease(ledger: Ledger) -> None:
    ledger.claim(command(CID), ref(CID), T0)
    attempt = ledger.begin_attempt(CID, T0 + 1, 30)
    assert attempt is not None and not attempt.previous_unresolved
    rec = attempt.record
    assert (rec.attempts, rec.attempt_open, rec.lease_until, rec.next_action_at) == (
        1,
        True,
        T0 + 31,
        T0 + 31,
    )
    assert ledger.get(CID) == rec

    assert ledger.begin_attempt(CID, T0 + 2, 30) is None  # lease is live
    assert ledger.begin_attempt(CID, T0 + 30.9, 30) is None

    # The first worker died mid-call: its lease expired with the attempt still open.
    retry = ledger.begin_attempt(CID, T0 + 31, 30)
    assert retry is not None and retry.previous_unresolved
    assert retry.record.attempts == 2 and retry.record.lease_until == T0 + 61


def test_begin_attempt_only_while_submitting(ledger: Ledger) -> None:
    created(ledger, CID)
    assert ledger.begin_attempt(CID, T0 + 1000, 30) is None
    with pytest.raises(UnknownOrderError):
        ledger.begin_attempt("cmd-unknown1", T0, 30)


def test_end_attempt_unsent_gives_the_attempt_back(ledger: Ledger) -> None:
    ledger.claim(command(CID), ref(CID), T0)
    ledger.begin_attempt(CID, T0, 30)
    ledger.end_attempt_unsent(CID, T0 + 5, ERR)
    rec = ledger.get(CID)
    assert rec is not None
    assert (rec.status, rec.attempts, rec.attempt_open, rec.lease_until) == ("submitting", 0, False, None)
    assert rec.next_action_at == T0 + 5 and rec.last_error == ERR
    ledger.end_attempt_unsent(CID, T0 + 6, ERR)  # a second call must not count the attempt back twice
    assert ledger.get(CID).attempts == 0  # type: ignore[union-attr]
    attempt = ledger.begin_attempt(CID, T0 + 5, 30)
    assert attempt is not None and not attempt.previous_unresolved and attempt.record.attempts == 1


def test_schedule_retry_keeps_the_attempt_count(ledger: Ledger) -> None:
    ledger.claim(command(CID), ref(CID), T0)
    ledger.begin_attempt(CID, T0, 30)
    ledger.schedule_retry(CID, T0 + 8, ERR)
    rec = ledger.get(CID)
    assert rec is not None
    assert (rec.status, rec.attempts, rec.attempt_open, rec.lease_until) == ("submitting", 1, False, None)
    assert rec.next_action_at == T0 + 8 and rec.last_error == ERR
    attempt = ledger.begin_attempt(CID, T0 + 8, 30)
    assert attempt is not None and not attempt.previous_unresolved and attempt.record.attempts == 2


def test_attempt_endings_do_not_touch_a_finished_create(ledger: Ledger) -> None:
    created(ledger, CID)
    before = ledger.get(CID)
    ledger.schedule_retry(CID, T0 + 8, ERR)
    ledger.end_attempt_unsent(CID, T0 + 8, ERR)
    assert ledger.get(CID) == before
    with pytest.raises(UnknownOrderError):
        ledger.schedule_retry("cmd-unknown1", T0, ERR)


# --- outcomes of a create -----------------------------------------------------------------------------


def test_record_created_writes_state_token_and_one_event(ledger: Ledger) -> None:
    ledger.claim(command(CID), ref(CID), T0)
    ledger.begin_attempt(CID, T0, 30)
    result = observed(Status.AWAITING_DEPOSIT, "NEW", order_id="po-9", updated_at=T0 + 1, amount="0.01")
    events = ledger.record_created(CID, result, b"\x00sealed\xff", "k1", False, T0 + 45, T0 + 2)
    assert len(events) == 1
    event = events[0]
    assert event.type is EventType.CREATED and event.source is Source.CREATE
    assert event.event_id == transition_event_id(CID, 1, EventType.CREATED, "awaiting_deposit")
    assert (event.status, event.previous_status) == (Status.AWAITING_DEPOSIT, Status.SUBMITTING)
    assert (event.order_id, event.provider_status, event.provider) == ("po-9", "NEW", "0trace")
    assert event.order == result.order and event.metadata == {"pipeline": "test"}
    assert event.occurred_at == utc_moment(T0 + 2) and event.error is None
    assert event.seq == 1 and event.model_dump(mode="json")["occurred_at"] == iso_from_epoch(T0 + 2)
    assert "sealed" not in event.to_json().decode()

    rec = ledger.get(CID)
    assert rec is not None
    assert (rec.status, rec.provider_status, rec.order_id, rec.order) == (
        "awaiting_deposit",
        "NEW",
        "po-9",
        result.order,
    )
    assert (rec.sealed_token, rec.token_key_id, rec.untrackable) == (b"\x00sealed\xff", "k1", False)
    assert (rec.attempt_open, rec.lease_until, rec.next_action_at) == (False, None, T0 + 45)
    assert (rec.event_seq, rec.partner_updated_at, rec.updated_at) == (1, T0 + 1, T0 + 2)

    [row] = ledger.claim_outbox(T0 + 3, 10, 30)
    assert row.event_id == event.event_id and row.body == event.to_json()
    assert row.routing_key == "order.0trace.created" and row.event_type == "created"
    assert row.created_at == T0 + 2

    # A redelivered create (the partner replays the same order) changes nothing.
    assert ledger.record_created(CID, result, b"other", "k2", False, T0 + 99, T0 + 3) == []
    assert ledger.get(CID) == rec


def test_record_created_untrackable(ledger: Ledger) -> None:
    ledger.claim(command(CID), ref(CID), T0)
    [event] = ledger.record_created(CID, observed(Status.AWAITING_DEPOSIT), None, None, True, T0 + 45, T0)
    assert event.type is EventType.UNTRACKABLE
    assert event.event_id == transition_event_id(CID, 1, EventType.UNTRACKABLE, "awaiting_deposit")
    rec = ledger.get(CID)
    assert rec is not None and rec.untrackable and rec.sealed_token is None
    assert [e.routing_key for e in outbox(ledger)] == ["order.0trace.untrackable"]


def test_record_created_after_terminal_is_a_no_op(ledger: Ledger) -> None:
    created(ledger, CID)
    ledger.apply_observation(CID, observed(Status.COMPLETED, updated_at=T0 + 5), Source.POLL, T0 + 5, None)
    before = ledger.get(CID)
    assert ledger.record_created(CID, observed(Status.AWAITING_DEPOSIT), b"x", "k", False, T0, T0 + 6) == []
    assert ledger.get(CID) == before


def test_record_created_unknown_raw_status_still_creates(ledger: Ledger) -> None:
    ledger.claim(command(CID), ref(CID), T0)
    [event] = ledger.record_created(CID, observed(None, "BRAND_NEW"), b"t", "k", False, T0 + 45, T0)
    assert event.status is Status.AWAITING_DEPOSIT and event.provider_status == "BRAND_NEW"


def test_record_created_resolves_in_doubt(ledger: Ledger) -> None:
    ledger.claim(command(CID), ref(CID), T0)
    ledger.mark_in_doubt(CID, ERR, T0 + 1)
    [event] = ledger.record_created(CID, observed(Status.PROCESSING), None, None, False, T0 + 30, T0 + 2)
    assert event.previous_status is Status.IN_DOUBT and event.status is Status.PROCESSING
    assert event.event_id == transition_event_id(CID, 2, EventType.CREATED, "processing")


def test_record_created_straight_to_terminal_has_no_next_action(ledger: Ledger) -> None:
    ledger.claim(command(CID), ref(CID), T0)
    ledger.record_created(CID, observed(Status.COMPLETED), None, None, False, T0 + 30, T0)
    assert ledger.get(CID).next_action_at is None  # type: ignore[union-attr]


def test_mark_in_doubt(ledger: Ledger) -> None:
    ledger.claim(command(CID), ref(CID), T0)
    ledger.begin_attempt(CID, T0, 30)
    [event] = ledger.mark_in_doubt(CID, ERR, T0 + 1)
    assert event.type is EventType.IN_DOUBT and event.error == ERR
    assert (event.status, event.previous_status) == (Status.IN_DOUBT, Status.SUBMITTING)
    assert event.routing_key == "order.0trace.in_doubt"
    rec = ledger.get(CID)
    assert rec is not None
    assert (rec.status, rec.lease_until, rec.next_action_at, rec.last_error) == ("in_doubt", None, None, ERR)
    assert ledger.mark_in_doubt(CID, ERR, T0 + 2) == []  # only from submitting
    assert ledger.begin_attempt(CID, T0 + 1000, 30) is None  # nothing automatic may re-send it
    assert ledger.take_due("0trace", T0 + 10**6, 10, 5) == []


def test_record_failed(ledger: Ledger) -> None:
    refused = EventError(code="5", reason="pair not supported")
    ledger.claim(command(CID), ref(CID), T0)
    ledger.begin_attempt(CID, T0, 30)
    [event] = ledger.record_failed(CID, refused, Source.CREATE, T0 + 1)
    assert event.type is EventType.FAILED and event.error == refused and event.status is Status.FAILED
    rec = ledger.get(CID)
    assert rec is not None
    assert (rec.status, rec.attempt_open, rec.lease_until, rec.next_action_at) == (
        "failed",
        False,
        None,
        None,
    )
    assert rec.last_error == refused
    assert ledger.record_failed(CID, refused, Source.CREATE, T0 + 2) == []

    created(ledger, "cmd-00000002")
    assert ledger.record_failed("cmd-00000002", refused, Source.POLL, T0 + 2) == []
    with pytest.raises(UnknownOrderError):
        ledger.record_failed("cmd-unknown1", refused, Source.CREATE, T0)


def test_record_failed_from_in_doubt(ledger: Ledger) -> None:
    ledger.claim(command(CID), ref(CID), T0)
    ledger.mark_in_doubt(CID, ERR, T0)
    [event] = ledger.record_failed(CID, ERR, Source.WEBHOOK, T0 + 1)
    assert event.previous_status is Status.IN_DOUBT and event.source is Source.WEBHOOK


# --- observations ---------------------------------------------------------------------------------------


def test_observation_transition_writes_one_event(ledger: Ledger) -> None:
    created(ledger, CID)
    obs = observed(Status.CONFIRMING, "PENDING", updated_at=T0 + 10, tx="abc")
    [event] = ledger.apply_observation(CID, obs, Source.WEBHOOK, T0 + 11, T0 + 41, push=True)
    assert event.type is EventType.STATUS_CHANGED and event.source is Source.WEBHOOK
    assert event.event_id == transition_event_id(CID, 2, EventType.STATUS_CHANGED, "confirming")
    assert (event.status, event.previous_status, event.provider_status) == (
        Status.CONFIRMING,
        Status.AWAITING_DEPOSIT,
        "PENDING",
    )
    assert event.order == obs.order and event.metadata == {"pipeline": "test"}
    assert event.routing_key == "order.0trace.status_changed"
    rec = ledger.get(CID)
    assert rec is not None
    assert (rec.status, rec.order, rec.partner_updated_at) == ("confirming", obs.order, T0 + 10)
    assert (rec.next_action_at, rec.last_push_at, rec.event_seq) == (T0 + 41, T0 + 11, 2)
    assert rec.sealed_token == b"sealed"  # tracking never touches the token


def test_observation_same_status_refreshes_without_event(ledger: Ledger) -> None:
    created(ledger, CID)
    obs = observed(Status.AWAITING_DEPOSIT, "NEW", updated_at=T0 + 10, left=100)
    assert ledger.apply_observation(CID, obs, Source.POLL, T0 + 11, T0 + 56) == []
    rec = ledger.get(CID)
    assert rec is not None
    assert (rec.order, rec.next_action_at, rec.event_seq, rec.last_push_at) == (obs.order, T0 + 56, 1, None)
    assert rec.partner_updated_at == T0 + 10


def test_observation_unknown_status_refreshes_only(ledger: Ledger) -> None:
    created(ledger, CID)
    obs = observed(None, "WEIRD", updated_at=T0 + 10)
    assert ledger.apply_observation(CID, obs, Source.POLL, T0 + 11, T0 + 56) == []
    rec = ledger.get(CID)
    assert rec is not None
    assert (rec.status, rec.provider_status, rec.order, rec.next_action_at) == (
        "awaiting_deposit",
        "WEIRD",
        obs.order,
        T0 + 56,
    )


def test_observation_older_than_stored_is_ignored(ledger: Ledger) -> None:
    created(ledger, CID)
    ledger.apply_observation(
        CID, observed(Status.PROCESSING, updated_at=T0 + 20), Source.POLL, T0 + 21, T0 + 50
    )
    before = ledger.get(CID)
    late = observed(Status.CONFIRMING, "PENDING", updated_at=T0 + 10, late=True)
    assert ledger.apply_observation(CID, late, Source.WEBHOOK, T0 + 22, T0 + 60, push=True) == []
    rec = ledger.get(CID)
    assert rec is not None and before is not None
    assert (rec.status, rec.provider_status, rec.order) == (
        before.status,
        before.provider_status,
        before.order,
    )
    assert (rec.next_action_at, rec.last_push_at, rec.partner_updated_at) == (T0 + 60, T0 + 22, T0 + 20)


def test_observation_tie_break_by_progress(ledger: Ledger) -> None:
    created(ledger, CID)
    ledger.apply_observation(
        CID, observed(Status.PROCESSING, updated_at=T0 + 20), Source.POLL, T0 + 21, T0 + 50
    )
    # Same partner time, less progress: the other observer saw an earlier moment.
    assert (
        ledger.apply_observation(
            CID, observed(Status.CONFIRMING, updated_at=T0 + 20), Source.WEBHOOK, T0 + 22, T0 + 51
        )
        == []
    )
    assert ledger.get(CID).status == "processing"  # type: ignore[union-attr]
    # Same time, more progress: applied.
    [event] = ledger.apply_observation(
        CID, observed(Status.COMPLETED, updated_at=T0 + 20), Source.WEBHOOK, T0 + 23, T0 + 52
    )
    assert event.status is Status.COMPLETED


def test_observation_without_partner_time_never_goes_backwards(ledger: Ledger) -> None:
    ledger.claim(command(CID, provider="itrx"), ref(CID), T0)
    ledger.record_created(CID, observed(Status.PROCESSING, "20"), None, None, False, T0 + 30, T0)
    assert (
        ledger.apply_observation(CID, observed(Status.AWAITING_DEPOSIT, "10"), Source.POLL, T0 + 1, T0 + 30)
        == []
    )
    [event] = ledger.apply_observation(CID, observed(Status.COMPLETED, "40"), Source.WEBHOOK, T0 + 2, T0 + 30)
    assert event.routing_key == "order.itrx.status_changed"


def test_newer_observation_may_lower_progress(ledger: Ledger) -> None:
    created(ledger, CID)
    ledger.apply_observation(
        CID, observed(Status.PROCESSING, updated_at=T0 + 20), Source.POLL, T0 + 21, T0 + 50
    )
    [event] = ledger.apply_observation(
        CID, observed(Status.ACTION_REQUIRED, "EMERGENCY", updated_at=T0 + 30), Source.POLL, T0 + 31, T0 + 90
    )
    assert (event.previous_status, event.status) == (Status.PROCESSING, Status.ACTION_REQUIRED)


def test_terminal_order_never_changes(ledger: Ledger) -> None:
    created(ledger, CID)
    [event] = ledger.apply_observation(
        CID, observed(Status.EXPIRED, "EXPIRED", updated_at=T0 + 9), Source.POLL, T0 + 10, T0 + 99
    )
    assert event.status is Status.EXPIRED
    rec = ledger.get(CID)
    assert rec is not None and rec.next_action_at is None  # NULL once terminal, whatever was asked
    for obs in (
        observed(Status.COMPLETED, updated_at=T0 + 50),
        observed(None, "X"),
        observed(Status.EXPIRED),
    ):
        assert ledger.apply_observation(CID, obs, Source.WEBHOOK, T0 + 60, T0 + 99, push=True) == []
    assert ledger.get(CID) == rec


def test_in_doubt_resolved_by_the_partners_own_signal(ledger: Ledger) -> None:
    ledger.claim(command(CID, provider="itrx"), ref(CID), T0)
    ledger.begin_attempt(CID, T0, 30)
    ledger.mark_in_doubt(CID, ERR, T0 + 1)
    obs = observed(Status.COMPLETED, "40", order_id="serial-7")
    [event] = ledger.apply_observation(CID, obs, Source.WEBHOOK, T0 + 5, None, push=True)
    assert (event.previous_status, event.status, event.order_id) == (
        Status.IN_DOUBT,
        Status.COMPLETED,
        "serial-7",
    )
    rec = ledger.get(CID)
    assert rec is not None and rec.order_id == "serial-7" and not rec.attempt_open
    assert ledger.find_by_order_id("itrx", "serial-7") == rec


def test_apply_observation_unknown_order(ledger: Ledger) -> None:
    with pytest.raises(UnknownOrderError):
        ledger.apply_observation("cmd-unknown1", observed(Status.COMPLETED), Source.POLL, T0, None)


# --- operator resolution ------------------------------------------------------------------------------


def test_resolve_in_doubt_with_observation(ledger: Ledger) -> None:
    ledger.claim(command(CID), ref(CID), T0)
    ledger.mark_in_doubt(CID, ERR, T0)
    obs = observed(Status.AWAITING_DEPOSIT, "NEW", order_id="po-5")
    [event] = ledger.resolve_in_doubt(CID, obs, "found it in the partner cabinet", T0 + 100)
    assert (event.type, event.source, event.status, event.order_id) == (
        EventType.STATUS_CHANGED,
        Source.RECONCILE,
        Status.AWAITING_DEPOSIT,
        "po-5",
    )
    rec = ledger.get(CID)
    assert rec is not None and rec.next_action_at == T0 + 100  # tracked again at once
    with pytest.raises(ValueError, match="not in_doubt"):
        ledger.resolve_in_doubt(CID, None, "again", T0 + 101)


def test_resolve_in_doubt_abandon(ledger: Ledger) -> None:
    ledger.claim(command(CID), ref(CID), T0)
    ledger.mark_in_doubt(CID, ERR, T0)
    [event] = ledger.resolve_in_doubt(CID, None, "not at the partner; refunded by hand", T0 + 100)
    assert event.type is EventType.FAILED and event.source is Source.RECONCILE
    assert event.error == EventError(code="abandoned", reason="not at the partner; refunded by hand")
    assert ledger.get(CID).status == "failed"  # type: ignore[union-attr]


def test_resolve_in_doubt_refuses_other_orders(ledger: Ledger) -> None:
    ledger.claim(command(CID), ref(CID), T0)
    with pytest.raises(ValueError):
        ledger.resolve_in_doubt(CID, None, "note", T0)
    with pytest.raises(ValueError):
        ledger.resolve_in_doubt("cmd-unknown1", None, "note", T0)
    ledger.mark_in_doubt(CID, ERR, T0)
    with pytest.raises(ValueError):
        ledger.resolve_in_doubt(CID, observed(None, "WHAT"), "note", T0)
    assert ledger.get(CID).status == "in_doubt"  # type: ignore[union-attr]


# --- scheduling -----------------------------------------------------------------------------------------


def test_take_due(ledger: Ledger) -> None:
    for i in range(5):
        ledger.claim(command(f"cmd-due-{i:04}"), ref(f"cmd-due-{i:04}"), T0 + 10 - i)  # 4 is oldest
    created(ledger, "cmd-done-0001")
    ledger.apply_observation("cmd-done-0001", observed(Status.COMPLETED), Source.POLL, T0, T0)
    ledger.claim(command("cmd-doubt-001"), ref("cmd-doubt-001"), T0)
    ledger.mark_in_doubt("cmd-doubt-001", ERR, T0)
    ledger.claim(command("cmd-later-001"), ref("cmd-later-001"), T0 + 1000)

    due = ledger.take_due("0trace", T0 + 10, 3, 60)
    assert [d.command_id for d in due] == ["cmd-due-0004", "cmd-due-0003", "cmd-due-0002"]
    assert due[0].provider == "0trace" and due[0].status == "submitting"
    assert due[0].command == command("cmd-due-0004").model_dump(mode="json")
    assert ledger.get("cmd-due-0004").next_action_at == T0 + 70  # type: ignore[union-attr]

    rest = ledger.take_due("0trace", T0 + 10, 10, 60)
    assert [d.command_id for d in rest] == ["cmd-due-0001", "cmd-due-0000"]
    assert ledger.take_due("0trace", T0 + 10, 10, 60) == []  # all held
    again = ledger.take_due("0trace", T0 + 70, 10, 60)  # the hold ran out: re-driven
    assert {d.command_id for d in again} == {f"cmd-due-{i:04}" for i in range(5)}


def test_take_due_by_partner_and_kind(ledger: Ledger) -> None:
    """Creates to re-drive and polls come apart, each partner's alone; near-deadline polls come nearest
    deadline first, and a deadline ends with the order's deposit window (or the order)."""
    ledger.claim(command("cmd-create-01"), ref("cmd-create-01"), T0)  # submitting, due at T0
    ledger.claim(command("cmd-itrx-0001", provider="itrx"), ref("cmd-itrx-0001"), T0)
    for i, deadline in enumerate([None, T0 + 900, T0 + 200, None]):
        cid = f"cmd-poll-{i:04}"
        ledger.claim(command(cid), ref(cid), T0)
        ledger.begin_attempt(cid, T0, 60)
        answer = observed(Status.AWAITING_DEPOSIT, order_id=f"po-{i}", updated_at=T0, deadline=deadline)
        ledger.record_created(cid, answer, b"sealed", "k1", False, T0 + i, T0)
    assert ledger.get("cmd-poll-0002").deadline_at == T0 + 200  # type: ignore[union-attr]

    near = ledger.take_due("0trace", T0 + 10, 10, 60, DueKind.NEAR_DEADLINE, deadline_before=T0 + 300)
    assert [d.command_id for d in near] == ["cmd-poll-0002"]
    polls = ledger.take_due("0trace", T0 + 10, 10, 60, DueKind.POLLS)
    assert [d.command_id for d in polls] == ["cmd-poll-0000", "cmd-poll-0001", "cmd-poll-0003"]
    creates = ledger.take_due("0trace", T0 + 10, 10, 60, DueKind.CREATES)
    assert [d.command_id for d in creates] == ["cmd-create-01"]
    assert [d.command_id for d in ledger.take_due("itrx", T0 + 10, 10, 60)] == ["cmd-itrx-0001"]
    assert ledger.take_due("0trace", T0 + 10, 10, 60) == []  # everything is held
    with pytest.raises(ValueError, match="deadline_before"):
        ledger.take_due("0trace", T0, 1, 1, DueKind.NEAR_DEADLINE)

    # The deposit arrived: no deadline any more. A terminal order keeps none either.
    ledger.apply_observation(
        "cmd-poll-0002", observed(Status.CONFIRMING, order_id="po-2"), Source.POLL, T0, T0
    )
    assert ledger.get("cmd-poll-0002").deadline_at is None  # type: ignore[union-attr]
    expired = observed(Status.EXPIRED, order_id="po-1", deadline=T0 + 900)
    ledger.apply_observation("cmd-poll-0001", expired, Source.POLL, T0, T0)
    assert ledger.get("cmd-poll-0001").deadline_at is None  # type: ignore[union-attr]


def test_oldest_due_poll(ledger: Ledger) -> None:
    assert ledger.oldest_due_poll("0trace", T0) is None
    ledger.claim(command("cmd-create-01"), ref("cmd-create-01"), T0 - 50)  # a create is no poll
    created(ledger, "cmd-poll-0001", now=T0 - 40)  # due at T0 - 10
    created(ledger, "cmd-poll-0002", now=T0 - 20)  # due at T0 + 10
    assert ledger.oldest_due_poll("0trace", T0) == ("awaiting_deposit", T0 - 10)
    assert ledger.oldest_due_poll("itrx", T0) is None


def test_record_push_dedupes(ledger: Ledger) -> None:
    assert ledger.record_push("0trace:po-1:EXCHANGE:1760000610", T0)
    assert not ledger.record_push("0trace:po-1:EXCHANGE:1760000610", T0 + 1)
    assert ledger.record_push("0trace:po-1:DONE:1760000700", T0 + 1)


# --- rejections -------------------------------------------------------------------------------------------


def test_record_rejection_is_idempotent(ledger: Ledger) -> None:
    error = EventError(code="invalid_command", reason="params.amount: must be greater than zero")
    detail = {
        "queue": "orders.create",
        "actor": "create_order",
        "message_id": "m-1",
        "body_sha256": "ab" * 32,
    }
    [event] = ledger.record_rejection(
        Rejection("msg:m-1", CID, "0trace", error, {"pipeline": "p"}, detail), T0
    )
    assert event.event_id == rejection_event_id("msg:m-1")
    assert (event.type, event.source, event.error, event.metadata) == (
        EventType.REJECTED,
        Source.CREATE,
        error,
        {"pipeline": "p"},
    )
    assert event.routing_key == "order.0trace.rejected" and event.status is None
    assert ledger.record_rejection(Rejection("msg:m-1", CID, "0trace", error, {}, detail), T0 + 1) == []

    [poll] = ledger.record_rejection(
        Rejection("body:ff", None, None, error, {}, {"queue": "orders.poll"}, Source.POLL), T0 + 2
    )
    assert poll.routing_key == "order.unknown.rejected" and poll.source is Source.POLL

    letters = ledger.dead_letters()
    assert [d["rejection_key"] for d in letters] == ["body:ff", "msg:m-1"]  # newest first
    assert letters[1] == {
        "rejection_key": "msg:m-1",
        "event_id": event.event_id,
        "command_id": CID,
        "provider": "0trace",
        "code": "invalid_command",
        "reason": error.reason,
        "metadata": {"pipeline": "p"},
        "detail": detail,
        "created_at": T0,
    }
    assert ledger.dead_letters(limit=1) == letters[:1]
    assert sorted(e.event_id for e in outbox(ledger)) == sorted([event.event_id, poll.event_id])


# --- outbox -------------------------------------------------------------------------------------------------


def test_outbox_lease_publish_release(ledger: Ledger) -> None:
    for i in range(4):
        ledger.claim(command(f"cmd-out-{i:04}"), ref(f"cmd-out-{i:04}"), T0)
        ledger.record_created(
            f"cmd-out-{i:04}", observed(Status.AWAITING_DEPOSIT), None, None, False, None, T0 + i
        )
    assert ledger.outbox_backlog() == 4

    first = ledger.claim_outbox(T0 + 10, 3, 30)
    assert [json.loads(r.body)["command_id"] for r in first] == [
        "cmd-out-0000",
        "cmd-out-0001",
        "cmd-out-0002",
    ]
    second = ledger.claim_outbox(T0 + 10, 3, 30)
    assert [json.loads(r.body)["command_id"] for r in second] == ["cmd-out-0003"]
    assert ledger.claim_outbox(T0 + 11, 10, 30) == []  # all leased

    ledger.mark_published([first[0].event_id, first[1].event_id], T0 + 12)
    assert ledger.outbox_backlog() == 2
    ledger.release_outbox([first[2].event_id, first[0].event_id])  # releasing a published row does nothing
    assert [r.event_id for r in ledger.claim_outbox(T0 + 13, 10, 30)] == [first[2].event_id]

    # An expired lease (a relay died) makes the row claimable again; published rows never come back.
    expired = ledger.claim_outbox(T0 + 44, 10, 30)
    assert sorted(r.event_id for r in expired) == sorted([first[2].event_id, second[0].event_id])
    ledger.mark_published([r.event_id for r in expired], T0 + 45)
    ledger.mark_published([], T0 + 45)
    ledger.release_outbox([])
    assert ledger.outbox_backlog() == 0
    assert ledger.claim_outbox(T0 + 10**6, 10, 30) == []


def test_prune_published_rows_and_old_pushes(ledger: Ledger) -> None:
    created(ledger, CID)
    created(ledger, "cmd-00000002")
    rows = ledger.claim_outbox(T0, 10, 30)
    ledger.mark_published([rows[0].event_id], T0 + 1)
    ledger.record_push("old", T0)
    ledger.record_push("new", T0 + 100)
    assert ledger.prune(T0 + 50) == 2  # one published outbox row, one push
    assert ledger.outbox_backlog() == 1
    assert ledger.record_push("old", T0 + 101) and not ledger.record_push("new", T0 + 101)
    assert ledger.prune(T0 + 50) == 0


# --- gauges -------------------------------------------------------------------------------------------------


def test_count_by_status(ledger: Ledger) -> None:
    assert ledger.count_by_status() == {}
    created(ledger, "cmd-00000001")
    created(ledger, "cmd-00000002")
    ledger.claim(command("cmd-00000003"), ref("cmd-00000003"), T0)
    ledger.record_created("cmd-00000003", observed(Status.AWAITING_DEPOSIT), None, None, True, T0, T0)
    ledger.claim(command("cmd-00000004", provider="itrx"), ref("cmd-00000004"), T0)
    ledger.claim(command("cmd-00000005", provider="itrx"), ref("cmd-00000005"), T0)
    ledger.mark_in_doubt("cmd-00000005", ERR, T0)
    assert ledger.count_by_status() == {
        ("0trace", "awaiting_deposit"): 3,
        ("0trace", "untrackable"): 1,
        ("itrx", "submitting"): 1,
        ("itrx", "in_doubt"): 1,
    }


# --- event ids ----------------------------------------------------------------------------------------------


def test_event_ids_are_deterministic_and_distinct(ledger: Ledger) -> None:
    created(ledger, CID)
    ids = [transition_event_id(CID, 1, EventType.CREATED, "awaiting_deposit")]
    for step, status in enumerate(
        [Status.CONFIRMING, Status.PROCESSING, Status.ACTION_REQUIRED, Status.PROCESSING]
    ):
        [event] = ledger.apply_observation(
            CID, observed(status, updated_at=T0 + 10 * (step + 1)), Source.POLL, T0 + 10 * (step + 1), T0
        )
        assert event.event_id == transition_event_id(CID, step + 2, EventType.STATUS_CHANGED, status.value)
        ids.append(event.event_id)
    assert len(set(ids)) == len(ids)  # processing twice, still two ids
    assert [e.event_id for e in sorted(outbox(ledger), key=lambda e: e.occurred_at)] == ids
