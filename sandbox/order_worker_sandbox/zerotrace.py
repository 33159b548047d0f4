"""0trace Partner API handlers (``/api/v1/...``): authentication, budgets, validation, responses.

Check order on authenticated calls, each failure answering the documented envelope:

1. ``X-API-KEY`` or ``X-API-SIGN`` missing/empty -> 2/401; ``X-API-NONCE`` missing -> 3/401;
2. nonce outside 16..64 chars or outside ``[A-Za-z0-9_-]`` (alphabet not documented; hex, UUIDs and
   base64url pass) -> 3/401;
3. unknown key, wrong signature (exact lower-case hex over the raw body bytes) -> 3/401;
4. nonce seen in the last 5 minutes (real time) -> 3/401; nonces are recorded only once the signature
   is valid, so forged requests cannot burn a partner's nonces;
5. unknown/disabled/foreign reference code after the first ``.`` of the key -> 3/401 (not documented;
   the spec's inference);
6. partner disabled -> 4/401;
7. weight budget -> 5/429 with ``Retry-After`` (charged once authenticated, so 4xx validation failures
   and idempotent replays also cost weight — the conservative reading);
8. body checks -> 1/400 (409 for an Idempotency-Key reused with another body).

On the optional-auth endpoints (currencies, pairs, price) a request with *no* auth header is anonymous
and free; one with *any* auth header must authenticate fully (undocumented; the strict choice).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aiohttp import web

from order_worker_sandbox.addresses import valid_for_network
from order_worker_sandbox.market import Asset, Quote, parse_amount, price_data, quote
from order_worker_sandbox.qr import png_data_url
from order_worker_sandbox.responses import JSON_TYPE, zt_error, zt_ok
from order_worker_sandbox.signing import canonical_json, zerotrace_verify
from order_worker_sandbox.zerotrace_orders import Partner, RefCode, ZeroTraceBook, ZtOrder

if TYPE_CHECKING:
    from order_worker_sandbox.core import Sandbox

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

WEIGHTS = {
    "0trace.currencies": 1,
    "0trace.pairs": 1,
    "0trace.price": 1,
    "0trace.create": 50,
    "0trace.order": 1,
    "0trace.emergency": 1,
    "0trace.qr": 5,
    "0trace.keys_rotate": 1,
    "0trace.codes": 1,
    "0trace.codes_enable": 1,
}
_NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_CODE_RE = re.compile(r"^[A-Za-z0-9_-]{4,32}$")
_ROTATABLE = ("apiSecret", "webhookSecret")


class _Invalid(Exception):
    """Body validation failure -> ``1 INVALID_REQUEST`` (HTTP 400 unless stated)."""

    def __init__(self, why: str, http_status: int = 400) -> None:
        super().__init__(why)
        self.http_status = http_status


Auth = tuple[Partner, RefCode | None]


class ZeroTraceApi:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox

    @property
    def book(self) -> ZeroTraceBook:
        return self.sb.zerotrace

    def routes(self) -> list[tuple[str, str, str, Handler]]:
        return [
            ("POST", "/api/v1/currencies", "0trace.currencies", self.currencies),
            ("POST", "/api/v1/pairs", "0trace.pairs", self.pairs),
            ("POST", "/api/v1/price", "0trace.price", self.price),
            ("POST", "/api/v1/create", "0trace.create", self.create),
            ("POST", "/api/v1/order", "0trace.order", self.order),
            ("POST", "/api/v1/emergency", "0trace.emergency", self.emergency),
            ("POST", "/api/v1/qr", "0trace.qr", self.qr),
            ("POST", "/api/v1/keys/rotate", "0trace.keys_rotate", self.rotate),
            ("POST", "/api/v1/codes", "0trace.codes", self.codes_create),
            ("GET", "/api/v1/codes", "0trace.codes", self.codes_list),
            ("DELETE", "/api/v1/codes", "0trace.codes", self.codes_delete),
            ("POST", "/api/v1/codes/enable", "0trace.codes_enable", self.codes_enable),
        ]

    # --- auth ---------------------------------------------------------------------------------------

    def _auth(self, request: web.Request, body: bytes, *, required: bool) -> Auth | web.Response | None:
        h = request.headers
        key_header = h.get("X-API-KEY")
        sign = h.get("X-API-SIGN")
        nonce = h.get("X-API-NONCE")
        if not required and key_header is None and sign is None and nonce is None:
            return None
        fails = self.sb.stats.auth_failures
        if not key_header or not sign:
            fails["0trace.missing_key_or_sign"] += 1
            return zt_error(2, 401)
        if nonce is None:
            fails["0trace.missing_nonce"] += 1
            return zt_error(3, 401)
        if not _NONCE_RE.match(nonce):
            fails["0trace.bad_nonce"] += 1
            return zt_error(3, 401)
        key, _, code = key_header.partition(".")
        partner = self.book.partners.get(key)
        if partner is None:
            fails["0trace.unknown_key"] += 1
            return zt_error(3, 401)
        if not zerotrace_verify(body, partner.api_secret, sign):
            fails["0trace.bad_signature"] += 1
            self.sb.stats.signature_failures["0trace"] += 1
            return zt_error(3, 401)
        if not partner.nonces.check_and_add(nonce):
            fails["0trace.nonce_reused"] += 1
            return zt_error(3, 401)
        ref: RefCode | None = None
        if code or "." in key_header:
            ref = partner.codes.get(code)
            if ref is None or not ref.enabled:
                fails["0trace.bad_code"] += 1
                return zt_error(3, 401)
        if not partner.enabled:
            fails["0trace.partner_disabled"] += 1
            return zt_error(4, 401)
        return partner, ref

    def _charge(self, partner: Partner, endpoint: str) -> web.Response | None:
        retry_after = partner.window.take(WEIGHTS[endpoint])
        stats = self.sb.stats
        if retry_after is None:
            stats.weight_by_key[partner.api_key] += WEIGHTS[endpoint]
            peak = stats.peak_weight_by_key
            peak[partner.api_key] = max(peak.get(partner.api_key, 0), partner.window.used)
            return None
        stats.rate_limited[endpoint] += 1
        stats.rate_limited_by_key[partner.api_key] += 1
        return zt_error(5, 429, {"Retry-After": str(retry_after)})

    async def _enter(
        self, request: web.Request, endpoint: str, *, required: bool = True
    ) -> tuple[bytes, Auth | None] | web.Response:
        body = await request.read()
        auth = self._auth(request, body, required=required)
        if isinstance(auth, web.Response):
            return auth
        if auth is not None:
            limited = self._charge(auth[0], endpoint)
            if limited is not None:
                return limited
        return body, auth

    def _json_object(self, request: web.Request, body: bytes, *, allow_empty: bool = False) -> dict[str, Any]:
        if allow_empty and not body:
            return {}
        if self.sb.config.require_json_content_type:
            ctype = request.headers.get("Content-Type", "")
            if ctype.split(";", 1)[0].strip().lower() != JSON_TYPE:
                raise _Invalid("Content-Type must be application/json")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise _Invalid("body is not JSON") from None
        if not isinstance(data, dict):
            raise _Invalid("body must be a JSON object")
        return data

    # --- catalog and quotes -----------------------------------------------------------------------------

    async def currencies(self, request: web.Request) -> web.StreamResponse:
        entered = await self._enter(request, "0trace.currencies", required=False)
        if isinstance(entered, web.Response):
            return entered
        try:
            self._json_object(request, entered[0], allow_empty=entered[1] is None)
        except _Invalid as exc:
            return zt_error(1, exc.http_status)
        return zt_ok([a.catalog_entry() for a in self.book.assets.values() if a.enabled])

    async def pairs(self, request: web.Request) -> web.StreamResponse:
        entered = await self._enter(request, "0trace.pairs", required=False)
        if isinstance(entered, web.Response):
            return entered
        try:
            self._json_object(request, entered[0], allow_empty=entered[1] is None)
        except _Invalid as exc:
            return zt_error(1, exc.http_status)
        live = [a for a in self.book.assets.values() if a.enabled]
        data = [
            {
                "from": s.code,
                "to": d.code,
                "fromNetwork": s.network,
                "toNetwork": d.network,
                "rateTypes": ["FLOAT"],
            }
            for s in live
            for d in live
            if s.code != d.code and d.send
        ]
        resp = zt_ok(data)
        resp.headers["Cache-Control"] = "no-store"
        return resp

    def _trade(self, data: dict[str, Any], auth: Auth | None) -> tuple[Asset, Asset, str, Decimal, int]:
        """Validate the fields price and create share; returns (src, dst, direction, amount, markup)."""
        if data.get("type") != "float":
            raise _Invalid("type")
        src = self.book.assets.get(_text(data.get("fromCcy")))
        dst = self.book.assets.get(_text(data.get("toCcy")))
        if src is None or dst is None or not src.enabled or not dst.enabled or src is dst or not dst.send:
            raise _Invalid("pair")
        for key, asset in (("fromNetwork", src), ("toNetwork", dst)):
            if key in data and data[key] is not None and data[key] != asset.network:
                raise _Invalid(key)
        direction = data.get("direction")
        if direction not in ("from", "to"):
            raise _Invalid("direction")
        amount = parse_amount(data.get("amount"))
        if amount is None:
            raise _Invalid("amount")
        afftax = data.get("afftax")
        if afftax is not None and (
            isinstance(afftax, bool) or not isinstance(afftax, int) or not 0 <= afftax <= 2000
        ):
            raise _Invalid("afftax")
        if auth is None:
            markup = 0
        elif afftax is not None:
            markup = afftax
        elif auth[1] is not None and auth[1].afftax_bps > 0:
            markup = auth[1].afftax_bps
        else:
            markup = auth[0].markup_bps
        return src, dst, direction, amount, markup

    def _quote(self, data: dict[str, Any], auth: Auth | None) -> Quote:
        src, dst, direction, amount, markup = self._trade(data, auth)
        lo, hi = self.book.usd_bounds()
        return quote(src, dst, direction, amount, markup, self.sb.config.zerotrace_base_fee_bps, lo, hi)

    async def price(self, request: web.Request) -> web.StreamResponse:
        entered = await self._enter(request, "0trace.price", required=False)
        if isinstance(entered, web.Response):
            return entered
        body, auth = entered
        try:
            q = self._quote(self._json_object(request, body), auth)
        except _Invalid as exc:
            return zt_error(1, exc.http_status)
        lo, hi = self.book.usd_bounds()
        return zt_ok(price_data(q, lo, hi))

    # --- orders -------------------------------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.StreamResponse:
        entered = await self._enter(request, "0trace.create")
        if isinstance(entered, web.Response):
            return entered
        body, auth = entered
        assert auth is not None
        partner, ref = auth
        key = request.headers.get("Idempotency-Key")
        try:
            if key is not None and not 8 <= len(key) <= 128:
                raise _Invalid("Idempotency-Key length")
            data = self._json_object(request, body)
            fingerprint = self._fingerprint(body, data, ref)
            if key is not None and key in partner.idempotency:
                seen_fp, order_id = partner.idempotency[key]
                if not secrets.compare_digest(seen_fp, fingerprint):
                    raise _Invalid("Idempotency-Key reused with another body", 409)
                order = self.book.orders[order_id]
                return zt_ok({**order.dto(self.sb.clock.now()), "token": None})
            q = self._quote(data, auth)
            if q.errors:
                raise _Invalid("amount outside the USD bounds")
            to_address = data.get("toAddress")
            refund = data.get("refundAddress")
            strict = self.sb.config.zerotrace_address_check == "strict"
            if not valid_for_network(q.dst.network, to_address, strict=strict):
                raise _Invalid("toAddress")
            if not valid_for_network(q.src.network, refund, strict=strict):
                raise _Invalid("refundAddress")
            tag = data.get("tag")
            if tag is not None and (not isinstance(tag, str) or len(tag) > 100):
                raise _Invalid("tag")
        except _Invalid as exc:
            return zt_error(1, exc.http_status)
        assert isinstance(to_address, str) and isinstance(refund, str)
        order, token = self.book.create(partner, q, to_address, refund, key, ref.code if ref else None)
        if key is not None:
            partner.idempotency[key] = (fingerprint, order.id)
        shown = None if self.sb.config.zerotrace_token_withheld else token
        return zt_ok({**order.dto(self.sb.clock.now()), "token": shown})

    def _fingerprint(self, body: bytes, data: dict[str, Any], ref: RefCode | None) -> bytes:
        material = body if self.sb.config.zerotrace_idempotency_compare == "bytes" else canonical_json(data)
        prefix = (ref.code if ref else "").encode("utf-8") + b"\x00"
        return hashlib.sha256(prefix + material).digest()

    async def _find_order(
        self, request: web.Request, endpoint: str
    ) -> tuple[ZtOrder, dict[str, Any]] | web.Response:
        """The shared entry of every call that names one order by id and token (order, emergency, qr):
        a wrong id, owner or token is one indistinguishable 404, as the spec requires."""
        entered = await self._enter(request, endpoint)
        if isinstance(entered, web.Response):
            return entered
        body, auth = entered
        assert auth is not None
        try:
            data = self._json_object(request, body)
        except _Invalid as exc:
            return zt_error(1, exc.http_status)
        order = self.book.find(auth[0], data.get("id"), data.get("token"))
        if order is None:
            return zt_error(6, 404)
        return order, data

    async def order(self, request: web.Request) -> web.StreamResponse:
        found = await self._find_order(request, "0trace.order")
        if isinstance(found, web.Response):
            return found
        order, _data = found
        return zt_ok(order.dto(self.sb.clock.now()))

    async def emergency(self, request: web.Request) -> web.StreamResponse:
        found = await self._find_order(request, "0trace.emergency")
        if isinstance(found, web.Response):
            return found
        order, data = found
        if data.get("choice") != "EXCHANGE":
            return zt_error(12, 400)
        if order.status != "EMERGENCY":
            # Not documented; refusing keeps a worker from relying on a no-op.
            return zt_error(1, 400)
        if order.emergency_choice != "EXCHANGE":
            self.book.choose_exchange(order)
        return zt_ok(True)

    async def qr(self, request: web.Request) -> web.StreamResponse:
        found = await self._find_order(request, "0trace.qr")
        if isinstance(found, web.Response):
            return found
        order, _data = found
        if order.qr_cache is None:
            order.qr_cache = png_data_url(order.payin)
        return zt_ok({"qrPng": order.qr_cache})

    # --- keys and codes ----------------------------------------------------------------------------------

    async def rotate(self, request: web.Request) -> web.StreamResponse:
        entered = await self._enter(request, "0trace.keys_rotate")
        if isinstance(entered, web.Response):
            return entered
        body, auth = entered
        assert auth is not None
        partner = auth[0]
        try:
            data = self._json_object(request, body)
            what = data.get("rotate")
            if (
                not isinstance(what, list)
                or not 1 <= len(what) <= 2
                or len(set(map(str, what))) != len(what)
                or any(w not in _ROTATABLE for w in what)
            ):
                raise _Invalid("rotate")
        except _Invalid as exc:
            return zt_error(1, exc.http_status)
        out: dict[str, str] = {}
        if "apiSecret" in what:
            out["apiSecret"] = "sk_" + secrets.token_urlsafe(32)
            partner.set_api_secret(out["apiSecret"])
        if "webhookSecret" in what:
            out["webhookSecret"] = "whsec_" + secrets.token_urlsafe(32)
            partner.webhook_secret = out["webhookSecret"]
        return zt_ok(out)

    async def _codes_enter(self, request: web.Request, endpoint: str) -> tuple[bytes, Partner] | web.Response:
        entered = await self._enter(request, endpoint)
        if isinstance(entered, web.Response):
            return entered
        body, auth = entered
        assert auth is not None
        if auth[1] is not None:
            # Codes are managed with the plain top-level key (spec §8.9); a suffixed key is refused.
            self.sb.stats.auth_failures["0trace.code_suffix_on_codes"] += 1
            return zt_error(3, 401)
        return body, auth[0]

    async def codes_create(self, request: web.Request) -> web.StreamResponse:
        entered = await self._codes_enter(request, "0trace.codes")
        if isinstance(entered, web.Response):
            return entered
        body, partner = entered
        try:
            data = self._json_object(request, body)
            code = data.get("code")
            if not isinstance(code, str) or not _CODE_RE.match(code) or code in partner.codes:
                raise _Invalid("code")
            label = data.get("label")
            if label is not None and (not isinstance(label, str) or len(label) > 64):
                raise _Invalid("label")
            if isinstance(label, str) and not label.strip():
                label = None
            afftax = data.get("afftaxBps", 0)
            if isinstance(afftax, bool) or not isinstance(afftax, int) or not 0 <= afftax <= 2000:
                raise _Invalid("afftaxBps")
            if len(partner.codes) >= self.sb.config.zerotrace_max_codes:
                raise _Invalid("code cap")
        except _Invalid as exc:
            return zt_error(1, exc.http_status)
        return zt_ok(self.book.add_code(partner, code, label, afftax).to_json())

    async def codes_list(self, request: web.Request) -> web.StreamResponse:
        entered = await self._codes_enter(request, "0trace.codes")
        if isinstance(entered, web.Response):
            return entered
        codes = sorted(entered[1].codes.values(), key=lambda c: c.seq, reverse=True)[:100]
        return zt_ok([c.to_json() for c in codes])

    async def codes_delete(self, request: web.Request) -> web.StreamResponse:
        entered = await self._codes_enter(request, "0trace.codes")
        if isinstance(entered, web.Response):
            return entered
        body, partner = entered
        try:
            code = self._json_object(request, body).get("code")
        except _Invalid as exc:
            return zt_error(1, exc.http_status)
        if not isinstance(code, str) or partner.codes.pop(code, None) is None:
            return zt_error(6, 404)
        return zt_ok(True)

    async def codes_enable(self, request: web.Request) -> web.StreamResponse:
        """Contract not documented; ours: POST ``{"code": str, "enabled": bool}`` -> the code object."""
        entered = await self._codes_enter(request, "0trace.codes_enable")
        if isinstance(entered, web.Response):
            return entered
        body, partner = entered
        try:
            data = self._json_object(request, body)
            enabled = data.get("enabled")
            if not isinstance(enabled, bool):
                raise _Invalid("enabled")
        except _Invalid as exc:
            return zt_error(1, exc.http_status)
        ref = partner.codes.get(_text(data.get("code")))
        if ref is None:
            return zt_error(6, 404)
        ref.enabled = enabled
        return zt_ok(ref.to_json())


def _text(value: object) -> str:
    """A JSON string field, or "" for anything else (never a valid asset or code, so it fails lookups)."""
    return value if isinstance(value, str) else ""
