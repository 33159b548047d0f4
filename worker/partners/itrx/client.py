"""itrx.io energy-rental client: place, query and price orders, read the balance, parse callbacks.

itrx ``POST /order`` is not idempotent (spec §8): ``out_trade_no`` is not checked for duplicates, so a
create whose answer was lost may have charged the account. This client therefore never retries and
reports every ambiguous outcome as ``Fate.UNKNOWN``; the actor turns that into ``in_doubt`` instead of
sending again. Only failures that prove nothing left (``NOT_SENT``) or that itrx answered with a
refusal (``REFUSED``) are safe to act on automatically.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlencode

from pydantic import SecretStr

from worker.messages import iso_from_epoch
from worker.partners.base import CreateResult, Fate, PartnerError, PartnerOrder, PartnerQuote
from worker.partners.itrx.params import ItrxParams, ItrxQuoteParams
from worker.partners.itrx.quotes import parse_quote
from worker.partners.itrx.signing import canonical_json, itrx_sign
from worker.partners.itrx.statuses import map_status
from worker.status import Status
from worker.transport import (
    CallResult,
    HttpAnswer,
    Observer,
    PartnerAccount,
    PartnerHttp,
    decode_json_object,
    observed_exchange,
    parse_retry_after,
    safe_text,
)

PROVIDER = "itrx"
WEIGHT = 0
_PREFIX = "/api/v1/frontend"
CALL_RESULTS: dict[str, str] = {
    "errno_1": CallResult.REFUSED,  # duplicate out_trade_no, receive address not active, balance
    "errno_404": CallResult.NOT_FOUND,
    "rejected": CallResult.INVALID,  # HTTP 400 with a detail
    "invalid_fields": CallResult.INVALID,
    "no_balance": CallResult.AUTH,  # index-data without a balance: the key is wrong
}
"""This client's codes as the metrics' named results; other ``errno_<n>`` count as ``other``."""
_PERIOD_LABELS = {0: "1H", 1: "1D", 3: "3D", 30: "30D"}
_FIELD_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_MAX_FIELDS = 10
# Fields whose values we never echo in a reason: the callback URL may embed a receiver credential.
_QUIET_FIELDS = frozenset({"callback_url"})

T = TypeVar("T")


class ItrxClient:
    """Calls to one itrx account. Thread-safe: it holds no per-call state."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        api_secret: SecretStr,
        http: PartnerHttp,
        observer: Observer | None = None,
        *,
        clock: Callable[[], float] = time.time,
        other_secrets: Sequence[SecretStr] = (),
    ) -> None:
        self._account = PartnerAccount.checked("itrx", base_url, api_key, api_secret, other_secrets)
        self._secret = api_secret
        self._http = http
        self._observer = observer
        self._clock = clock

    def __repr__(self) -> str:
        return f"ItrxClient({self._account!r})"

    # --- endpoints ---------------------------------------------------------------------------------

    def create(self, params: ItrxParams, out_trade_no: str, callback_url: str | None = None) -> CreateResult:
        """``POST /order``. The answer only says "accepted and paid"; the first poll gives the real status."""
        payload = _create_payload(params, out_trade_no, callback_url)
        body = canonical_json(payload)
        timestamp = str(int(self._clock()))
        headers = {
            "Content-Type": "application/json",
            "API-KEY": self._account.api_key,
            "TIMESTAMP": timestamp,
            "SIGNATURE": itrx_sign(self._secret, timestamp, body),
        }
        sensitive = (callback_url,) if callback_url else ()

        def parse(answer: Mapping[str, Any]) -> CreateResult:
            return _create_result(answer, params, out_trade_no)

        # Not idempotent, so never on a kept-alive connection: one the partner closes as the request leaves
        # would make the create's outcome unknown and the order in doubt for nothing.
        return self._call(
            "create", "POST", "/order", headers, parse, body=body, sensitive=sensitive, new_connection=True
        )

    def fetch(self, serial: str) -> PartnerOrder:
        """``GET /order/query``. An unknown serial is ``errno 404`` (REFUSED, code ``errno_404``)."""
        if not serial or not serial.isascii():
            raise _invalid_input("serial must be non-empty ASCII")
        query = urlencode({"serial": serial})

        def parse(answer: Mapping[str, Any]) -> PartnerOrder:
            reported = answer.get("order_no", answer.get("serial"))
            if reported is not None and str(reported) != serial:
                raise ValueError("answer describes another order")
            order = _order_from(answer, serial)
            if order is None:
                raise ValueError("answer has no usable status")
            return order

        return self._call("query", "GET", f"/order/query?{query}", self._get_headers(), parse)

    def balance(self) -> int:
        """Account balance in sun, from ``GET /index-data`` (there is no dedicated balance endpoint)."""
        return self._call("index-data", "GET", "/index-data", self._get_headers(), _balance)

    def price(self, energy_amount: int, period: str) -> int:
        """What an order would cost now, in sun (``total_price`` of ``GET /order/price``)."""
        query = urlencode({"period": period, "energy_amount": int(energy_amount)})

        def parse(answer: Mapping[str, Any]) -> int:
            total = _sun_int(answer.get("total_price"))
            if total is None:
                raise ValueError("price answer without total_price")
            return total

        return self._call("price", "GET", f"/order/price?{query}", self._get_headers(), parse)

    def quote(self, params: ItrxQuoteParams) -> PartnerQuote:
        """``GET /order/price`` for a quote: the whole answer, normalised."""
        query = urlencode(params.query())
        return self._call("price", "GET", f"/order/price?{query}", self._get_headers(), parse_quote)

    @staticmethod
    def parse_callback(body: Any) -> tuple[str | None, str | None, PartnerOrder | None]:
        """Same as the module-level :func:`parse_callback`."""
        return _parse_callback(body)

    # --- plumbing ----------------------------------------------------------------------------------

    def _get_headers(self) -> dict[str, str]:
        return {"API-KEY": self._account.api_key}

    def _call(
        self,
        endpoint: str,
        method: str,
        path: str,
        headers: Mapping[str, str],
        parse: Callable[[Mapping[str, Any]], T],
        *,
        body: bytes | None = None,
        sensitive: tuple[str, ...] = (),
        new_connection: bool = False,
    ) -> T:
        url = f"{self._account.base_url}{_PREFIX}{path}"
        scrub = (*self._account.scrub, *sensitive)

        def send() -> HttpAnswer:
            if body is None:
                return self._http.get(url, headers)
            return self._http.post(url, body, headers, new_connection=new_connection)

        def read(answer: HttpAnswer) -> T:
            payload = _interpret(answer, endpoint, scrub)
            try:
                return parse(payload)
            except (ValueError, TypeError, KeyError) as exc:
                what = f"unusable answer ({safe_text(str(exc), scrub, 80)})"
                raise _bad_response(endpoint, answer.status, what) from None

        return observed_exchange(self._observer, PROVIDER, endpoint, WEIGHT, send, read, method)


def _create_payload(params: ItrxParams, out_trade_no: str, callback_url: str | None) -> dict[str, Any]:
    """ASCII-only values (spec §3.2) so that every plausible server-side canonicalisation agrees."""
    if not out_trade_no or not out_trade_no.isascii() or not out_trade_no.isprintable():
        raise _invalid_input("out_trade_no must be non-empty printable ASCII")
    payload: dict[str, Any] = {**params.model_dump(exclude_none=True), "out_trade_no": out_trade_no}
    if callback_url is not None:
        if not callback_url.isascii() or not callback_url.startswith(("http://", "https://")):
            raise _invalid_input("callback_url must be an ASCII http(s) URL")
        payload["callback_url"] = callback_url
    return payload


def _invalid_input(reason: str) -> PartnerError:
    """Refused locally, before any byte is sent: the same input would be refused again."""
    return PartnerError(fate=Fate.NOT_SENT, code="invalid_request", reason=reason, retryable=False)


def _bad_response(endpoint: str, status: int, what: str) -> PartnerError:
    """An answer we cannot read: on create the order may exist, so this is never a refusal."""
    return PartnerError(
        fate=Fate.UNKNOWN,
        code="bad_response",
        reason=f"{endpoint}: {what} (HTTP {status})",
        retryable=True,
        http_status=status,
    )


# --- answer interpretation (spec §4) ---------------------------------------------------------------


def _interpret(answer: HttpAnswer, endpoint: str, scrub: tuple[str, ...]) -> Mapping[str, Any]:
    if 200 <= answer.status < 300:
        return _success_body(answer, endpoint, scrub)
    raise _http_error(answer, endpoint, scrub)


def _http_error(answer: HttpAnswer, endpoint: str, scrub: tuple[str, ...]) -> PartnerError:
    status = answer.status
    if status == 400:
        return _validation_error(answer, endpoint, scrub)
    if status == 429:
        # Not documented for itrx; a throttled request was not acted on, so waiting is safe.
        return PartnerError(
            fate=Fate.REFUSED,
            code="http_429",
            reason=f"{endpoint}: rate limited (HTTP 429)",
            retryable=True,
            retry_after=parse_retry_after(answer.headers.get("Retry-After")),
            http_status=429,
        )
    if 400 <= status < 500:
        what = "API key rejected" if status == 403 else "request refused"
        return _refused(f"http_{status}", f"{endpoint}: {what} (HTTP {status})", status)
    # 5xx, and anything unexpected (1xx, 3xx): the request may have been acted on.
    return PartnerError(
        fate=Fate.UNKNOWN,
        code=f"http_{status}",
        reason=f"{endpoint}: partner answered HTTP {status}",
        retryable=True,
        http_status=status,
    )


def _refused(code: str, reason: str, status: int) -> PartnerError:
    return PartnerError(fate=Fate.REFUSED, code=code, reason=reason, retryable=False, http_status=status)


def _success_body(answer: HttpAnswer, endpoint: str, scrub: tuple[str, ...]) -> Mapping[str, Any]:
    """A 2xx JSON object whose ``errno`` is 0 or absent (the price and index-data examples carry none)."""
    body = decode_json_object(answer.body)
    if body is None:
        raise _bad_response(endpoint, answer.status, "answer is not a JSON object")
    errno = body.get("errno", 0)
    if not isinstance(errno, int) or isinstance(errno, bool):
        raise _bad_response(endpoint, answer.status, "errno is not an integer")
    if errno != 0:
        message = safe_text(body.get("message", ""), scrub)
        raise _refused(f"errno_{errno}", f"{endpoint}: {message}", answer.status)
    return body


def _validation_error(answer: HttpAnswer, endpoint: str, scrub: tuple[str, ...]) -> PartnerError:
    """HTTP 400: ``{"detail": ...}`` or a field -> [reasons] map; values that might be secret stay out."""
    body = decode_json_object(answer.body)
    if body is None:
        return _refused("http_400", f"{endpoint}: request rejected (HTTP 400)", 400)
    if "detail" in body:
        return _refused("rejected", f"{endpoint}: {safe_text(body['detail'], scrub)}", 400)
    return _refused("invalid_fields", f"{endpoint}: invalid fields: {_describe_fields(body, scrub)}", 400)


def _describe_fields(body: Mapping[str, Any], scrub: tuple[str, ...]) -> str:
    parts: list[str] = []
    names = sorted(str(name) for name in body)
    for name in names[:_MAX_FIELDS]:
        if not _FIELD_NAME.match(name):
            parts.append("(unnamed field)")
            continue
        first = _first_reason(body[name])
        if name in _QUIET_FIELDS or first is None:
            parts.append(name)
        else:
            parts.append(f"{name} ({safe_text(first, scrub, 100)})")
    if len(names) > _MAX_FIELDS:
        parts.append(f"and {len(names) - _MAX_FIELDS} more")
    return "; ".join(parts) or "(none listed)"


def _first_reason(value: Any) -> str | None:
    if isinstance(value, list) and value and isinstance(value[0], str):
        return value[0]
    return value if isinstance(value, str) else None


# --- results ----------------------------------------------------------------------------------------


def _create_result(answer: Mapping[str, Any], params: ItrxParams, out_trade_no: str) -> CreateResult:
    serial = answer.get("serial")
    if not isinstance(serial, str) or not serial:
        raise ValueError("create answer without serial")
    order = PartnerOrder(
        order_id=serial,
        provider_status="accepted",
        status=Status.PROCESSING,
        order={
            "serial": serial,
            "out_trade_no": out_trade_no,
            "energy_amount": params.energy_amount,
            "period": params.period,
            "receive_address": params.receive_address,
            "cost_sun": _sun(answer.get("amount")),
            "balance_sun": _sun(answer.get("balance")),
        },
    )
    return CreateResult(order=order, token=None)


def _balance(answer: Mapping[str, Any]) -> int:
    balance = _sun_int(answer.get("balance"))
    if balance is None:
        # The docs: a wrong API key yields empty data rather than an error.
        raise PartnerError(
            fate=Fate.REFUSED,
            code="no_balance",
            reason="index-data: answer carries no balance (wrong API key?)",
            retryable=False,
        )
    return balance


def _parse_callback(body: Any) -> tuple[str | None, str | None, PartnerOrder | None]:
    return parse_callback(body)


def parse_callback(body: Any) -> tuple[str | None, str | None, PartnerOrder | None]:
    """``(serial, out_trade_no, order)`` from a callback body whose schema itrx never documented.

    Lenient by design (spec §7): the callback is a trigger to re-query, not a source of truth, so each
    part is None when absent and an order is built only when both a serial and a status are present.
    """
    if not isinstance(body, Mapping):
        return None, None, None
    serial = _identifier(body.get("serial", body.get("order_no")))
    out_trade_no = _identifier(body.get("out_trade_no"))
    order = _order_from(body, serial, out_trade_no)
    return serial, out_trade_no, order


def _order_from(
    body: Mapping[str, Any], serial: str | None, out_trade_no: str | None = None
) -> PartnerOrder | None:
    """A PartnerOrder from a query answer (or a callback shaped like one); None without a status."""
    raw = _whole(body.get("status"))
    if raw is None or not serial:
        return None
    return PartnerOrder(
        order_id=serial,
        provider_status=str(raw),
        status=map_status(raw),
        order=_normalised(serial, body, out_trade_no),
    )


def _normalised(serial: str, body: Mapping[str, Any], out_trade_no: str | None) -> dict[str, Any]:
    period = _whole(body.get("period"))
    raw_details = body.get("details")
    details = raw_details if isinstance(raw_details, list) else []
    normalised: dict[str, Any] = {
        "serial": serial,
        "receive_address": _text(body.get("receive_address")),
        "energy_amount": _whole(body.get("energy_amount")),
        "delegated_energy": _whole(body.get("pay_amount")),
        "period": _PERIOD_LABELS.get(period, str(period))
        if period is not None
        else _text(body.get("period")),
        "cost_sun": _sun(body.get("amount")),
        "refund_sun": _sun(body.get("refund_amount")),
        **_moment("created_at", body.get("create_time")),
        "delegations": [_delegation(item) for item in details if isinstance(item, Mapping)],
    }
    if out_trade_no is not None:
        normalised["out_trade_no"] = out_trade_no
    return normalised


def _delegation(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "delegate_tx_id": _text(item.get("delegate_hash")),
        "delegated_at": _moment("t", item.get("delegate_time"))["t"],
        "reclaim_tx_id": _text(item.get("reclaim_hash")),
        "reclaim_due_at": _moment("t", item.get("reclaim_time"))["t"],
        "reclaimed_at": _moment("t", item.get("reclaim_time_real"))["t"],
        "status": _whole(item.get("status")),
    }


# --- value helpers ------------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _identifier(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    return _text(value)


def _whole(value: Any) -> int | None:
    """An integer however it was written (40, 40.0, "40"); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float | Decimal):
        try:
            number = float(value)
        except OverflowError:
            return None
        return int(number) if math.isfinite(number) and number == int(number) else None
    text = value.strip() if isinstance(value, str) else ""
    digits = text.lstrip("-")
    # Bounded length: int() of a hostile 5,000-digit string is refused by Python itself (ValueError).
    if text.isascii() and 0 < len(digits) <= 30 and digits.isdigit():
        return int(text)
    return None


def _sun(value: Any) -> str | None:
    """Sun amounts as decimal-integer strings, so events never carry a float."""
    number = _whole(value)
    return str(number) if number is not None else None


def _sun_int(value: Any) -> int | None:
    return _whole(value)


def _moment(name: str, value: Any) -> dict[str, Any]:
    """An ISO 8601 time (itrx mixes +08:00 and Z) as ISO 8601 UTC and unix seconds."""
    if not isinstance(value, str) or not value:
        return {name: None, f"{name}_unix": None}
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return {name: None, f"{name}_unix": None}
    if parsed.tzinfo is None:
        # No zone, no instant: keep the partner's text rather than guess a zone.
        return {name: value, f"{name}_unix": None}
    try:
        seconds = parsed.astimezone(UTC).timestamp()
        return {name: iso_from_epoch(seconds), f"{name}_unix": int(seconds)}
    except (OverflowError, ValueError):  # e.g. year 1 with a positive offset
        return {name: None, f"{name}_unix": None}
