"""The partner sandbox with orders already placed (manual scenario: they stay where they are put), for the
scale and priorities runs.

Placing 100,000 orders through the API would take minutes of the benchmark's budget, and holding a million
``ItrxOrder`` objects (with their history) would take about a gigabyte of the benchmark machine's memory.
So the seeded itrx orders are not built up front: the book answers a seeded serial by building, on its
first read, the same ``ItrxOrder`` the API would have placed, and keeps only the ones read. Serials are
``<tag><index as 24 hex digits>`` so the bench can seed its ledger with the same ids.

0trace orders (``--zerotrace-orders``, at most some hundred thousand) are built up front: ``NEW``, awaiting
a deposit, ids from :func:`zerotrace_id`, all read with :data:`ZEROTRACE_TOKEN`. Their deposit windows
close ``--zerotrace-expiry`` seconds from now, except the first ``--deadline-orders``, whose windows close
evenly between ``--deadline-from`` and ``--deadline-to`` seconds from now (they stay ``NEW`` after it).
The 0trace budget is ``--rate-limit-weight`` (default: raised out of the way; the partner's is 2,500).

Every read of a seeded order is counted per serial; with ``--reads-out FILE`` the counts are written there
when the sandbox stops, which is how the scale run tells an order polled twice from one polled once.

    .venv/bin/python -m bench.seeded_sandbox --port PORT --itrx-orders 1000000 --tag 0123abcd
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import signal
import time
from collections import Counter
from typing import Any

from order_worker_sandbox.config import from_env
from order_worker_sandbox.itrx_orders import ItrxOrder
from order_worker_sandbox.server import SandboxServer
from order_worker_sandbox.zerotrace_orders import ZtOrder

TRON = "TExWKszFWYTKZH8LYiovAPKzS3L9MLZ4kw"


ZEROTRACE_TOKEN = "seeded-order-token-" + "x" * 24
"""The one-time token of every seeded 0trace order (43 URL-safe characters, as the partner's)."""


def serial(tag: str, index: int) -> str:
    return f"{tag}{index:024x}"


def zerotrace_id(tag: str, index: int) -> str:
    """A UUID-shaped id, as the partner's: the tag's first 8 hex digits, then the index."""
    digits = f"{tag[:8]}{index:024x}"
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-a{digits[17:20]}-{digits[20:32]}"


class SeededOrders(dict[str, ItrxOrder]):
    """The book's order dictionary, answering seeded serials it has not built yet.

    The sandbox reads its orders with ``get`` (queries) and iterates them only for the rare lookups by
    ``out_trade_no``, which seeded orders never carry, so building on ``get`` is enough."""

    def __init__(self, tag: str, count: int, created: float) -> None:
        super().__init__()
        self.tag = tag
        self.count = count
        self.created = created
        self.reads: Counter[str] = Counter()

    def _index(self, key: str) -> int | None:
        if len(key) != len(self.tag) + 24 or not key.startswith(self.tag):
            return None
        try:
            index = int(key[len(self.tag) :], 16)
        except ValueError:
            return None
        return index if index < self.count else None

    def get(self, key: str, default: Any = None) -> Any:
        order = super().get(key)
        if order is None and self._index(key) is not None:
            order = _seeded(key, self.created)
            self[key] = order
        if order is not None and self._index(key) is not None:
            self.reads[key] += 1
        return default if order is None else order

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key) or (isinstance(key, str) and self._index(key) is not None)


def _seeded(key: str, created: float) -> ItrxOrder:
    order = ItrxOrder(
        serial=key,
        receive_address=TRON,
        energy_amount=65_000,
        period=0,
        amount=3_900_000,
        status=20,
        created=created,
        callback_url=None,
        out_trade_no=None,
        scenario="manual",
        created_at=time.time(),
    )
    order.history.append((20, created))
    return order


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--itrx-orders", type=int, default=100_000)
    parser.add_argument("--zerotrace-orders", type=int, default=0)
    parser.add_argument("--zerotrace-expiry", type=float, default=86_400.0)
    parser.add_argument("--deadline-orders", type=int, default=0)
    parser.add_argument("--deadline-from", type=float, default=360.0)
    parser.add_argument("--deadline-to", type=float, default=600.0)
    parser.add_argument("--rate-limit-weight", type=int, default=1_000_000_000)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--reads-out", help="write {serial: reads} of the seeded orders here on exit")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    config = from_env(
        port=args.port,
        itrx_scenario="manual",
        zerotrace_scenario="manual",
        zerotrace_rate_limit_weight=args.rate_limit_weight,
    )
    server = SandboxServer(config)
    _seed_zerotrace(server, args.tag, args.zerotrace_orders, args)
    book = server.sandbox.itrx
    orders = SeededOrders(args.tag, args.itrx_orders, server.sandbox.clock.now())
    book.orders = orders

    async def serve() -> None:
        await server.start()
        print(f"order-worker sandbox listening on {server.base_url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        await server.stop()

    asyncio.run(serve())
    if args.reads_out:
        with open(args.reads_out, "w", encoding="utf-8") as out:
            json.dump(dict(orders.reads), out)


def _seed_zerotrace(server: SandboxServer, tag: str, count: int, args: argparse.Namespace) -> None:
    book = server.sandbox.zerotrace
    partner = book.partners[server.sandbox.config.zerotrace_api_key]
    src, dst = book.assets["btc"], book.assets["usdt_trc20"]
    token_hash = hashlib.sha256(ZEROTRACE_TOKEN.encode("ascii")).digest()
    now = server.sandbox.clock.now()
    spread = max(1, args.deadline_orders - 1)
    for index in range(count):
        if index < args.deadline_orders:
            closes = now + args.deadline_from + (args.deadline_to - args.deadline_from) * index / spread
        else:
            closes = now + args.zerotrace_expiry
        order_id = zerotrace_id(tag, index)
        order = ZtOrder(
            id=order_id,
            partner_key=partner.api_key,
            token_hash=token_hash,
            status="NEW",
            reg=int(now),
            expiration=int(closes),
            update=int(now),
            src=src,
            dst=dst,
            from_amount="0.01000000",
            payin="bc1qseededpayinaddress000000000000000000",
            to_amount="615.000000",
            to_address="TXyzExampleRecipientAddress0001",
            back_address=None,
            rate="61500.00000000",
            network_fee="1.20",
            markup_bps=0,
            idempotency_key=None,
            code=None,
            scenario="manual",
            created_at=time.time(),
        )
        order.history.append(("NEW", now))
        book.orders[order_id] = order


if __name__ == "__main__":
    main()
