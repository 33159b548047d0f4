"""itrx energy API handlers (``/api/v1/frontend/...``).

Signed POSTs check, in order (messages are ours; the real texts are not documented):

* ``API-KEY`` missing or unknown -> 400 ``{"detail": "API not found"}`` (the documented example);
* ``TIMESTAMP`` or ``SIGNATURE`` missing -> 400 ``{"detail": "Missing TIMESTAMP or SIGNATURE header"}``;
* ``TIMESTAMP`` not decimal seconds, or more than ``itrx_timestamp_tolerance`` (default 300) whole real
  seconds away from now (either direction) -> 400 ``{"detail": "Timestamp expired"}``;
* signature mismatch (see ``itrx_signature_mode``) -> 400 ``{"detail": "Signature verification failed"}``;
* body not a JSON object / not application/json -> 400 ``{"detail": ...}``;
* bad fields -> 400 field map, DRF style (``{"field": ["reason", ...]}``, all failing fields at once);
* business refusals (balance, unactivated address, strict duplicate out_trade_no) -> 200 ``errno: 1``.

GETs need only ``API-KEY``. A wrong key gives 400 ``API not found`` on order/query and order/price,
``{}`` on index-data ("empty data", as documented) and 403 on userapi/summary (as documented).
There is no replay protection beyond the timestamp window, like the real API as far as documented.

Field types are strict: ``energy_amount``, ``active`` and ``exclusive`` must be JSON integers (a string
``"32000"`` is refused, because it changes the signed bytes), strings must be strings, nulls are refused.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from order_worker_sandbox.addresses import is_tron_address
from order_worker_sandbox.itrx_orders import (
    ACTIVATION_FEE_SUN,
    CN_TZ,
    PERIODS,
    SMALL_ADDITION_SUN,
    SMALL_AMOUNT,
    TIERED_PRICE_SUN,
    ItrxBook,
    price_sun,
)
from order_worker_sandbox.responses import JSON_TYPE, itrx_detail, itrx_fields, json_response
from order_worker_sandbox.signing import itrx_verify

if TYPE_CHECKING:
    from order_worker_sandbox.core import Sandbox

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_URL_RE = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)
_DIGITS = re.compile(r"^[0-9]{1,12}$")
USDT_ENERGY_NEW = 65_000
USDT_ENERGY_OLD = 32_000


class ItrxApi:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox

    @property
    def book(self) -> ItrxBook:
        return self.sb.itrx

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        p = "/api/v1/frontend"
        return [
            ("POST", p + "/order", "itrx.order", self.order),
            ("GET", p + "/order/query", "itrx.order_query", self.query),
            ("GET", p + "/order/price", "itrx.order_price", self.price),
            ("GET", p + "/index-data", "itrx.index_data", self.index_data),
            ("GET", p + "/userapi/summary", "itrx.summary", self.summary),
            ("POST", p + "/order/reclaim", "itrx.reclaim", self.reclaim),
        ]

    def _key_ok(self, request: web.Request) -> bool:
        return request.headers.get("API-KEY") == self.sb.config.itrx_api_key

    async def _signed(self, request: web.Request) -> dict[str, Any] | web.Response:
        """Authenticate a signed POST and return its JSON object, or the error response."""
        cfg = self.sb.config
        fails = self.sb.stats.auth_failures
        body = await request.read()
        if not self._key_ok(request):
            fails["itrx.unknown_key"] += 1
            return itrx_detail("API not found")
        ts = request.headers.get("TIMESTAMP")
        sig = request.headers.get("SIGNATURE")
        if not ts or not sig:
            fails["itrx.missing_headers"] += 1
            return itrx_detail("Missing TIMESTAMP or SIGNATURE header")
        # Whole seconds on both sides, as the header is: a request stamped exactly 300 s ago still passes.
        if not _DIGITS.match(ts) or abs(int(time.time()) - int(ts)) > cfg.itrx_timestamp_tolerance:
            fails["itrx.stale_timestamp"] += 1
            return itrx_detail("Timestamp expired")
        form = itrx_verify(body, ts, cfg.itrx_api_secret, sig, cfg.itrx_signature_mode)
        if form is None:
            fails["itrx.bad_signature"] += 1
            self.sb.stats.signature_failures["itrx"] += 1
            return itrx_detail("Signature verification failed")
        self.sb.stats.signature_forms[form] += 1
        if cfg.require_json_content_type:
            ctype = request.headers.get("Content-Type", "")
            if ctype.split(";", 1)[0].strip().lower() != JSON_TYPE:
                return itrx_detail(f'Unsupported media type "{ctype}" in request.')
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return itrx_detail("JSON parse error")
        if not isinstance(data, dict):
            return itrx_detail("Invalid data. Expected a dictionary.")
        return data

    # --- POST /order --------------------------------------------------------------------------------------

    async def order(self, request: web.Request) -> web.StreamResponse:
        data = await self._signed(request)
        if isinstance(data, web.Response):
            return data
        cfg = self.sb.config
        errors: dict[str, list[str]] = {}
        energy = _int_field(data, "energy_amount", errors, required=True)
        if energy is not None:
            if energy < cfg.itrx_min_energy:
                errors["energy_amount"] = [
                    f"Ensure this value is greater than or equal to {cfg.itrx_min_energy}."
                ]
            elif energy > cfg.itrx_max_energy:
                errors["energy_amount"] = [
                    f"Ensure this value is less than or equal to {cfg.itrx_max_energy}."
                ]
        period = _period_field(data.get("period"), "period" in data, errors)
        address = _str_field(data, "receive_address", errors, required=True, max_len=64)
        if address is not None and not is_tron_address(address):
            errors["receive_address"] = ["Invalid TRON address."]
        active = _int_field(data, "active", errors, required=False)
        if active is not None and active < 0:
            errors["active"] = ["Ensure this value is greater than or equal to 0."]
        exclusive = _int_field(data, "exclusive", errors, required=False)
        if exclusive is not None and exclusive not in (0, 1):
            errors["exclusive"] = [f'"{exclusive}" is not a valid choice.']
        callback_url = _str_field(data, "callback_url", errors, required=False, max_len=512)
        if callback_url is not None and not _URL_RE.match(callback_url):
            errors["callback_url"] = ["Enter a valid URL."]
        out_trade_no = _str_field(data, "out_trade_no", errors, required=False, max_len=64)
        if errors:
            return itrx_fields(errors)
        assert energy is not None and period is not None and address is not None
        if (
            cfg.itrx_strict_out_trade_no
            and out_trade_no is not None
            and any(o.out_trade_no == out_trade_no for o in self.book.orders.values())
        ):
            return json_response({"errno": 1, "message": "Duplicate out_trade_no"})
        _, cost, _ = price_sun(energy, period)
        if not self.book.is_activated(address):
            if not active:
                return json_response({"errno": 1, "message": "The receive address is not activated"})
            cost += ACTIVATION_FEE_SUN
        if cost > self.book.balance:
            return json_response({"errno": 1, "message": "Insufficient balance"})
        if not self.book.is_activated(address):
            self.book.activated_extra.add(address)
        order = self.book.create(
            receive_address=address,
            energy=energy,
            period=period,
            cost=cost,
            callback_url=callback_url,
            out_trade_no=out_trade_no,
            active=active,
            exclusive=exclusive,
        )
        return json_response(
            {"errno": 0, "serial": order.serial, "amount": cost, "balance": self.book.balance}
        )

    async def reclaim(self, request: web.Request) -> web.StreamResponse:
        data = await self._signed(request)
        if isinstance(data, web.Response):
            return data
        serial = data.get("serial")
        order = self.book.orders.get(serial) if isinstance(serial, str) else None
        if order is None:
            return json_response({"errno": 404, "message": "Order not found"})
        self.book.reclaim(order)
        return json_response({"errno": 0, "message": "request accept"})

    # --- GETs ---------------------------------------------------------------------------------------------

    async def query(self, request: web.Request) -> web.StreamResponse:
        if not self._key_ok(request):
            self.sb.stats.auth_failures["itrx.unknown_key"] += 1
            return itrx_detail("API not found")
        serial = request.query.get("serial")
        if not serial:
            return itrx_fields({"serial": ["This field is required."]})
        order = self.book.orders.get(serial)
        if order is None:
            return json_response({"errno": 404, "message": "Order not found"})
        return json_response(order.query(self.sb.config.itrx_api_name))

    async def price(self, request: web.Request) -> web.StreamResponse:
        if not self._key_ok(request):
            self.sb.stats.auth_failures["itrx.unknown_key"] += 1
            return itrx_detail("API not found")
        cfg = self.sb.config
        q = request.query
        errors: dict[str, list[str]] = {}
        period = _period_field(q.get("period"), "period" in q, errors)
        energy: int | None = None
        raw_energy = q.get("energy_amount")
        if raw_energy is not None:
            if not re.fullmatch(r"[0-9]{1,12}", raw_energy):
                errors["energy_amount"] = ["A valid integer is required."]
            elif int(raw_energy) < cfg.itrx_min_energy:
                errors["energy_amount"] = [
                    f"Ensure this value is greater than or equal to {cfg.itrx_min_energy}."
                ]
            elif int(raw_energy) > cfg.itrx_max_energy:
                errors["energy_amount"] = [
                    f"Ensure this value is less than or equal to {cfg.itrx_max_energy}."
                ]
            else:
                energy = int(raw_energy)
        to_address = q.get("to_address")
        if to_address is not None and not is_tron_address(to_address):
            errors["to_address"] = ["Invalid TRON address."]
        if errors:
            return itrx_fields(errors)
        assert period is not None
        if energy is None:
            energy = USDT_ENERGY_NEW  # estimate for one USDT transfer to a fresh holder
        unit, total, addition = price_sun(energy, period)
        return json_response(
            {
                "period": period,
                "energy_amount": energy,
                "price": unit,
                "total_price": total,
                "addition": addition,
            }
        )

    async def index_data(self, request: web.Request) -> web.StreamResponse:
        if not self._key_ok(request):
            self.sb.stats.auth_failures["itrx.unknown_key"] += 1
            return json_response({})
        cfg = self.sb.config
        return json_response(
            {
                "platform_avail_energy": 1_200_000_000,
                "platform_max_energy": 400_000_000,
                "minimum_order_energy": cfg.itrx_min_energy,
                "maximum_order_energy": cfg.itrx_max_energy,
                "small_amount": SMALL_AMOUNT,
                "small_addition": SMALL_ADDITION_SUN / 1_000_000,
                "usdt_energy_need_old": USDT_ENERGY_OLD,
                "usdt_energy_need_new": USDT_ENERGY_NEW,
                "tiered_pricing": [{"period": p, "price": v} for p, v in TIERED_PRICE_SUN.items()],
                "balance": self.book.balance,
            }
        )

    async def summary(self, request: web.Request) -> web.StreamResponse:
        if not self._key_ok(request):
            self.sb.stats.auth_failures["itrx.unknown_key"] += 1
            return itrx_detail("API not found", 403)
        now = self.sb.clock.now()
        today = datetime.fromtimestamp(now, CN_TZ).date()
        buckets: dict[str, list[int]] = {"total": [0, 0, 0], "today": [0, 0, 0], "yesterday": [0, 0, 0]}
        for o in self.book.orders.values():
            day = datetime.fromtimestamp(o.created, CN_TZ).date()
            names = ["total"]
            if day == today:
                names.append("today")
            elif (today - day).days == 1:
                names.append("yesterday")
            for name in names:
                b = buckets[name]
                b[0] += 1
                b[1] += o.energy_amount
                b[2] += o.amount - o.refund_amount
        out: dict[str, Any] = {
            "name": self.sb.config.itrx_api_name,
            "create_time": datetime.fromtimestamp(self.sb.started_at, CN_TZ).strftime("%Y-%m-%d %H:%M:%S"),
        }
        for name, (count, energy, trx) in buckets.items():
            out[f"{name}_count"] = count
            out[f"{name}_sum_energy"] = energy
            out[f"{name}_sum_trx"] = trx
        return json_response(out)


def _int_field(
    data: dict[str, Any], name: str, errors: dict[str, list[str]], *, required: bool
) -> int | None:
    if name not in data:
        if required:
            errors[name] = ["This field is required."]
        return None
    value = data[name]
    if value is None:
        errors[name] = ["This field may not be null."]
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        errors[name] = ["A valid integer is required."]
        return None
    return value


def _str_field(
    data: dict[str, Any], name: str, errors: dict[str, list[str]], *, required: bool, max_len: int
) -> str | None:
    if name not in data:
        if required:
            errors[name] = ["This field is required."]
        return None
    value = data[name]
    if value is None:
        errors[name] = ["This field may not be null."]
        return None
    if not isinstance(value, str):
        errors[name] = ["Not a valid string."]
        return None
    if not value.strip():
        errors[name] = ["This field may not be blank."]
        return None
    if len(value) > max_len:
        errors[name] = [f"Ensure this field has no more than {max_len} characters."]
        return None
    return value


def _period_field(value: object, present: bool, errors: dict[str, list[str]]) -> int | None:
    if not present:
        errors["period"] = ["This field is required."]
        return None
    if not isinstance(value, str) or value not in PERIODS:
        errors["period"] = [f'"{value}" is not a valid choice.']
        return None
    return PERIODS[value]
