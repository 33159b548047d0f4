"""The partner sandbox with N itrx orders already placed (status 20, manual scenario), for the scale run.

Placing 100,000 orders through the API would take minutes of the benchmark's budget; this builds the same
``ItrxOrder`` objects the API would, directly in the sandbox's book, then serves as usual. Serials are
``<tag><index as 24 hex digits>`` so the bench can seed its ledger with the same ids.

    .venv/bin/python -m bench.seeded_sandbox --port PORT --itrx-orders 100000 --tag 0123abcd
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time

from order_worker_sandbox.config import from_env
from order_worker_sandbox.itrx_orders import ItrxOrder
from order_worker_sandbox.server import SandboxServer

TRON = "TExWKszFWYTKZH8LYiovAPKzS3L9MLZ4kw"


def serial(tag: str, index: int) -> str:
    return f"{tag}{index:024x}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--itrx-orders", type=int, default=100_000)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    config = from_env(port=args.port, itrx_scenario="manual", zerotrace_rate_limit_weight=1_000_000_000)
    server = SandboxServer(config)
    book = server.sandbox.itrx
    now = server.sandbox.clock.now()
    for index in range(args.itrx_orders):
        order = ItrxOrder(
            serial=serial(args.tag, index),
            receive_address=TRON,
            energy_amount=65_000,
            period=0,
            amount=3_900_000,
            status=20,
            created=now,
            callback_url=None,
            out_trade_no=None,
            scenario="manual",
            created_at=time.time(),
        )
        order.history.append((20, now))
        book.orders[order.serial] = order

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


if __name__ == "__main__":
    main()
