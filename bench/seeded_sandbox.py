"""The partner sandbox with orders already placed (manual scenario: they stay where they are put), for the
scale and priorities runs.

Placing 100,000 orders through the API would take minutes of the benchmark's budget; this builds the same
order objects the API would, directly in the sandbox's books, then serves as usual:

* itrx (``--itrx-orders``): status 20; serials are ``<tag><index as 24 hex digits>``;
* 0trace (``--zerotrace-orders``): ``NEW``, awaiting a deposit, ids from :func:`zerotrace_id`, all read
  with :data:`ZEROTRACE_TOKEN`; their deposit windows close ``--zerotrace-expiry`` seconds from now, except
  the first ``--deadline-orders``, whose windows close evenly between ``--deadline-from`` and
  ``--deadline-to`` seconds from now (they stay ``NEW`` after it: the run watches the approach).

The sandbox's 0trace budget is the partner's real one (``--rate-limit-weight``, default 2,500 a minute)
unless raised. The bench seeds its ledger with the same ids.

    .venv/bin/python -m bench.seeded_sandbox --port PORT --itrx-orders 100000 --tag 0123abcd
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import signal
import time

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
