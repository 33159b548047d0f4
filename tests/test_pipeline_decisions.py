"""The pipeline's decisions with a scripted partner: what is resent, what fails, what becomes in_doubt,
and how the poll cadence follows pushes. Real SQLite ledger; the partner is a script of answers."""

from __future__ import annotations

import base64
import itertools
from typing import Any, cast

from pydantic import SecretStr

from tests.ledger.helpers import command, created, observed
from tests.support.partners import bound
from tests.support.settings import settings_of
from worker.ledger.base import Ledger
from worker.messages import CreateOrderCommand, Source
from worker.partners.base import CreateResult, Fate, PartnerError, PartnerOrder
from worker.pipeline import OrderPipeline
from worker.sealing import TokenSealer
from worker.status import Status

KEY = [SecretStr("k1:" + base64.b64encode(b"k" * 32).decode())]


class ScriptedPartner:
    """Answers create calls from a script; records every call so tests can count them."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.calls = 0

    def create(self, *args: Any) -> CreateResult:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return cast(CreateResult, answer)

    def balance(self) -> int:
        return 10**12

    def price(self, *args: Any) -> int:
        return 1


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def pipeline(ledger: Ledger, partner: ScriptedPartner, clock: Clock, **settings: Any) -> OrderPipeline:
    chosen = settings_of(token_keys=KEY, retry_base_seconds=1.0, retry_max_seconds=8.0, **settings)
    return OrderPipeline(
        chosen, ledger, bound(chosen, partner, partner), TokenSealer.from_settings(KEY), clock=clock
    )


def created_result(order_id: str = "po-1", token: str | None = "t" * 43) -> CreateResult:
    return CreateResult(observed(Status.AWAITING_DEPOSIT, "NEW", order_id=order_id), token, token is None)


def itrx_command() -> CreateOrderCommand:
    return CreateOrderCommand(
        command_id="cmd-00000001",
        provider="itrx",
        params={
            "energy_amount": 65_000,
            "period": "1H",
            "receive_address": "TExWKszFWYTKZH8LYiovAPKzS3L9MLZ4kw",
        },
    )


def kwargs(provider: str = "0trace") -> dict[str, Any]:
    chosen = itrx_command() if provider == "itrx" else command("cmd-00000001")
    return cast(dict[str, Any], chosen.model_dump(mode="json"))


def error(fate: Fate, code: str, retryable: bool, retry_after: float | None = None) -> PartnerError:
    return PartnerError(fate, code, "scripted", retryable, retry_after)


def test_zerotrace_retries_ambiguous_failures_with_the_same_key_then_succeeds(ledger: Ledger) -> None:
    clock = Clock()
    partner = ScriptedPartner([error(Fate.UNKNOWN, "timeout", True), created_result()])
    flow = pipeline(ledger, partner, clock)
    assert flow.handle_create(kwargs(), "m1").name == "retry"
    record = ledger.get("cmd-00000001")
    assert record is not None and record.status == "submitting" and record.next_action_at is not None
    assert record.next_action_at - clock.now >= 1.0  # never sooner than the base backoff
    clock.now = record.next_action_at
    outcome = flow.handle_create(kwargs(), "m1-redriven")
    assert outcome.name == "created" and partner.calls == 2
    assert [e.type.value for e in outcome.events] == ["created"]


def test_rate_limit_waits_at_least_retry_after(ledger: Ledger) -> None:
    clock = Clock()
    partner = ScriptedPartner([error(Fate.REFUSED, "5", True, retry_after=42.0)])
    pipeline(ledger, partner, clock).handle_create(kwargs(), "m1")
    record = ledger.get("cmd-00000001")
    assert record is not None and record.next_action_at is not None
    assert record.next_action_at - clock.now >= 42.0


def test_itrx_ambiguous_failure_is_in_doubt_and_never_resent(ledger: Ledger) -> None:
    clock = Clock()
    partner = ScriptedPartner([error(Fate.UNKNOWN, "http_502", True)])
    flow = pipeline(ledger, partner, clock)
    outcome = flow.handle_create(kwargs("itrx"), "m1")
    assert outcome.name == "in_doubt" and [e.status for e in outcome.events] == [Status.IN_DOUBT]
    clock.now += 3600
    assert flow.handle_create(kwargs("itrx"), "m1-again").name == "duplicate"
    assert partner.calls == 1


def test_itrx_not_sent_is_retried(ledger: Ledger) -> None:
    clock = Clock()
    partner = ScriptedPartner(
        [error(Fate.NOT_SENT, "connection_refused", True), created_result("serial-1", token=None)]
    )
    flow = pipeline(ledger, partner, clock)
    assert flow.handle_create(kwargs("itrx"), "m1").name == "retry"
    clock.now += 60
    assert flow.handle_create(kwargs("itrx"), "m2").name == "created"


def test_unsent_create_backs_off_with_the_age_of_the_order(ledger: Ledger) -> None:
    """Refused connections do not count as attempts; the delay still grows, or an outage is a flood."""
    clock = Clock()
    partner = ScriptedPartner([error(Fate.NOT_SENT, "connection_refused", True)] * 6)
    flow = pipeline(ledger, partner, clock)
    delays = []
    for n in range(6):
        assert flow.handle_create(kwargs("itrx"), f"m{n}").name == "retry"
        record = ledger.get("cmd-00000001")
        assert record is not None and record.next_action_at is not None and record.attempts == 0
        delays.append(record.next_action_at - clock.now)
        clock.now = record.next_action_at
    assert delays[0] >= 1.0
    assert all(later >= earlier / 1.25 for earlier, later in itertools.pairwise(delays))
    assert 8.0 <= delays[-1] <= 10.0  # capped at retry_max_seconds (+25% jitter)
    assert partner.calls == 6


class FlakyBalancePartner(ScriptedPartner):
    def __init__(self, answers: list[Any], balance_failures: int) -> None:
        super().__init__(answers)
        self.balance_failures = balance_failures

    def balance(self) -> int:
        if self.balance_failures:
            self.balance_failures -= 1
            raise error(Fate.UNKNOWN, "http_503", True)
        return super().balance()


def test_itrx_create_waits_while_the_balance_read_fails_transiently(ledger: Ledger) -> None:
    """A 503 on the balance read means itrx is struggling: the create (not idempotent) is not risked."""
    clock = Clock()
    partner = FlakyBalancePartner([created_result("serial-1", token=None)], balance_failures=2)
    flow = pipeline(ledger, partner, clock)
    for n in range(2):
        assert flow.handle_create(kwargs("itrx"), f"m{n}").name == "retry"
        record = ledger.get("cmd-00000001")
        assert record is not None and record.status == "submitting" and record.attempts == 0
        assert record.next_action_at is not None and record.last_error is not None
        assert record.last_error.code == "http_503"
        clock.now = record.next_action_at
    assert partner.calls == 0
    assert flow.handle_create(kwargs("itrx"), "m2").name == "created" and partner.calls == 1


def test_itrx_create_goes_unchecked_once_the_retry_window_has_passed(ledger: Ledger) -> None:
    clock = Clock()
    partner = FlakyBalancePartner([created_result("serial-1", token=None)], balance_failures=99)
    flow = pipeline(ledger, partner, clock, create_retry_window_seconds=30.0)
    assert flow.handle_create(kwargs("itrx"), "m1").name == "retry"
    clock.now += 31
    assert flow.handle_create(kwargs("itrx"), "m2").name == "created" and partner.calls == 1


def test_zerotrace_resends_within_the_retry_window_then_is_in_doubt(ledger: Ledger) -> None:
    clock = Clock()
    partner = ScriptedPartner([error(Fate.UNKNOWN, "http_503", True)] * 40)
    flow = pipeline(ledger, partner, clock, create_retry_window_seconds=120.0)
    outcome = flow.handle_create(kwargs(), "m0")
    while outcome.name == "retry":
        record = ledger.get("cmd-00000001")
        assert record is not None and record.next_action_at is not None
        clock.now = record.next_action_at
        outcome = flow.handle_create(kwargs(), "again")
    assert outcome.name == "in_doubt"
    assert outcome.events[0].error is not None and outcome.events[0].error.code == "retries_exhausted"
    assert partner.calls > 10  # many more than the old fixed attempt count would have allowed in 2 min
    assert clock.now - 1_800_000_000.0 > 120.0


def test_interrupted_itrx_attempt_is_in_doubt_on_redelivery(ledger: Ledger) -> None:
    """The worker died mid-call (attempt open, lease expired): the redelivered command must not call."""
    clock = Clock()
    ledger.claim(itrx_command(), "ref", clock.now)
    assert ledger.begin_attempt("cmd-00000001", clock.now, 90) is not None
    clock.now += 91
    partner = ScriptedPartner([])
    outcome = pipeline(ledger, partner, clock).handle_create(kwargs("itrx"), "m1")
    assert outcome.name == "in_doubt" and partner.calls == 0
    assert outcome.events[0].error is not None and outcome.events[0].error.code == "interrupted"


def test_definitive_refusal_fails_with_the_partner_code(ledger: Ledger) -> None:
    partner = ScriptedPartner([error(Fate.REFUSED, "1", False)])
    outcome = pipeline(ledger, partner, Clock()).handle_create(kwargs(), "m1")
    assert outcome.name == "failed"
    assert outcome.events[0].error is not None and outcome.events[0].error.code == "1"


def test_local_refusal_before_sending_fails_at_once(ledger: Ledger) -> None:
    partner = ScriptedPartner([error(Fate.NOT_SENT, "bad_url", False)])
    assert pipeline(ledger, partner, Clock()).handle_create(kwargs(), "m1").name == "failed"


def test_replay_without_token_is_untrackable_and_not_polled(ledger: Ledger) -> None:
    partner = ScriptedPartner([created_result(token=None)])
    outcome = pipeline(ledger, partner, Clock()).handle_create(kwargs(), "m1")
    assert outcome.name == "untrackable" and outcome.events[0].type.value == "untrackable"
    record = ledger.get("cmd-00000001")
    assert record is not None and record.untrackable and record.next_action_at is None


def test_poll_cadence_backs_off_while_pushes_arrive_and_returns_after(ledger: Ledger) -> None:
    clock = Clock()
    flow = pipeline(
        ledger,
        ScriptedPartner([]),
        clock,
        poll_confirming=30.0,
        poll_processing=30.0,
        poll_safety_interval=300.0,
        push_fresh_seconds=600.0,
    )
    created(ledger, "cmd-00000001", now=clock.now)

    def observe(status: Status, push: bool) -> float:
        record = ledger.get("cmd-00000001")
        assert record is not None
        sighting = PartnerOrder("po-1", status.value, status, {}, updated_at=clock.now)
        flow.observe(record, sighting, Source.WEBHOOK if push else Source.POLL, push=push)
        after = ledger.get("cmd-00000001")
        assert after is not None and after.next_action_at is not None
        return after.next_action_at - clock.now

    assert observe(Status.CONFIRMING, push=True) == 300.0  # pushes arrive: polling is only a safety net
    clock.now += 100
    assert observe(Status.CONFIRMING, push=False) == 300.0  # still within push_fresh_seconds
    clock.now += 600
    assert observe(Status.PROCESSING, push=False) == 30.0  # pushes stopped: normal cadence again


def test_a_refused_poll_is_recorded_as_a_poll(ledger: Ledger) -> None:
    flow = pipeline(ledger, ScriptedPartner([]), Clock())
    unknown = flow.handle_poll({"command_id": "cmd-never-created"}, "m-poll")
    malformed = flow.handle_poll({"command_id": 7}, "m-poll-bad")
    for outcome, code in ((unknown, "unknown_command"), (malformed, "invalid_command")):
        [event] = outcome.events
        assert outcome.name == "rejected" and event.error is not None and event.error.code == code
        assert event.source is Source.POLL
    assert flow.handle_create({"command_id": 7}, "m-create-bad").events[0].source is Source.CREATE


def test_a_partner_answer_waits_for_a_full_disk_and_is_committed_once(ledger: Ledger, tmp_path: Any) -> None:
    """The ledger refuses the commit after the partner created the order (SQLite's own SQLITE_FULL): the
    answer is held and committed when the ledger takes it, never sent to the partner again."""
    import sqlite3

    from worker.ledger.outage import LedgerWaiter

    capped = sqlite3.connect(tmp_path / "capped.db")
    capped.execute("PRAGMA max_page_count = 2")
    try:
        capped.execute("CREATE TABLE a (x BLOB)")
        capped.execute("CREATE TABLE b (x BLOB)")
        raise AssertionError("SQLite took a third page")
    except sqlite3.OperationalError as full:
        disk_full = full
    finally:
        capped.close()
    refusals = [disk_full, disk_full]
    real_record_created = ledger.record_created

    def record_created(*args: Any, **kwargs: Any) -> Any:
        if refusals:
            raise refusals.pop()
        return real_record_created(*args, **kwargs)

    ledger.record_created = record_created  # type: ignore[method-assign]
    pauses: list[float] = []
    partner = ScriptedPartner([created_result()])
    flow = pipeline(ledger, partner, Clock())
    flow.waiter = LedgerWaiter(sleep=pauses.append)
    outcome = flow.handle_create(kwargs("itrx"), "m1")
    assert outcome.name == "created" and partner.calls == 1 and len(pauses) == 2
    record = ledger.get("cmd-00000001")
    assert record is not None and record.status != "in_doubt" and record.event_seq == 1
