"""The one HTTP transport both partner clients share, and the classification of its failures.

What matters here is not making requests, it is telling *how* a request failed: a connection that was
never opened is safe to repeat against any partner, a read timeout after sending is not (itrx create is
not idempotent). So urllib3's own retries and redirects are off; every attempt is visible to the caller,
and every transport exception becomes a :class:`PartnerError` whose ``fate`` says what is provable.

Error texts carry the method and the URL path only: no host, no query, no userinfo, no body.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import math
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    EmptyPoolError,
    HTTPError,
    IncompleteRead,
    InvalidChunkLength,
    LocationValueError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from worker.providers.base import Fate, PartnerError

if TYPE_CHECKING:
    from worker.settings import Settings

log = logging.getLogger(__name__)

Observer = Callable[[str, str, str, float, int], None]
"""``(provider, endpoint, result, seconds, weight)``, called once per partner HTTP call; result is "ok" or
the error code. Metrics are wired in by the caller so providers stay free of Prometheus."""

DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024
_READ_CHUNK = 64 * 1024
USER_AGENT = "order-worker/0.1"


class HttpAnswer(NamedTuple):
    """Whatever the partner answered, any status: interpreting it is the provider client's job."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class PartnerHttp:
    """A keep-alive connection pool for partner calls; one per process, shared by threads.

    ``block=False``: when every pooled connection is busy a temporary one is opened instead of waiting,
    because a wait for a pool slot would be one more failure mode with no partner-side meaning.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 3.0,
        read_timeout: float = 10.0,
        pool_size: int = 16,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        ca_certs: str | None = None,
    ) -> None:
        if connect_timeout <= 0 or read_timeout <= 0 or pool_size < 1 or max_response_bytes < 1:
            raise ValueError("timeouts must be positive, pool_size and max_response_bytes at least 1")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_response_bytes = max_response_bytes
        self._pool = urllib3.PoolManager(
            maxsize=pool_size,
            block=False,
            retries=False,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            ca_certs=ca_certs,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> PartnerHttp:
        return cls(
            connect_timeout=settings.http_connect_timeout,
            read_timeout=settings.http_read_timeout,
            pool_size=settings.http_pool_size,
        )

    def __repr__(self) -> str:
        return (
            f"PartnerHttp(connect_timeout={self.connect_timeout}, read_timeout={self.read_timeout}, "
            f"max_response_bytes={self.max_response_bytes})"
        )

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        return self._request("POST", url, body, headers)

    def get(self, url: str, headers: Mapping[str, str]) -> HttpAnswer:
        return self._request("GET", url, None, headers)

    def close(self) -> None:
        self._pool.clear()

    def __enter__(self) -> PartnerHttp:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _request(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> HttpAnswer:
        try:
            response = self._pool.urlopen(
                method,
                url,
                body=body,
                headers={"User-Agent": USER_AGENT, **headers},
                retries=False,
                redirect=False,
                preload_content=False,
            )
            try:
                data = self._read_body(response, method, url)
            finally:
                response.release_conn()
        except PartnerError:
            raise
        except (HTTPError, OSError, http.client.HTTPException) as exc:
            raise classify_transport_error(exc, method, url, self.read_timeout) from None
        return HttpAnswer(response.status, response.headers, data)

    def _read_body(self, response: urllib3.BaseHTTPResponse, method: str, url: str) -> bytes:
        """Read at most ``max_response_bytes``; a larger answer is dropped with its connection."""
        chunks: list[bytes] = []
        size = 0
        for chunk in _chunks(response):
            size += len(chunk)
            if size > self.max_response_bytes:
                response.close()
                raise PartnerError(
                    fate=Fate.UNKNOWN,
                    code="response_too_large",
                    reason=f"{_where(method, url)}: answer larger than {self.max_response_bytes} bytes",
                    retryable=True,
                    http_status=response.status,
                )
            chunks.append(chunk)
        return b"".join(chunks)


def _chunks(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    while chunk := response.read(_READ_CHUNK):
        yield chunk


def _where(method: str, url: str) -> str:
    """Method and path only: hosts can carry userinfo and queries can carry identifiers."""
    try:
        path = urlsplit(url).path or "/"
    except ValueError:
        path = "?"
    return f"{method} {path}"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its wrapped arguments and its cause chain (urllib3 nests the socket error)."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(arg for arg in current.args if isinstance(arg, BaseException))
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)


def _caused_by(exc: BaseException, *kinds: type[BaseException]) -> bool:
    return any(isinstance(item, kinds) for item in _causes(exc))


def _not_sent(code: str, reason: str, retryable: bool = True) -> PartnerError:
    return PartnerError(fate=Fate.NOT_SENT, code=code, reason=reason, retryable=retryable)


def _unknown(code: str, reason: str) -> PartnerError:
    return PartnerError(fate=Fate.UNKNOWN, code=code, reason=reason, retryable=True)


def classify_transport_error(
    exc: BaseException, method: str, url: str, read_timeout: float | None = None
) -> PartnerError:
    """Map a transport exception to what is provable about the request's fate.

    NOT_SENT is claimed only for failures that happen before the connection exists (name resolution,
    refused or timed-out connect, certificate rejection in the handshake, a bad URL): no request byte can
    have left. Everything after that point (read timeout, reset, early close, truncated or garbled answer)
    is UNKNOWN, because the partner may have received and acted on the request.
    """
    where = _where(method, url)
    # Order matters: NameResolutionError < NewConnectionError < ConnectTimeoutError in urllib3.
    if isinstance(exc, NameResolutionError):
        return _not_sent("dns", f"{where}: partner host name did not resolve")
    if isinstance(exc, NewConnectionError):
        refused = _caused_by(exc, ConnectionRefusedError)
        code = "connection_refused" if refused else "connect_failed"
        return _not_sent(code, f"{where}: could not open a connection ({'refused' if refused else 'failed'})")
    if isinstance(exc, ConnectTimeoutError):
        return _not_sent("connect_timeout", f"{where}: connect timed out")
    if isinstance(exc, ReadTimeoutError):
        limit = f" after {read_timeout:g}s" if read_timeout else ""
        return _unknown("timeout", f"{where}: no answer{limit} (request may have been received)")
    if isinstance(exc, SSLError):
        if _caused_by(exc, ssl.SSLCertVerificationError, ssl.CertificateError):
            return _not_sent("tls_verify", f"{where}: partner TLS certificate rejected", retryable=False)
        return _unknown("tls_error", f"{where}: TLS failure")
    if isinstance(exc, LocationValueError | http.client.InvalidURL):
        return _not_sent("bad_url", f"{where}: invalid partner URL", retryable=False)
    if isinstance(exc, EmptyPoolError | ClosedPoolError):
        return _not_sent("pool_unavailable", f"{where}: no connection available")
    return _classify_broken_exchange(exc, where)


def _classify_broken_exchange(exc: BaseException, where: str) -> PartnerError:
    if _caused_by(exc, IncompleteRead, InvalidChunkLength, http.client.IncompleteRead):
        return _unknown("truncated_response", f"{where}: answer cut short")
    if _caused_by(exc, http.client.RemoteDisconnected):
        return _unknown("connection_closed", f"{where}: partner closed the connection before answering")
    if _caused_by(exc, ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
        return _unknown("connection_reset", f"{where}: connection reset")
    if isinstance(exc, ProtocolError) or _caused_by(exc, http.client.HTTPException):
        return _unknown("protocol_error", f"{where}: malformed or broken HTTP exchange")
    return _unknown("transport_error", f"{where}: {type(exc).__name__}")


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


# --- helpers shared by the provider clients ----------------------------------------------------------


def notify(
    observer: Observer | None, *, provider: str, endpoint: str, result: str, seconds: float, weight: int
) -> None:
    """Report one call; a broken observer must never turn a partner's answer into a failure."""
    if observer is None:
        return
    try:
        observer(provider, endpoint, result, seconds, weight)
    except Exception:
        log.exception("partner call observer failed (provider=%s endpoint=%s)", provider, endpoint)


def _no_constants(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def decode_json_object(body: bytes) -> dict[str, Any] | None:
    """The answer as a JSON object, or None. Decimals stay exact (``Decimal``) so amounts keep their text."""
    try:
        value = json.loads(body, parse_float=Decimal, parse_constant=_no_constants)
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


def check_base_url(base_url: str) -> str:
    """Fail fast on a misconfigured origin, without echoing it (it may hold userinfo)."""
    parts = urlsplit(base_url)
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.query or parts.fragment:
        raise ValueError("partner base URL must be http(s)://host[:port][/prefix] without query or fragment")
    return base_url.rstrip("/")


def check_header_value(name: str, value: str) -> str:
    """Header values are ASCII without whitespace; checked once at start-up instead of on every send."""
    if not value or not value.isascii() or not value.isprintable() or any(ch.isspace() for ch in value):
        raise ValueError(f"{name} must be non-empty printable ASCII without spaces")
    return value


def display_origin(base_url: str) -> str:
    """scheme://host[:port] for reprs: never userinfo, never a path that might embed a key."""
    parts = urlsplit(base_url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"
