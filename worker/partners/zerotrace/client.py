"""0trace Partner API client: create, read and resolve orders, and normalise the order DTO.

Create is safe to repeat with the same ``Idempotency-Key`` (spec §6), which is why ambiguous answers
on create are reported as UNKNOWN *and* retryable: the actor retries with the same key, and a replay
answers with the original order and ``token: null`` instead of opening a second one.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import SecretStr

from worker.messages import iso_from_epoch
from worker.partners.base import CreateResult, Fate, PartnerError, PartnerOrder, PartnerQuote
from worker.partners.signing import new_nonce
from worker.partners.zerotrace.params import ZeroTraceParams, ZeroTraceQuoteParams
from worker.partners.zerotrace.quotes import parse_price
from worker.partners.zerotrace.signing import body_signer
from worker.partners.zerotrace.statuses import map_status
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

PROVIDER = "0trace"
WEIGHTS: dict[str, int] = {"create": 50, "order": 1, "emergency": 1, "price": 1}

_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{8,128}$")
_REF_CODE = re.compile(r"^[A-Za-z0-9_-]{4,32}$")

# Partner codes (spec §5) that mean "looked at it and said no": sending the same request again is useless.
_FINAL_CODES = frozenset({1, 2, 3, 4, 6, 12, 14})
_RATE_LIMIT = 5
_UPSTREAM_ERROR = 11
_INTERNAL = 99

CALL_RESULTS: dict[str, str] = {
    "1": CallResult.INVALID,  # INVALID_REQUEST
    "2": CallResult.AUTH,  # AUTH_REQUIRED
    "3": CallResult.AUTH,  # AUTH_INVALID (key, signature, nonce, referral code)
    "4": CallResult.AUTH,  # AUTH_DISABLED
    str(_RATE_LIMIT): CallResult.RATE_LIMITED,
    "6": CallResult.NOT_FOUND,
    str(_UPSTREAM_ERROR): CallResult.UNAVAILABLE,
    "12": CallResult.INVALID,  # EMERGENCY_INVALID_CHOICE
    "14": CallResult.REFUSED,  # ROTATION_CONFLICT
    str(_INTERNAL): CallResult.SERVER_ERROR,
}
"""The spec's codes (§5) as the metrics' named results; any other code counts as ``other``."""

T = TypeVar("T")


_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)


def compact_json(obj: Any) -> bytes:
    """Field order kept (it is what gets signed and sent); no whitespace; ASCII so no encoding ambiguity.

    Same output as ``json.dumps(obj, separators=(",", ":"), ensure_ascii=True)``, without building an
    encoder per call."""
    return _COMPACT.encode(obj).encode("ascii")


class ZeroTraceClient:
    """Signed calls to one 0trace partner account. Thread-safe: it holds no per-call state."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        api_secret: SecretStr,
        http: PartnerHttp,
        observer: Observer | None = None,
        *,
        other_secrets: Sequence[SecretStr] = (),
    ) -> None:
        self._account = PartnerAccount.checked("0trace", base_url, api_key, api_secret, other_secrets)
        self._sign = body_signer(api_secret)
        self._http = http
        self._observer = observer

    def __repr__(self) -> str:
        return f"ZeroTraceClient({self._account!r})"

    # --- endpoints ---------------------------------------------------------------------------------

    def create(
        self, params: ZeroTraceParams, idempotency_key: str, ref_code: str | None = None
    ) -> CreateResult:
        """``POST /api/v1/create``. ``token`` is None (and ``replayed`` True) when 0trace answers a replay."""
        if not _IDEMPOTENCY_KEY.match(idempotency_key):
            raise _invalid_input("invalid_idempotency_key", "Idempotency-Key must be 8..128 visible ASCII")
        if ref_code is not None and not _REF_CODE.match(ref_code):
            raise _invalid_input("invalid_ref_code", "ref_code must match ^[A-Za-z0-9_-]{4,32}$")
        api_key = self._account.api_key if ref_code is None else f"{self._account.api_key}.{ref_code}"
        extra = {"Idempotency-Key": idempotency_key}
        return self._call("create", params.wire_body(), _create_result, api_key=api_key, extra_headers=extra)

    def fetch(self, order_id: str, token: str) -> PartnerOrder:
        """``POST /api/v1/order``: the current DTO. Wrong id or token: an indistinguishable 404 (code 6)."""
        body = _id_and_token(order_id, token)
        return self._call("order", body, _order_from_data, sensitive=(token,))

    def emergency(self, order_id: str, token: str) -> bool:
        """``POST /api/v1/emergency`` with the only accepted choice, ``EXCHANGE``; True when accepted."""
        body = {**_id_and_token(order_id, token), "choice": "EXCHANGE"}
        return self._call("emergency", body, lambda data: data is True, sensitive=(token,))

    def price(self, params: ZeroTraceQuoteParams) -> PartnerQuote:
        """``POST /api/v1/price``, signed, so the account's markup applies (and its budget is charged)."""
        return self._call("price", params.wire_body(), parse_price)

    @staticmethod
    def parse_order(dto: Mapping[str, Any]) -> PartnerOrder:
        """Same as the module-level :func:`parse_order` (webhook bodies use it too)."""
        return _parse_dto(dto)

    # --- plumbing ----------------------------------------------------------------------------------

    def _call(
        self,
        endpoint: str,
        payload: Mapping[str, Any],
        parse: Callable[[Any], T],
        *,
        api_key: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        sensitive: tuple[str, ...] = (),
    ) -> T:
        body = compact_json(payload)
        headers = {
            "Content-Type": "application/json",
            "X-API-KEY": api_key or self._account.api_key,
            "X-API-SIGN": self._sign(body),
            "X-API-NONCE": new_nonce(),
            **(extra_headers or {}),
        }
        scrub = (*self._account.scrub, *sensitive)

        def read(answer: HttpAnswer) -> T:
            data = _unwrap(answer, endpoint, scrub)
            try:
                return parse(data)
            except (ValueError, TypeError, KeyError) as exc:
                what = f"unusable data ({type(exc).__name__})"
                raise _bad_response(endpoint, answer.status, what) from None

        return observed_exchange(
            self._observer,
            PROVIDER,
            endpoint,
            WEIGHTS[endpoint],
            lambda: self._http.post(f"{self._account.base_url}/api/v1/{endpoint}", body, headers),
            read,
        )


def _id_and_token(order_id: str, token: str) -> dict[str, str]:
    if not order_id or not token:
        raise _invalid_input("invalid_request", "order id and token are required")
    return {"id": order_id, "token": token}


def _invalid_input(code: str, reason: str) -> PartnerError:
    """Refused locally, before any byte is sent: the same input would be refused again."""
    return PartnerError(fate=Fate.NOT_SENT, code=code, reason=reason, retryable=False)


def _bad_response(endpoint: str, status: int, what: str) -> PartnerError:
    code = f"http_{status}" if status >= 500 else "bad_response"
    return PartnerError(
        fate=Fate.UNKNOWN,
        code=code,
        reason=f"{endpoint}: {what} (HTTP {status})",
        retryable=True,
        http_status=status,
    )


# --- answer interpretation -------------------------------------------------------------------------


def _unwrap(answer: HttpAnswer, endpoint: str, scrub: tuple[str, ...]) -> Any:
    """``data`` of a success envelope; any other answer becomes a classified PartnerError (spec §4, §5)."""
    envelope = decode_json_object(answer.body)
    code = envelope.get("code") if envelope is not None else None
    if answer.status == 429 or code == _RATE_LIMIT:
        raise _rate_limited(answer, endpoint)
    if envelope is None or not isinstance(code, int) or isinstance(code, bool):
        raise _bad_response(endpoint, answer.status, "answer is not a 0trace envelope")
    if code == 0:
        if 200 <= answer.status < 300 and "data" in envelope:
            return envelope["data"]
        raise _bad_response(endpoint, answer.status, "success code without data or with an error status")
    raise _envelope_error(answer.status, code, envelope.get("msg"), endpoint, scrub)


def _rate_limited(answer: HttpAnswer, endpoint: str) -> PartnerError:
    retry_after = parse_retry_after(answer.headers.get("Retry-After"))
    return PartnerError(
        fate=Fate.REFUSED,
        code=str(_RATE_LIMIT),
        reason=f"{endpoint}: RATE_LIMIT (HTTP {answer.status})",
        retryable=True,
        retry_after=retry_after,
        http_status=answer.status,
        rate_limited=True,
    )


def _envelope_error(
    status: int, code: int, msg: object, endpoint: str, scrub: tuple[str, ...]
) -> PartnerError:
    reason = f"{endpoint}: {safe_text(msg if msg is not None else '', scrub, 64)} (HTTP {status})"
    if code == _INTERNAL or (code == _UPSTREAM_ERROR and endpoint == "create"):
        # Possibly acted on; safe to repeat only because create carries the same Idempotency-Key.
        fate, retryable = Fate.UNKNOWN, True
    elif code == _UPSTREAM_ERROR:
        fate, retryable = Fate.REFUSED, True
    elif code in _FINAL_CODES or status < 500:
        fate, retryable = Fate.REFUSED, False
    else:
        fate, retryable = Fate.UNKNOWN, True
    return PartnerError(fate=fate, code=str(code), reason=reason, retryable=retryable, http_status=status)


def _create_result(data: Any) -> CreateResult:
    if not isinstance(data, dict):
        raise TypeError("create data is not an object")
    token = data.get("token")
    if token is not None and (not isinstance(token, str) or not token):
        raise TypeError("token is neither a string nor null")
    return CreateResult(order=parse_order(data), token=token, replayed=token is None)


def _order_from_data(data: Any) -> PartnerOrder:
    if not isinstance(data, dict):
        raise TypeError("order data is not an object")
    return parse_order(data)


# --- DTO normalisation ------------------------------------------------------------------------------


def _parse_dto(dto: Mapping[str, Any]) -> PartnerOrder:
    return parse_order(dto)


def parse_order(dto: Mapping[str, Any]) -> PartnerOrder:
    """Normalise an order DTO from create, order or a webhook. Raises ValueError without ``id``/``status``.

    Lenient about everything else (spec §14: fields are added over time), because refusing a create
    answer over a cosmetic field would lose the one-time token. The token itself is never copied.
    """
    order_id, raw_status = dto.get("id"), dto.get("status")
    if not isinstance(order_id, str) or not order_id or not isinstance(raw_status, str) or not raw_status:
        raise ValueError("order DTO without id or status")
    times = _obj(dto.get("time"))
    status = map_status(raw_status)
    return PartnerOrder(
        order_id=order_id,
        provider_status=raw_status,
        status=status,
        order=_normalised(order_id, dto, times),
        updated_at=_seconds(times.get("update")),
        # Only an order still waiting for its deposit expires when the window closes.
        deadline=_seconds(times.get("expiration")) if status == Status.AWAITING_DEPOSIT else None,
    )


def _normalised(order_id: str, dto: Mapping[str, Any], times: Mapping[str, Any]) -> dict[str, Any]:
    src, dst, back = _obj(dto.get("from")), _obj(dto.get("to")), _obj(dto.get("back"))
    src_tx, dst_tx, back_tx = _obj(src.get("tx")), _obj(dst.get("tx")), _obj(back.get("tx"))
    emergency = _obj(dto.get("emergency"))
    statuses = emergency.get("status")
    created_at, created_at_unix = _moment(times.get("reg"))
    expires_at, expires_at_unix = _moment(times.get("expiration"))
    finished_at, finished_at_unix = _moment(times.get("finish"))
    return {
        "id": order_id,
        "type": _text(dto.get("type")),
        "from_code": _text(src.get("code")),
        "from_network": _text(src.get("network")),
        "from_amount": _amount(src.get("amount")),
        "deposit_address": _text(src.get("address")),
        "deposit_tx_id": _text(src_tx.get("id")),
        "deposit_amount_received": _amount(src_tx.get("amount")),
        "to_code": _text(dst.get("code")),
        "to_network": _text(dst.get("network")),
        "to_amount": _amount(dst.get("amount")),
        "recipient_address": _text(dst.get("address")),
        "payout_tx_id": _text(dst_tx.get("id")),
        "payout_amount": _amount(dst_tx.get("amount")),
        "refund_address": _text(back.get("address")),
        "refund_tx_id": _text(back_tx.get("id")),
        "created_at": created_at,
        "created_at_unix": created_at_unix,
        "expires_at": expires_at,
        "expires_at_unix": expires_at_unix,
        "finished_at": finished_at,
        "finished_at_unix": finished_at_unix,
        "rate": _amount(dto.get("rate")),
        "network_fee": _amount(dto.get("networkFee")),
        "markup_bps": _integer(dto.get("markupBps")),
        "emergency": {
            "status": [s for s in statuses if isinstance(s, str)] if isinstance(statuses, list) else [],
            "choice": _text(emergency.get("choice")),
        },
    }


def _obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _amount(value: Any) -> str | None:
    """Money as the partner wrote it; a JSON number (not expected) keeps its exact decimal text."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return str(value)


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an integer beyond float range: not a time anyone means
        return None
    return seconds if math.isfinite(seconds) else None


def _integer(value: Any) -> int | None:
    seconds = _seconds(value)
    return int(seconds) if seconds is not None and seconds == int(seconds) else None


def _moment(value: Any) -> tuple[str | None, int | None]:
    """A unix time as both ISO 8601 UTC and integer seconds (both None when absent or unusable)."""
    seconds = _seconds(value)
    if seconds is None:
        return None, None
    iso = _iso(seconds)
    return (None, None) if iso is None else (iso, int(seconds))


@functools.lru_cache(maxsize=1024)
def _iso(seconds: float) -> str | None:
    """Partner times are whole seconds, shared by the orders created in one second and by every read of
    one order, so each is formatted once rather than on every answer."""
    try:
        return iso_from_epoch(seconds)
    except (OverflowError, OSError, ValueError):
        return None
