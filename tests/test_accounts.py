"""Several accounts per partner: their settings groups, how they are bound, and how the pipeline chooses
the account a command names (its credentials, its own budget, pushes signed by it only)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pydantic import SecretStr

from tests.ledger.helpers import command, observed
from tests.support.settings import settings_of
from tests.test_pipeline_decisions import KEY, Clock, created_result
from tests.webhooks.helpers import zt_body, zt_dto, zt_headers
from worker.ledger.base import Ledger
from worker.messages import CreateOrderCommand, Source
from worker.partners import registry
from worker.partners.base import CreateResult, PartnerOrder
from worker.partners.contract import Refusal
from worker.partners.registry import UnknownAccountError
from worker.partners.zerotrace import ZeroTraceSettings
from worker.pipeline import OrderPipeline, partner_ref
from worker.sealing import TokenSealer
from worker.settings import Settings
from worker.status import Status
from worker.webhooks.receiver import PushReceiver

EU = {
    "api_key": "eu-key",
    "api_secret": SecretStr("eu-secret"),
    "webhook_secrets": [SecretStr("eu-webhook-secret")],
    "weight_budget": 300,
}
TWO_ACCOUNTS = {"0trace": {"accounts": ["eu"], "weight_budget": 900, "read_timeout": 7.0}, "0trace:eu": EU}


def test_extra_accounts_read_their_own_variables_and_inherit_how_to_reach_the_partner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDER_WORKER_ZEROTRACE_ACCOUNTS", "eu,us")
    monkeypatch.setenv("ORDER_WORKER_ZEROTRACE_BASE_URL", "http://127.0.0.1:9999")
    monkeypatch.setenv("ORDER_WORKER_ZEROTRACE_WEIGHT_WINDOW", "10")
    monkeypatch.setenv("ORDER_WORKER_ZEROTRACE_API_KEY", "main-key")
    monkeypatch.setenv("ORDER_WORKER_ZEROTRACE_EU_API_KEY", "eu-key")
    monkeypatch.setenv("ORDER_WORKER_ZEROTRACE_EU_WEIGHT_BUDGET", "300")
    monkeypatch.setenv("ORDER_WORKER_ZEROTRACE_US_WEIGHT_WINDOW", "30")
    groups = registry.account_groups(Settings(), "0trace")
    assert list(groups) == ["default", "eu", "us"]
    eu, us = groups["eu"], groups["us"]
    assert isinstance(eu, ZeroTraceSettings) and isinstance(us, ZeroTraceSettings)
    assert (eu.api_key, eu.weight_budget, eu.weight_window) == ("eu-key", 300, 10.0)
    assert eu.base_url == us.base_url == "http://127.0.0.1:9999"
    # Credentials and the budget are an account's own: never borrowed from the default account.
    assert us.api_key != "main-key" and us.weight_budget == 2500 and us.weight_window == 30.0
    assert eu.accounts == us.accounts == []


@pytest.mark.parametrize(
    ("partner", "accounts", "problem"),
    [
        ("0trace", ["default"], "not 'default'"),
        ("0trace", ["EU"], "names are"),
        ("0trace", ["eu", "eu"], "named twice"),
        ("itrx", ["previous"], "ORDER_WORKER_ITRX_PREVIOUS_API_SECRETS"),
        ("0trace", ["weight"], "ORDER_WORKER_ZEROTRACE_WEIGHT_"),
    ],
)
def test_account_names_that_cannot_work_are_refused(partner: str, accounts: list[str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        registry.checked_accounts(Settings(partners={partner: {"accounts": accounts}}))


def test_an_account_with_the_development_secrets_against_a_real_partner_is_refused() -> None:
    settings = Settings(
        partners={
            "0trace": {
                "accounts": ["eu"],
                "base_url": "https://partner.example",
                "api_secret": SecretStr("real-secret"),
                "webhook_secrets": [SecretStr("real-webhook")],
            }
        }
    )
    with pytest.raises(ValueError, match="0trace:eu"):
        registry.checked_accounts(settings)


def test_connect_binds_each_account_and_names_its_budget() -> None:
    zerotrace = registry.connect(Settings(partners=TWO_ACCOUNTS))["0trace"]
    eu = zerotrace.for_account("eu")
    assert (zerotrace.account, zerotrace.key) == ("default", "0trace")
    assert (eu.account, eu.key, eu.settings.read_timeout) == ("eu", "0trace:eu", 7.0)
    assert zerotrace.for_account(None) is zerotrace.for_account("default") is zerotrace
    assert [c.account for c in zerotrace.every_account()] == ["default", "eu"]
    with pytest.raises(UnknownAccountError, match="no account 'mars'"):
        zerotrace.for_account("mars")


class Session:
    """Records which account's session placed each order."""

    def __init__(self, name: str, calls: list[str]) -> None:
        self.name = name
        self.calls = calls

    def create(self, params: Any, partner_ref: str, ref_code: str | None) -> CreateResult:
        self.calls.append(self.name)
        return created_result(order_id=f"po-{len(self.calls)}")

    def fetch(self, order_id: str, secret: str | None) -> PartnerOrder:
        self.calls.append(self.name)
        return observed(Status.CONFIRMING, "PENDING", order_id=order_id)

    def precheck(self, params: Any) -> Refusal | None:
        return None


def two_account_pipeline(ledger: Ledger, calls: list[str]) -> OrderPipeline:
    settings = settings_of(token_keys=KEY, partners=TWO_ACCOUNTS)
    connected = registry.connect(settings)
    zt = connected["0trace"]
    eu = dataclasses.replace(zt.others["eu"], session=Session("eu", calls))
    connected["0trace"] = dataclasses.replace(zt, session=Session("default", calls), others={"eu": eu})
    return OrderPipeline(settings, ledger, connected, TokenSealer.from_settings(KEY), clock=Clock())


def as_kwargs(chosen: CreateOrderCommand, account: str | None) -> dict[str, Any]:
    return {**chosen.model_dump(mode="json", exclude={"account"}), "account": account}


def test_each_account_has_its_own_budget(ledger: Ledger) -> None:
    flow = two_account_pipeline(ledger, [])
    assert flow.budgets["0trace"].limit == 810 and flow.budgets["0trace:eu"].limit == 270


def test_the_command_chooses_the_account_and_its_order_stays_with_it(ledger: Ledger) -> None:
    calls: list[str] = []
    flow = two_account_pipeline(ledger, calls)
    assert flow.handle_create(as_kwargs(command("cmd-eu-0001"), "eu"), "m1").name == "created"
    assert flow.handle_create(as_kwargs(command("cmd-de-0001"), None), "m2").name == "created"
    assert calls == ["eu", "default"]
    eu_record, default_record = ledger.get("cmd-eu-0001"), ledger.get("cmd-de-0001")
    assert eu_record is not None and default_record is not None
    assert (eu_record.account, default_record.account) == ("eu", None)
    # Polls read the order through the account that placed it.
    flow.refresh(eu_record, Source.POLL)
    assert calls[-1] == "eu"
    # partner_ref depends on the command alone: one command is one key whichever account sends it, and
    # two commands never share one, so keys stay unique across accounts.
    assert eu_record.partner_ref == partner_ref("order-worker", "cmd-eu-0001") != default_record.partner_ref


def test_a_command_naming_an_unknown_account_is_rejected_with_the_reason(ledger: Ledger) -> None:
    calls: list[str] = []
    outcome = two_account_pipeline(ledger, calls).handle_create(
        as_kwargs(command("cmd-mars-001"), "mars"), "m1"
    )
    assert outcome.name == "rejected" and calls == []
    error = outcome.events[0].error
    assert error is not None and "account" in error.reason and "mars" in error.reason


def test_naming_the_default_account_is_the_same_order_as_naming_none() -> None:
    plain = command("cmd-00000001")
    named = CreateOrderCommand.model_validate({**as_kwargs(plain, "default")})
    other = CreateOrderCommand.model_validate({**as_kwargs(plain, "eu")})
    assert plain.fingerprint() == named.fingerprint() != other.fingerprint()


def test_a_push_is_applied_only_when_signed_by_the_account_of_its_order(ledger: Ledger) -> None:
    flow = two_account_pipeline(ledger, [])
    flow.handle_create(as_kwargs(command("cmd-eu-0001"), "eu"), "m1")
    record = ledger.get("cmd-eu-0001")
    assert record is not None and record.order_id is not None
    receiver = PushReceiver(flow.settings, ledger, flow, clock=flow.clock)
    raw = zt_body(zt_dto(record.order_id, "PENDING", flow.clock()))
    default_secret = ZeroTraceSettings().webhook_secrets[0].get_secret_value()
    refused = receiver.receive("0trace", raw, zt_headers(raw, default_secret, flow.clock()))
    assert (refused.status, refused.result) == (401, "account_mismatch")
    assert ledger.get("cmd-eu-0001") == record
    accepted = receiver.receive("0trace", raw, zt_headers(raw, "eu-webhook-secret", flow.clock()))
    assert accepted.result == "accepted"
    moved = ledger.get("cmd-eu-0001")
    assert moved is not None and moved.status == "confirming"
