"""``python -m order_worker_sandbox`` / ``order-worker sandbox``: both partner simulators on one port."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import signal
import sys
import textwrap
from typing import Any

from order_worker_sandbox.config import ENV_PREFIX, HELP, SandboxConfig, coerce_value, field_names, from_env
from order_worker_sandbox.server import SandboxServer

DESCRIPTION = """\
Local, strict simulators of the 0trace Partner API and the itrx energy API, on one port:
  0trace  POST {url}/api/v1/{{currencies,pairs,price,create,order,emergency,qr,keys/rotate,codes}}
  itrx    {url}/api/v1/frontend/{{order,order/query,order/price,index-data,userapi/summary}}
  control {url}/_sandbox/{{ping,clock,drive,faults,webhooks,deliveries,orders,stats,config,reset}}

Every setting can also come from the environment as ORDER_WORKER_SANDBOX_<NAME> (e.g.
ORDER_WORKER_SANDBOX_ZEROTRACE_API_SECRET); flags win over the environment. Credentials default to
the public development values in order_worker_sandbox.config, which the worker also uses by default.
Use --list-settings to see every setting, its default and meaning; set any of them with --set NAME=VALUE.
"""

EPILOG = """\
examples:
  order-worker sandbox --speed 60 --webhook-url http://127.0.0.1:8091/webhooks/0trace
  python -m order_worker_sandbox --port 0 --set zerotrace_scenario=manual --set itrx_strict_out_trade_no=true
  curl -s localhost:8090/_sandbox/stats
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="order-worker-sandbox",
        description=DESCRIPTION.format(url="http://HOST:PORT"),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", help="bind address (default 127.0.0.1; env ORDER_WORKER_SANDBOX_HOST)")
    p.add_argument("--port", type=int, help="bind port, 0 = any free port (default 8090)")
    p.add_argument(
        "--speed",
        type=float,
        metavar="FACTOR",
        help="sandbox seconds per real second; shrinks lifecycles, deposit windows, retries (default 1)",
    )
    p.add_argument(
        "--webhook-url", metavar="URL", help="where 0trace order.status_changed webhooks are POSTed"
    )
    p.add_argument(
        "--itrx-callback-url",
        metavar="URL",
        help="itrx account default callback URL (orders' callback_url wins)",
    )
    p.add_argument(
        "--scenario",
        choices=["auto", "manual", "emergency"],
        help="0trace lifecycle of new orders (default auto)",
    )
    p.add_argument(
        "--itrx-scenario", choices=["auto", "manual", "fail", "refund"], help="itrx lifecycle of new orders"
    )
    p.add_argument(
        "--rate-limit-weight", type=int, metavar="N", help="0trace weight budget per 60 s (default 2500)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set any setting (repeatable); lists are comma-separated: zerotrace_webhook_schedule=1,5,30",
    )
    p.add_argument(
        "--list-settings", action="store_true", help="print every setting with default and meaning"
    )
    p.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate chain")
    p.add_argument("--tls-key", metavar="PEM", help="key of --tls-cert, when not in that file")
    p.add_argument(
        "--tls-client-ca", metavar="PEM", help="require client certificates issued by these CAs (mTLS)"
    )
    p.add_argument(
        "--uvloop", action="store_true", help="run on uvloop if it is installed (faster event loop)"
    )
    p.add_argument("--quiet", action="store_true", help="print only the listening URL line")
    return p


def _list_settings() -> str:
    default = SandboxConfig()
    lines = []
    for name in field_names():
        value = getattr(default, name)
        lines.append(f"{name} (env {ENV_PREFIX}{name.upper()}) = {value!r}")
        lines.extend(textwrap.wrap(HELP[name], 100, initial_indent="    ", subsequent_indent="    "))
    return "\n".join(lines)


def build_config(args: argparse.Namespace) -> SandboxConfig:
    overrides: dict[str, Any] = {}
    flag_fields = {
        "host": "host",
        "port": "port",
        "speed": "speed",
        "webhook_url": "zerotrace_webhook_url",
        "itrx_callback_url": "itrx_default_callback_url",
        "scenario": "zerotrace_scenario",
        "itrx_scenario": "itrx_scenario",
        "rate_limit_weight": "zerotrace_rate_limit_weight",
        "tls_cert": "tls_cert_file",
        "tls_key": "tls_key_file",
        "tls_client_ca": "tls_client_ca_file",
    }
    for flag, name in flag_fields.items():
        value = getattr(args, flag)
        if value is not None:
            overrides[name] = value
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set needs NAME=VALUE, got {item!r}")
        overrides[name.strip()] = coerce_value(name.strip(), value)
    return from_env(**overrides)


def _banner(server: SandboxServer) -> str:
    cfg = server.sandbox.config
    url = server.base_url
    budget = f"{cfg.zerotrace_rate_limit_weight} weight / {cfg.zerotrace_rate_limit_window:g} s"
    return f"""\
order-worker sandbox listening on {url}
  0trace API : {url}/api/v1/          (budget {budget})
  itrx API   : {url}/api/v1/frontend/
  control    : {url}/_sandbox/        (stats, orders, drive, faults, clock, reset)
  speed      : x{cfg.speed:g}; 0trace scenario {cfg.zerotrace_scenario}, itrx scenario {cfg.itrx_scenario}
  webhooks   : 0trace -> {cfg.zerotrace_webhook_url or "(none configured)"}; itrx default -> \
{cfg.itrx_default_callback_url or "(order callback_url only)"}
development credentials (public; never use them against a real partner):
  0trace apiKey        {cfg.zerotrace_api_key}
  0trace apiSecret     {cfg.zerotrace_api_secret}
  0trace webhookSecret {cfg.zerotrace_webhook_secret}
  itrx API-KEY         {cfg.itrx_api_key}
  itrx API secret      {cfg.itrx_api_secret}
"""


async def _serve(server: SandboxServer, quiet: bool) -> None:
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    text = f"order-worker sandbox listening on {server.base_url}\n" if quiet else _banner(server)
    sys.stdout.write(text)
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list_settings:
        print(_list_settings())
        return 0
    try:
        config = build_config(args)
    except ValueError as exc:
        parser.error(str(exc))
    server = SandboxServer(config)
    if args.uvloop:
        try:
            uvloop = importlib.import_module("uvloop")  # optional accelerator, not a dependency
        except ImportError:
            print("uvloop is not installed; using asyncio's default loop", file=sys.stderr)
        else:
            uvloop.install()
    try:
        asyncio.run(_serve(server, args.quiet))
    except OSError as exc:
        print(f"sandbox: cannot serve on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
