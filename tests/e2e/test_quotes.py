"""Quotes over a real broker, worker and sandbox: both partners priced, the cache sparing the partner,
refusals and failures answered as errors, and no service answering as a timeout or an at-once return."""

from __future__ import annotations

import time
from decimal import Decimal

import pika
import pytest
from order_worker_client.quoting import QuoteClient, QuoteRefused, QuoteTimeout, QuoteUnroutable

from tests.support.stack import Stack, wait_until
from worker.bus.topology import declare_quotes_queue

BTC_USDT = {"fromCcy": "btc", "toCcy": "usdt_trc20", "direction": "from", "amount": "0.01"}


def _price_calls(stack: Stack, endpoint: str) -> int:
    return int(stack.sandbox.stats()["requests"].get(endpoint, 0))


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_quotes_for_both_partners_errors_and_the_cache(stack: Stack) -> None:
    worker = stack.start_worker(threads=2, ORDER_WORKER_QUOTE_CACHE_SECONDS="30")
    wait_until(lambda: stack.quote_consumers() >= 1, 60, "the quote consumer")
    zerotrace_before, itrx_before = (
        _price_calls(stack, "0trace.price"),
        _price_calls(stack, "itrx.order_price"),
    )
    with QuoteClient(stack.broker_url, queue=stack.quotes_queue) as client:
        swap = client.quote("0trace", BTC_USDT, timeout=10)
        again = client.quote(
            "0trace",
            {
                **BTC_USDT,
                "toAddress": "TExWKszFWYTKZH8LYiovAPKzS3L9MLZ4kw",
                "refundAddress": "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
            },
            10,
        )
        energy = client.quote("itrx", {"period": "1H", "energy_amount": 65000}, timeout=10)

        # 0trace: the deposit as asked, the payout and the rate as 0trace computed them, its fields kept.
        assert (swap.provider, swap.account, swap.cached) == ("0trace", "default", False)
        assert (swap.pay.unit, Decimal(swap.pay.amount)) == ("btc", Decimal("0.01"))
        assert swap.receive.unit == "usdt_trc20" and Decimal(swap.receive.amount) > 0
        assert (
            swap.partner["to"]["amount"] == swap.receive.amount and swap.rate == swap.partner["from"]["rate"]
        )
        # The same price asked with a create's params: from the cache, no second partner call.
        assert again.cached and again.receive == swap.receive and again.quoted_at == swap.quoted_at
        assert _price_calls(stack, "0trace.price") - zerotrace_before == 1
        # itrx: the rent in TRX, exactly its total_price in sun.
        assert (energy.receive.amount, energy.receive.unit, energy.pay.unit) == ("65000", "energy", "TRX")
        assert Decimal(energy.pay.amount) * 1_000_000 == energy.partner["total_price"] > 0
        assert _price_calls(stack, "itrx.order_price") - itrx_before == 1

        with pytest.raises(QuoteRefused) as invalid:
            client.quote("itrx", {"period": "2H", "energy_amount": 65000}, timeout=10)
        assert invalid.value.code == "invalid_params" and "period" in invalid.value.reason
        assert _price_calls(stack, "itrx.order_price") - itrx_before == 1, "an invalid request is not sent"

        with pytest.raises(QuoteRefused) as unknown:
            client.quote("binance", {}, timeout=10)
        assert unknown.value.code == "unknown_provider"

        # The partner refuses (fault injection: 0trace's INVALID_REQUEST), then fails (503).
        stack.sandbox.control(
            "faults",
            {
                "endpoint": "0trace.price",
                "kind": "error",
                "status": 400,
                "body": {"code": 1, "msg": "INVALID_REQUEST"},
                "times": 1,
            },
        )
        with pytest.raises(QuoteRefused) as refused:
            client.quote("0trace", {**BTC_USDT, "amount": "0.02"}, timeout=10)
        assert refused.value.code == "partner_refused" and "INVALID_REQUEST" in refused.value.reason
        stack.sandbox.control("faults", {"endpoint": "0trace.price", "kind": "http_503", "times": 1})
        with pytest.raises(QuoteRefused) as unavailable:
            client.quote("0trace", {**BTC_USDT, "amount": "0.03"}, timeout=10)
        assert unavailable.value.code == "partner_unavailable"
        # A refusal is not cached: the same question, asked again, is priced.
        assert not client.quote("0trace", {**BTC_USDT, "amount": "0.02"}, timeout=10).cached

    metrics = stack.metrics(worker)
    assert 'order_worker_quotes_total{provider="0trace",result="ok"} 3.0' in metrics
    assert 'order_worker_quotes_total{provider="0trace",result="partner_refused"} 1.0' in metrics
    assert 'order_worker_quotes_total{provider="unknown",result="unknown_provider"} 1.0' in metrics
    assert 'order_worker_quote_cache_hits_total{provider="0trace"} 1.0' in metrics
    logs = b"".join(stack.service_logs().values())
    assert b"TExWKszFWYTKZH8LYiovAPKzS3L9MLZ4kw" not in logs and b"api_secret" not in logs.lower()


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_without_a_quote_service_the_requester_hears_at_once_or_times_out(stack: Stack) -> None:
    with QuoteClient(stack.broker_url, queue=stack.quotes_queue) as client:
        # No queue at all: the broker returns the mandatory request, no waiting for the timeout.
        started = time.monotonic()
        with pytest.raises(QuoteUnroutable) as absent:
            client.quote("0trace", BTC_USDT, timeout=10)
        assert absent.value.code == "no_quote_service" and time.monotonic() - started < 2
        # The queue exists but no worker consumes it: a timeout, and the request expires unanswered.
        with pika.BlockingConnection(pika.URLParameters(stack.broker_url)) as connection:
            declare_quotes_queue(connection.channel(), stack.quotes_queue)
        started = time.monotonic()
        with pytest.raises(QuoteTimeout):
            client.quote("0trace", BTC_USDT, timeout=1.0)
        assert 1.0 <= time.monotonic() - started < 3

    def depth() -> int:
        with pika.BlockingConnection(pika.URLParameters(stack.broker_url)) as connection:
            return int(
                connection.channel().queue_declare(stack.quotes_queue, passive=True).method.message_count
            )

    wait_until(lambda: depth() == 0, 10, "the unanswered request to expire from the queue")
