"""The control API under ``/_sandbox/``: time, driving orders, faults, delivery settings, ledger, stats.

It lives off the partner paths so a worker pointed at the sandbox can never hit it by accident, and it
is unauthenticated because it only ever binds where the sandbox binds (loopback by default). Errors are
``{"error": "<why>"}`` with HTTP 400 (bad input) or 404 (unknown order/rule). Shapes are listed in the
package docstring.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from aiohttp import web

from order_worker_sandbox.responses import json_response

if TYPE_CHECKING:
    from order_worker_sandbox.core import Sandbox

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
WEBHOOK_FIELDS = (
    "zerotrace_webhook_url",
    "zerotrace_webhook_schedule",
    "itrx_default_callback_url",
    "itrx_callback_schedule",
    "itrx_callback_on",
    "delivery_timeout",
)


class _BadRequest(Exception):
    pass


def _error(why: str, status: int = 400) -> web.Response:
    return json_response({"error": why}, status)


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise _BadRequest("body is not JSON") from None
    if not isinstance(data, dict):
        raise _BadRequest("body must be a JSON object")
    return data


def _guard(fn: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await fn(request)
        except (_BadRequest, ValueError) as exc:
            return _error(str(exc))

    return wrapped


class ControlApi:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox

    def routes(self) -> list[tuple[str, str, Handler]]:
        p = "/_sandbox"
        table: list[tuple[str, str, Handler]] = [
            ("GET", p + "/ping", self.ping),
            ("GET", p + "/clock", self.clock),
            ("POST", p + "/clock", self.set_clock),
            ("POST", p + "/drive", self.drive),
            ("GET", p + "/faults", self.faults),
            ("POST", p + "/faults", self.add_fault),
            ("DELETE", p + "/faults", self.clear_faults),
            ("DELETE", p + "/faults/{rule_id}", self.remove_fault),
            ("GET", p + "/webhooks", self.webhooks),
            ("POST", p + "/webhooks", self.set_webhooks),
            ("GET", p + "/deliveries", self.deliveries),
            ("GET", p + "/orders", self.orders),
            ("GET", p + "/orders/{provider}/{ref}", self.order),
            ("GET", p + "/stats", self.stats),
            ("POST", p + "/reset", self.reset),
            ("GET", p + "/config", self.config),
            ("POST", p + "/config", self.set_config),
            ("POST", p + "/assets", self.set_asset),
        ]
        return [(m, path, _guard(h)) for m, path, h in table]

    async def ping(self, request: web.Request) -> web.StreamResponse:
        return json_response({"ok": True})

    def _clock_json(self) -> dict[str, Any]:
        return {
            "now": self.sb.clock.now(),
            "speed": self.sb.clock.speed,
            "pending_timers": len(self.sb.scheduler),
        }

    async def clock(self, request: web.Request) -> web.StreamResponse:
        return json_response(self._clock_json())

    async def set_clock(self, request: web.Request) -> web.StreamResponse:
        """``{"speed": f}`` and/or ``{"advance": sandbox_seconds}``; due timers fire before the answer."""
        data = await _body(request)
        if "speed" in data:
            self.sb.patch_config({"speed": data["speed"]})
        if "advance" in data:
            advance = data["advance"]
            if isinstance(advance, bool) or not isinstance(advance, int | float) or advance < 0:
                raise _BadRequest("advance must be a number >= 0")
            self.sb.clock.advance(float(advance))
        self.sb.scheduler.run_due()
        self.sb.scheduler.poke()
        return json_response(self._clock_json())

    async def drive(self, request: web.Request) -> web.StreamResponse:
        data = await _body(request)
        provider = data.get("provider")
        if provider == "0trace":
            order = self.sb.zerotrace.orders.get(str(data.get("id")))
            if order is None:
                return _error("unknown 0trace order id", 404)
            emergency_status = data.get("emergency_status")
            if emergency_status is not None and (
                not isinstance(emergency_status, list)
                or not all(isinstance(s, str) for s in emergency_status)
            ):
                raise _BadRequest("emergency_status must be a list of strings")
            path = self.sb.zerotrace.drive(
                order,
                str(data.get("status")),
                direct=bool(data.get("direct", False)),
                force=bool(data.get("force", False)),
                resume=bool(data.get("resume", False)),
                emergency_status=emergency_status,
                refund=bool(data.get("refund", False)),
            )
            return json_response({"provider": "0trace", "id": order.id, "status": order.status, "path": path})
        if provider == "itrx":
            itrx_order = self.sb.itrx.orders.get(str(data.get("serial")))
            if itrx_order is None:
                return _error("unknown itrx serial", 404)
            status = data.get("status")
            refund = data.get("refund_amount")
            if isinstance(status, bool) or not isinstance(status, int):
                raise _BadRequest("status must be an integer")
            if refund is not None and (isinstance(refund, bool) or not isinstance(refund, int)):
                raise _BadRequest("refund_amount must be an integer")
            self.sb.itrx.drive(itrx_order, status, refund, bool(data.get("resume", False)))
            return json_response(
                {
                    "provider": "itrx",
                    "serial": itrx_order.serial,
                    "status": itrx_order.status,
                    "refund_amount": itrx_order.refund_amount,
                }
            )
        raise _BadRequest("provider must be '0trace' or 'itrx'")

    async def faults(self, request: web.Request) -> web.StreamResponse:
        return json_response([r.to_json() for r in self.sb.faults.rules()])

    async def add_fault(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.sb.faults.add(await _body(request)).to_json())

    async def clear_faults(self, request: web.Request) -> web.StreamResponse:
        return json_response({"removed": self.sb.faults.clear(request.query.get("endpoint"))})

    async def remove_fault(self, request: web.Request) -> web.StreamResponse:
        try:
            rule_id = int(request.match_info["rule_id"])
        except ValueError:
            raise _BadRequest("rule id must be an integer") from None
        if not self.sb.faults.remove(rule_id):
            return _error("unknown fault rule", 404)
        return json_response({"removed": 1})

    def _webhooks_json(self) -> dict[str, Any]:
        return {name: _jsonable(getattr(self.sb.config, name)) for name in WEBHOOK_FIELDS}

    async def webhooks(self, request: web.Request) -> web.StreamResponse:
        return json_response(self._webhooks_json())

    async def set_webhooks(self, request: web.Request) -> web.StreamResponse:
        data = await _body(request)
        unknown = set(data) - set(WEBHOOK_FIELDS)
        if unknown:
            raise _BadRequest(f"unknown fields {sorted(unknown)}; allowed: {list(WEBHOOK_FIELDS)}")
        self.sb.patch_config(data)
        return json_response(self._webhooks_json())

    async def deliveries(self, request: web.Request) -> web.StreamResponse:
        provider = request.query.get("provider")
        ref = request.query.get("ref")
        out = [
            d.to_json()
            for d in self.sb.deliverer.log()
            if (provider is None or d.provider == provider) and (ref is None or d.ref == ref)
        ]
        return json_response(out)

    async def orders(self, request: web.Request) -> web.StreamResponse:
        provider = request.query.get("provider")
        out: list[dict[str, Any]] = []
        if provider in (None, "0trace"):
            out += [o.ledger_entry() for o in self.sb.zerotrace.orders.values()]
        if provider in (None, "itrx"):
            out += [o.ledger_entry() for o in self.sb.itrx.orders.values()]
        out.sort(key=lambda e: e["created_at"])
        return json_response(out)

    async def order(self, request: web.Request) -> web.StreamResponse:
        provider, ref = request.match_info["provider"], request.match_info["ref"]
        if provider == "0trace" and ref in self.sb.zerotrace.orders:
            return json_response(self.sb.zerotrace.orders[ref].dto(self.sb.clock.now()))
        if provider == "itrx" and ref in self.sb.itrx.orders:
            return json_response(self.sb.itrx.orders[ref].query(self.sb.config.itrx_api_name))
        return _error("unknown order", 404)

    async def stats(self, request: web.Request) -> web.StreamResponse:
        data = self.sb.stats.to_json()
        data["orders"] = {"0trace": len(self.sb.zerotrace.orders), "itrx": len(self.sb.itrx.orders)}
        data["pending_deliveries"] = self.sb.deliverer.pending()
        data["scheduler_errors"] = list(self.sb.scheduler.errors)
        return json_response(data)

    async def reset(self, request: web.Request) -> web.StreamResponse:
        self.sb.reset()
        return json_response({"ok": True})

    def _config_json(self) -> dict[str, Any]:
        cfg = {k: _jsonable(v) for k, v in dataclasses.asdict(self.sb.config).items()}
        main = self.sb.zerotrace.partners[self.sb.zerotrace.primary_key]
        cfg["current_credentials"] = {
            "zerotrace_api_key": main.api_key,
            "zerotrace_api_secret": main.api_secret,
            "zerotrace_webhook_secret": main.webhook_secret,
            "itrx_api_key": self.sb.config.itrx_api_key,
            "itrx_api_secret": self.sb.config.itrx_api_secret,
        }
        cfg["itrx_balance_now"] = self.sb.itrx.balance
        return cfg

    async def config(self, request: web.Request) -> web.StreamResponse:
        return json_response(self._config_json())

    async def set_config(self, request: web.Request) -> web.StreamResponse:
        self.sb.patch_config(await _body(request))
        return json_response(self._config_json())

    async def set_asset(self, request: web.Request) -> web.StreamResponse:
        """``{"code": "btc", "usd": "60000", "enabled": bool, "send": bool}`` (all but code optional)."""
        data = await _body(request)
        asset = self.sb.zerotrace.assets.get(str(data.get("code")))
        if asset is None:
            return _error("unknown asset code", 404)
        if "usd" in data:
            try:
                usd = Decimal(str(data["usd"]))
            except InvalidOperation:
                raise _BadRequest("usd must be a decimal") from None
            if not usd.is_finite() or usd <= 0:
                raise _BadRequest("usd must be > 0")
            asset.usd = usd
        for flag in ("enabled", "send"):
            if flag in data:
                if not isinstance(data[flag], bool):
                    raise _BadRequest(f"{flag} must be a boolean")
                setattr(asset, flag, data[flag])
        return json_response({**asset.catalog_entry(), "usd": str(asset.usd), "enabled": asset.enabled})


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value
