"""Quotes without a broker: the cache, each partner's price answer normalised, the params a quote accepts,
and every answer the service gives (cache hits, one partner call per price, the rate budget, errors)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from order_worker_client.quotes import QUOTE_REPLY, Quote, QuoteError, QuoteErrorCode, QuoteRequest
from order_worker_client.quoting import QuoteFailed, QuoteRefused, _parsed
from pydantic import BaseModel, ValidationError

from worker.ledger.base import Ledger
from worker.partners import registry
from worker.partners.base import Fate, PartnerError, PartnerQuote, QuoteAmount
from worker.partners.itrx.params import quote_params as itrx_quote_params
from worker.partners.itrx.quotes import parse_quote, trx_from_sun
from worker.partners.registry import Connected
from worker.partners.zerotrace.params import quote_params as zerotrace_quote_params
from worker.partners.zerotrace.quotes import parse_price
from worker.quotes import QuoteCache, QuoteService, cache_key
from worker.ratelimit import BudgetSettings, WeightBudget

BTC_USDT = {"fromCcy": "btc", "toCcy": "usdt_trc20", "direction": "from", "amount": "0.025"}
ADDRESSES = {
    "toAddress": "TExWKszFWYTKZH8LYiovAPKzS3L9MLZ4kw",
    "refundAddress": "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
}
SPEC_PRICE = {  # 0trace spec §8.3
    "from": {
        "code": "btc",
        "coin": "BTC",
        "network": "Bitcoin",
        "amount": "0.02500000",
        "rate": "61600.00000000",
        "precision": 8,
        "min": "0.00002000",
        "max": "0.08100000",
        "usd": "1540.00",
        "btc": "0",
    },
    "to": {
        "code": "usdt_trc20",
        "coin": "USDT",
        "network": "Tron",
        "amount": "1531.080000",
        "rate": "61600.00000000",
        "precision": 6,
        "min": "1.000000",
        "max": "5000.000000",
        "usd": "1531.08",
    },
    "errors": [],
    "markupBps": 50,
}


# --- normalisation -----------------------------------------------------------------------------------


def test_a_0trace_price_keeps_its_decimals_bounds_and_fields() -> None:
    quote = parse_price(SPEC_PRICE)
    assert quote.pay == QuoteAmount(
        amount="0.02500000", unit="btc", minimum="0.00002000", maximum="0.08100000"
    )
    assert quote.receive == QuoteAmount(
        amount="1531.080000", unit="usdt_trc20", minimum="1.000000", maximum="5000.000000"
    )
    assert (quote.rate, quote.markup_bps, quote.notes) == ("61600.00000000", 50, ())
    assert quote.fields == SPEC_PRICE
    assert parse_price({**SPEC_PRICE, "errors": ["amount below minimum"]}).notes == ("amount below minimum",)


@pytest.mark.parametrize(
    "data",
    [
        [],
        {**SPEC_PRICE, "from": {**SPEC_PRICE["from"], "amount": 0.025}},  # a float, not a decimal string
        {**SPEC_PRICE, "to": {**SPEC_PRICE["to"], "amount": "-1"}},
        {**SPEC_PRICE, "to": {"amount": "1.0"}},  # no code
    ],
)
def test_an_unusable_0trace_price_is_refused(data: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        parse_price(data)


def test_an_itrx_price_is_stated_in_trx_exactly_with_its_sun_fields_kept() -> None:
    answer = {"period": 1, "energy_amount": 65000, "price": 90, "total_price": 5850001, "addition": 0}
    quote = parse_quote(answer)
    assert quote.pay == QuoteAmount(amount="5.850001", unit="TRX")
    assert quote.receive == QuoteAmount(amount="65000", unit="energy")
    assert quote.fields == {**answer, "period": "1D"}
    assert [trx_from_sun(n) for n in (0, 1, 5_850_000, 3_000_000)] == ["0", "0.000001", "5.85", "3"]
    with pytest.raises(ValueError):
        parse_quote({"period": "1D", "energy_amount": 65000, "total_price": "5850000"})


# --- params ------------------------------------------------------------------------------------------


def test_0trace_prices_its_price_fields_or_a_whole_create() -> None:
    alone = zerotrace_quote_params(BTC_USDT)
    from_create = zerotrace_quote_params({**BTC_USDT, **ADDRESSES, "afftax": 20})
    assert alone.wire_body() == {"type": "float", **BTC_USDT}
    assert from_create.wire_body() == {"type": "float", **BTC_USDT, "afftax": 20}
    with pytest.raises(ValidationError, match="toAddress"):  # a create's fields are checked as a create's
        zerotrace_quote_params({**BTC_USDT, **ADDRESSES, "toAddress": "bad"})
    with pytest.raises(ValidationError, match="amount"):
        zerotrace_quote_params({**BTC_USDT, "amount": "-1"})
    with pytest.raises(ValidationError):
        zerotrace_quote_params({**BTC_USDT, "surprise": 1})


def test_itrx_prices_energy_an_address_or_a_whole_create() -> None:
    assert itrx_quote_params({"period": "1H", "energy_amount": 65000}).query() == {
        "period": "1H",
        "energy_amount": "65000",
    }
    address = ADDRESSES["toAddress"]
    assert itrx_quote_params({"period": "1D", "to_address": address}).query() == {
        "period": "1D",
        "to_address": address,
    }
    create = {"energy_amount": 65000, "period": "3D", "receive_address": address}
    assert itrx_quote_params(create).query() == {"period": "3D", "energy_amount": "65000"}
    with pytest.raises(ValidationError, match="energy_amount, or to_address"):
        itrx_quote_params({"period": "1H"})
    with pytest.raises(ValidationError, match="receive_address"):
        itrx_quote_params({**create, "receive_address": "T" + "1" * 33})


# --- cache -------------------------------------------------------------------------------------------


def _quote(amount: str = "1") -> Quote:
    return Quote(
        provider="0trace",
        account="default",
        pay=QuoteAmount(amount=amount, unit="btc"),
        receive=QuoteAmount(amount="2", unit="usdt_trc20"),
        quoted_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_the_cache_key_is_the_same_for_the_same_price() -> None:
    reordered = dict(reversed(list(BTC_USDT.items())))
    key = cache_key("0trace", "default", zerotrace_quote_params(BTC_USDT))
    assert cache_key("0trace", "default", zerotrace_quote_params(reordered)) == key
    assert cache_key("0trace", "default", zerotrace_quote_params({**BTC_USDT, **ADDRESSES})) == key
    assert cache_key("0trace", "eu", zerotrace_quote_params(BTC_USDT)) != key
    assert cache_key("0trace", "default", zerotrace_quote_params({**BTC_USDT, "amount": "0.0251"})) != key


def test_the_cache_answers_within_its_seconds_and_says_how_old() -> None:
    cache, key = QuoteCache(3.0), ("0trace", "default", "{}")
    quote = _quote()
    cache.put(key, quote, now=100.0)
    hit = cache.get(key, now=102.9, moment=quote.quoted_at + timedelta(seconds=2.5))
    assert hit is not None and hit.cached and hit.age_seconds == 2.5 and hit.pay == quote.pay
    assert cache.get(key, now=103.0, moment=quote.quoted_at) is None
    assert len(cache) == 0, "a stale entry is dropped when found"


def test_the_cache_is_bounded_and_can_be_off() -> None:
    cache = QuoteCache(10.0, max_entries=2)
    for index in range(3):
        cache.put(("p", "a", str(index)), _quote(), now=0.0)
    assert len(cache) == 2 and cache.get(("p", "a", "0"), 1.0, _quote().quoted_at) is None
    off = QuoteCache(0.0)
    off.put(("p", "a", "x"), _quote(), now=0.0)
    assert len(off) == 0


# --- the service -------------------------------------------------------------------------------------


class FakeSession:
    """A partner session whose price call is counted and answers what the test says."""

    def __init__(self, answer: Callable[[BaseModel], PartnerQuote] | None = None, delay: float = 0.0) -> None:
        self.calls: list[BaseModel] = []
        self.answer = answer or (lambda params: parse_price(SPEC_PRICE))
        self.delay = delay
        self._lock = threading.Lock()

    def quote(self, params: BaseModel) -> PartnerQuote:
        with self._lock:
            self.calls.append(params)
        time.sleep(self.delay)  # the partner's own latency, so that concurrent requests overlap
        return self.answer(params)

    def create(self, *args: Any) -> Any:
        raise NotImplementedError

    fetch = precheck = create


class NoQuotes:
    """A session without a price call (a partner that offers none)."""

    def create(self, *args: Any) -> Any:
        raise NotImplementedError

    fetch = precheck = create


def _connected(
    session: Any, account: str = "default", others: dict[str, Connected] | None = None
) -> Connected:
    partner = registry.get("0trace")
    return Connected(partner, partner.settings_model(), session, None, account=account, others=others or {})


def _service(
    session: Any, budget: WeightBudget | None = None, cache_seconds: float = 5.0, **others: Any
) -> QuoteService:
    connected = _connected(session, others={n: _connected(s, n) for n, s in others.items()})
    budgets = {connected.key: budget} if budget is not None else {}
    return QuoteService({"0trace": connected}, budgets, QuoteCache(cache_seconds))


def _ask(service: QuoteService, timeout: float = 5.0, **request: Any) -> Quote | QuoteError:
    body = {"provider": "0trace", "params": BTC_USDT, "timeout_seconds": timeout, **request}
    return service.answer(json.dumps(body).encode())


def test_a_quote_is_asked_once_then_answered_from_the_cache() -> None:
    session = FakeSession()
    service = _service(session)
    first, second = _ask(service), _ask(service, params={**BTC_USDT, **ADDRESSES})
    assert isinstance(first, Quote) and isinstance(second, Quote)
    assert (first.cached, second.cached) == (False, True)
    assert second.pay == first.pay and second.quoted_at == first.quoted_at
    assert len(session.calls) == 1
    reparsed = QUOTE_REPLY.validate_json(QUOTE_REPLY.dump_json(first))
    assert reparsed == first


def test_without_a_cache_every_request_asks_the_partner() -> None:
    session = FakeSession()
    service = _service(session, cache_seconds=0)
    assert all(isinstance(_ask(service), Quote) for _ in range(3))
    assert len(session.calls) == 3


def test_requests_for_one_price_arriving_together_make_one_partner_call() -> None:
    session = FakeSession(delay=0.3)
    service = _service(session)
    replies: list[Quote | QuoteError] = []
    threads = [threading.Thread(target=lambda: replies.append(_ask(service))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(replies) == 6 and all(isinstance(reply, Quote) for reply in replies)
    assert len(session.calls) == 1
    assert sum(1 for reply in replies if isinstance(reply, Quote) and not reply.cached) == 1


def test_quotes_never_spend_more_than_the_budget_and_say_when_it_frees(ledger: Ledger) -> None:
    session = FakeSession()
    budget = WeightBudget(
        ledger,
        BudgetSettings(weight_budget=3, weight_headroom=0.0, weight_window=60, weight_create_reserve=0),
        "0trace",
    )
    service = _service(session, budget=budget, cache_seconds=0)
    started = time.monotonic()
    replies = [_ask(service, timeout=0.6) for _ in range(5)]
    assert [isinstance(reply, Quote) for reply in replies] == [True, True, True, False, False]
    assert len(session.calls) == 3, "no call beyond the budget"
    refused = replies[3]
    assert isinstance(refused, QuoteError) and refused.code is QuoteErrorCode.BUDGET_EXHAUSTED
    assert refused.retry_after is not None and refused.retry_after > 50
    assert time.monotonic() - started < 2.0, "a request with no budget in sight is answered at once"


def test_a_quote_waits_for_budget_only_within_its_timeout(ledger: Ledger) -> None:
    session = FakeSession()
    budget = WeightBudget(
        ledger,
        BudgetSettings(weight_budget=1, weight_headroom=0.0, weight_window=1, weight_create_reserve=0),
        "0trace",
    )
    service = _service(session, budget=budget, cache_seconds=0)
    assert isinstance(_ask(service), Quote)
    waited = _ask(service, timeout=5.0)  # the window (1 s + margin) frees the budget in time
    assert isinstance(waited, Quote) and len(session.calls) == 2
    refused = _ask(service, timeout=0.5)
    assert isinstance(refused, QuoteError) and refused.code is QuoteErrorCode.BUDGET_EXHAUSTED
    assert len(session.calls) == 2


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (PartnerError(Fate.REFUSED, "1", "price: INVALID_REQUEST (HTTP 400)", False), "partner_refused"),
        (PartnerError(Fate.REFUSED, "5", "price: RATE_LIMIT", True, 7.0, 429, True), "partner_unavailable"),
        (PartnerError(Fate.UNKNOWN, "timeout", "price: no answer in 10s", True), "partner_unavailable"),
        (PartnerError(Fate.NOT_SENT, "connection_refused", "price: refused", True), "partner_unavailable"),
        (RuntimeError("a plug-in bug"), "internal"),
    ],
)
def test_a_partner_failure_is_an_error_reply(error: Exception, code: str) -> None:
    def fail(params: BaseModel) -> PartnerQuote:
        raise error

    session = FakeSession(fail)
    service = _service(session)
    reply = _ask(service)
    assert isinstance(reply, QuoteError) and reply.code.value == code
    if isinstance(error, PartnerError):
        assert error.reason in reply.reason
        assert reply.retry_after == error.retry_after
    assert isinstance(_ask(service), QuoteError) and len(session.calls) == 2, "failures are not cached"


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        (b"not json", "invalid_request", "command"),
        (b'{"provider": "0trace", "params": {"pad": "' + b"x" * 17000 + b'"}}', "invalid_request", "at most"),
        (b'{"provider": "0trace"}', "invalid_request", "params"),
        (b'{"provider": "0trace", "params": {}, "timeout_seconds": 600}', "invalid_request", "timeout"),
        (b'{"provider": "binance", "params": {}}', "unknown_provider", "known: 0trace"),
        (b'{"provider": "0trace", "account": "eu", "params": {}}', "unknown_account", "no account 'eu'"),
        (b'{"provider": "0trace", "params": {"fromCcy": "btc"}}', "invalid_params", "toCcy"),
    ],
)
def test_a_bad_request_is_answered_with_its_reason(body: bytes, code: str, says: str) -> None:
    session = FakeSession()
    reply = _service(session).answer(body)
    assert isinstance(reply, QuoteError) and reply.code.value == code
    assert says in reply.reason
    assert not session.calls


def test_an_account_prices_with_its_own_session_and_cache_entry() -> None:
    default, eu = FakeSession(), FakeSession()
    service = _service(default, eu=eu)
    quotes = [_ask(service), _ask(service, account="eu"), _ask(service, account="eu")]
    assert [q.account for q in quotes if isinstance(q, Quote)] == ["default", "eu", "eu"]
    assert (len(default.calls), len(eu.calls)) == (1, 1)


def test_a_partner_without_a_price_call_answers_unsupported() -> None:
    reply = _service(NoQuotes()).answer(json.dumps({"provider": "0trace", "params": BTC_USDT}).encode())
    assert isinstance(reply, QuoteError) and reply.code is QuoteErrorCode.UNSUPPORTED


# --- the client's reading of replies ------------------------------------------------------------------


def test_the_client_reads_a_quote_an_error_or_nonsense() -> None:
    quote = _quote()
    assert _parsed(QUOTE_REPLY.dump_json(quote)) == quote
    error = QuoteError(code=QuoteErrorCode.BUDGET_EXHAUSTED, reason="no room", retry_after=3.0)
    with pytest.raises(QuoteRefused) as refused:
        _parsed(QUOTE_REPLY.dump_json(error))
    assert (refused.value.code, refused.value.retry_after, str(refused.value)) == (
        "budget_exhausted",
        3.0,
        "budget_exhausted: no room",
    )
    with pytest.raises(QuoteFailed, match="invalid_reply"):
        _parsed(b'{"result": "maybe"}')
    with pytest.raises(ValidationError):
        QuoteRequest(provider="0trace", params={}, timeout_seconds=0)
