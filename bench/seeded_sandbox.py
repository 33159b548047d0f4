"""The partner sandbox with N itrx orders already placed (status 20, manual scenario), for the scale runs.

Placing 100,000 orders through the API would take minutes of the benchmark's budget, and holding a million
``ItrxOrder`` objects (with their history) would take about a gigabyte of the benchmark machine's memory.
So the seeded orders are not built up front: the book answers a seeded serial by building, on its first
read, the same ``ItrxOrder`` the API would have placed, and keeps only the ones read. Serials are
``<tag><index as 24 hex digits>`` so the bench can seed its ledger with the same ids.

Every read of a seeded order is counted per serial; with ``--reads-out FILE`` the counts are written there
when the sandbox stops, which is how the scale run tells an order polled twice from one polled once.

    .venv/bin/python -m bench.seeded_sandbox --port PORT --itrx-orders 1000000 --tag 0123abcd
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from collections import Counter
from typing import Any

from order_worker_sandbox.config import from_env
from order_worker_sandbox.itrx_orders import ItrxOrder
from order_worker_sandbox.server import SandboxServer

TRON = "TExWKszFWYTKZH8LYiovAPKzS3L9MLZ4kw"


def serial(tag: str, index: int) -> str:
    return f"{tag}{index:024x}"


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
    parser.add_argument("--tag", required=True)
    parser.add_argument("--reads-out", help="write {serial: reads} of the seeded orders here on exit")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    config = from_env(port=args.port, itrx_scenario="manual", zerotrace_rate_limit_weight=1_000_000_000)
    server = SandboxServer(config)
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


if __name__ == "__main__":
    main()
