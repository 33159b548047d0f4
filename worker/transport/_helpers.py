"""What both partner clients share besides the transport: reading answers, reporting calls, and keeping
partner text and configuration safe to publish."""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import SecretStr

from worker import tracing
from worker.logs import get_logger
from worker.transport._client import HttpAnswer
from worker.transport._outcome import PartnerError

log = get_logger(__name__)

Observer = Callable[[str, str, str, float, int], None]
"""``(provider, endpoint, result, seconds, weight)``, called once per partner HTTP call; result is "ok" or
the raw error code (the registry names it with :func:`~worker.transport.call_result` before metrics see
it). Metrics are wired in by the caller so providers stay free of Prometheus."""

T = TypeVar("T")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now; both the delta-seconds and HTTP-date forms are accepted."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        return _retry_after_date(text, now)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _retry_after_date(text: str, now: float | None) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def notify(
    observer: Observer | None, *, provider: str, endpoint: str, result: str, seconds: float, weight: int
) -> None:
    """Report one call; a broken observer must never turn a partner's answer into a failure."""
    if observer is None:
        return
    try:
        observer(provider, endpoint, result, seconds, weight)
    except Exception:
        log.exception("call_observer_failed", provider=provider, endpoint=endpoint)


def observed_exchange(
    observer: Observer | None,
    provider: str,
    endpoint: str,
    weight: int,
    send: Callable[[], HttpAnswer],
    read: Callable[[HttpAnswer], T],
    method: str = "POST",
) -> T:
    """Run one partner exchange and report it once, whatever happens: "ok", or the ``PartnerError``'s
    code, or "error" for anything else. Both clients route every call through here so that the metrics
    and the spans mean the same for every partner.

    The span names the endpoint, never the URL (a path may embed an order's secret) nor a body."""
    started = time.perf_counter()
    result = "error"
    attributes = {
        "order_worker.partner.provider": provider,
        "order_worker.partner.endpoint": endpoint,
        "http.request.method": method,
    }
    with tracing.span(f"partner {provider} {endpoint}", attributes, client=True) as span:
        try:
            value = read(send())
            result = "ok"
            span.set("order_worker.partner.fate", "answered")
            return value
        except PartnerError as exc:
            result = exc.code
            span.set("order_worker.partner.fate", exc.fate.value)
            if exc.http_status is not None:
                span.set("http.response.status_code", exc.http_status)
            span.fail(exc.code)
            raise
        finally:
            span.set("order_worker.partner.result", result)
            notify(
                observer,
                provider=provider,
                endpoint=endpoint,
                result=result,
                seconds=time.perf_counter() - started,
                weight=weight,
            )


def _no_constants(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_no_constants)


def decode_json_object(body: bytes) -> dict[str, Any] | None:
    """The answer as a JSON object, or None. Decimals stay exact (``Decimal``) so amounts keep their text.

    ``json.loads`` with hooks builds a new decoder per call; this is the same decoding (bytes in any UTF
    encoding ``json.loads`` detects) with one decoder built once."""
    try:
        value = _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def safe_text(value: object, sensitive: Iterable[str], limit: int = 160) -> str:
    """Partner-supplied text made publishable: known secrets masked, control characters and length cut."""
    text = value if isinstance(value, str) else repr(value)
    for item in sensitive:
        if item and len(item) >= 4:
            text = text.replace(item, "***")
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass(frozen=True, repr=False)
class PartnerAccount:
    """One partner account as its client holds it: the origin and key, checked once at start-up, and every
    secret that ``safe_text`` must cut out of partner error text.

    Partners echo request fragments; the webhook and previous secrets are not sent by a client, but an echo
    of a misconfigured value must not reach logs or events either. The repr shows the origin only."""

    base_url: str
    api_key: str
    scrub: tuple[str, ...]

    @classmethod
    def checked(
        cls, label: str, base_url: str, api_key: str, api_secret: SecretStr, others: Iterable[SecretStr] = ()
    ) -> PartnerAccount:
        """Fail fast on a misconfigured account, without echoing a value (a URL may hold userinfo)."""
        parts = urlsplit(base_url)
        if parts.scheme not in {"http", "https"} or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(
                "partner base URL must be http(s)://host[:port][/prefix] without query or fragment"
            )
        # Header values are ASCII without whitespace; checked here instead of on every send.
        if (
            not api_key
            or not api_key.isascii()
            or not api_key.isprintable()
            or any(c.isspace() for c in api_key)
        ):
            raise ValueError(f"{label} api_key must be non-empty printable ASCII without spaces")
        if not api_secret.get_secret_value():
            raise ValueError(f"{label} api_secret must not be empty")
        scrub = (api_key, api_secret.get_secret_value(), *(secret.get_secret_value() for secret in others))
        return cls(base_url.rstrip("/"), api_key, scrub)

    def __repr__(self) -> str:
        """scheme://host[:port]: never userinfo, never a path that might embed a key."""
        parts = urlsplit(self.base_url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname}{port}"
