"""The one HTTP transport both partner clients share, and the classification of its failures.

What matters here is not making requests, it is telling *how* a request failed: a connection that was
never opened is safe to repeat against any partner, a read timeout after sending is not (itrx create is
not idempotent). So urllib3's own retries and redirects are off; every attempt is visible to the caller,
and every transport exception becomes a :class:`PartnerError` whose ``fate`` says what is provable.

Error texts carry the method and the URL path only: no host, no query, no userinfo, no body.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import json
import logging
import math
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

import httptools
from pydantic import SecretStr
from urllib3 import HTTPHeaderDict, HTTPResponse
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    DecodeError,
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
from urllib3.response import _get_decoder
from urllib3.util.wait import wait_for_read

from worker.partners.base import Fate, PartnerError

if TYPE_CHECKING:
    from worker.settings import Settings

log = logging.getLogger(__name__)

Observer = Callable[[str, str, str, float, int], None]
"""``(provider, endpoint, result, seconds, weight)``, called once per partner HTTP call; result is "ok" or
the error code. Metrics are wired in by the caller so providers stay free of Prometheus."""

DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024
_READ_CHUNK = 64 * 1024
USER_AGENT = "order-worker/0.1"
T = TypeVar("T")


class HttpAnswer(NamedTuple):
    """Whatever the partner answered, any status: interpreting it is the provider client's job."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class PartnerHttp:
    """A keep-alive connection pool for partner calls; one per process, shared by threads.

    A partner call is one small request and one small answer, and the worker makes one or two per command,
    so the client's own CPU counts. Requests are written directly on the socket, and answers are read with
    llhttp (the HTTP/1.1 parser of Node.js, through ``httptools``): ``http.client`` parses every answer's
    headers with the ``email`` package and builds a file object per answer, which cost more CPU than the
    rest of the exchange together. The contract:

    * one idle-connection list per origin, at most ``pool_size`` kept; when every pooled connection is
      busy a temporary one is opened instead of waiting (a wait for a pool slot would be one more failure
      mode with no partner-side meaning), and closed after use;
    * a pooled connection is checked before reuse (readable while idle means the partner closed it or
      sent garbage), so an idle close by the partner does not fail the next call; a connection is kept only
      when the answer's framing ended it exactly and the partner allows keep-alive;
    * no retries and no redirects: every attempt is visible to the caller;
    * request line, headers and body leave in one ``send``; a header value with a line break is refused
      before anything is sent (header injection), and so is a path with a space or control character;
    * informational (1xx) answers are skipped; Content-Length, chunked and close-delimited bodies are read;
    * failures are raised as urllib3's and ``http.client``'s exception types, so
      :func:`classify_transport_error` stays the one place that decides what is provable about a request's
      fate.
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
        self._pool_size = pool_size
        self._ca_certs = ca_certs
        self._tls: ssl.SSLContext | None = None
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._origins: dict[str, tuple[tuple[str, str, int], str]] = {}
        """origin -> ((scheme, host, port), Host header)"""

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
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for conn in connections:
                conn.close()

    def __enter__(self) -> PartnerHttp:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _request(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> HttpAnswer:
        try:
            key, host, target = self._split(url)
            head = _request_head(method, target, host, body, headers, url)
            conn = self._checkout(key)
            try:
                answer = self._exchange(conn, key, head if body is None else head + body, method, url)
            except BaseException:
                conn.close()
                raise
        except PartnerError:
            raise
        except (HTTPError, OSError, http.client.HTTPException) as exc:
            raise classify_transport_error(exc, method, url, self.read_timeout) from None
        return answer

    # --- connections -----------------------------------------------------------------------------------

    def _split(self, url: str) -> tuple[tuple[str, str, int], str, str]:
        """((scheme, host, port), Host header, path?query); the origin's parse is cached, the path is taken
        as is."""
        scheme_end = url.find("://")
        path_at = url.find("/", scheme_end + 3) if scheme_end > 0 else -1
        origin = url if path_at < 0 else url[:path_at]
        parsed = self._origins.get(origin)
        if parsed is None:
            key = _parse_origin(origin)
            parsed = key, _host_header(*key)
            if len(self._origins) < 64:
                self._origins[origin] = parsed
        target = "/" if path_at < 0 else url[path_at:]
        if "#" in target:
            target = target.split("#", 1)[0]
        return parsed[0], parsed[1], target

    def _checkout(self, key: tuple[str, str, int]) -> _Connection:
        while True:
            with self._lock:
                idle = self._idle.get(key)
                conn = idle.pop() if idle else None
            if conn is None:
                return self._connect(key)
            if not wait_for_read(conn.sock, timeout=0.0):
                return conn
            conn.close()  # closed by the partner while idle (or unread bytes): never reuse it

    def _checkin(self, key: tuple[str, str, int], conn: _Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self._pool_size:
                idle.append(conn)
                return
        conn.close()

    def _connect(self, key: tuple[str, str, int]) -> _Connection:
        scheme, host, port = key
        try:
            sock = socket.create_connection((host, port), timeout=self.connect_timeout)
        except socket.gaierror as exc:
            raise NameResolutionError(host, _NO_CONN, exc) from exc
        except TimeoutError as exc:
            raise ConnectTimeoutError(_NO_CONN, "connect timed out") from exc
        except OSError as exc:
            raise NewConnectionError(_NO_CONN, f"could not connect: {type(exc).__name__}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                try:
                    sock = self._tls_context().wrap_socket(sock, server_hostname=host)
                except TimeoutError as exc:
                    raise ConnectTimeoutError(_NO_CONN, "TLS handshake timed out") from exc
                except ssl.SSLError as exc:
                    raise SSLError(exc) from exc
            sock.settimeout(self.read_timeout)
        except BaseException:
            sock.close()
            raise
        return _Connection(sock)

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context(cafile=self._ca_certs)
        return self._tls

    # --- one exchange ---------------------------------------------------------------------------------

    def _exchange(
        self, conn: _Connection, key: tuple[str, str, int], request: bytes, method: str, url: str
    ) -> HttpAnswer:
        sock = conn.sock
        reader = _AnswerReader()
        try:
            sock.sendall(request)
            while not reader.complete:
                data = sock.recv(_READ_CHUNK)
                if not data:
                    reader.end_of_stream()
                    break
                reader.feed(data)
                if reader.size > self.max_response_bytes:
                    raise self._too_large(reader.parser.get_status_code(), method, url)
        except TimeoutError as exc:
            raise ReadTimeoutError(_NO_POOL, "", "read timed out") from exc
        if reader.keep_alive and not reader.trailing:
            self._checkin(key, conn)
        else:
            conn.close()
        headers = HTTPHeaderDict(reader.headers)
        data = b"".join(reader.chunks)
        encoding = headers.get("content-encoding")
        if encoding and data:
            data = self._decoded(data, encoding.lower(), reader.status, method, url)
        return HttpAnswer(reader.status, headers, data)

    def _decoded(self, data: bytes, encoding: str, status: int, method: str, url: str) -> bytes:
        """A compressed answer (we ask for ``identity``, a partner may still compress) is decoded with the
        decoders urllib3 uses, as before; the size limit applies to the decoded bytes too."""
        names = [part.strip() for part in encoding.split(",")]
        if not any(name in _CONTENT_DECODERS for name in names):
            return data
        try:
            decoder = _get_decoder(encoding)
            decoded = decoder.decompress(data) + decoder.flush()
        except (OSError, zlib.error) as exc:
            raise DecodeError(f"content-encoding {encoding!r} could not be decoded") from exc
        if len(decoded) > self.max_response_bytes:
            raise self._too_large(status, method, url)
        return decoded

    def _too_large(self, status: int, method: str, url: str) -> PartnerError:
        return PartnerError(
            fate=Fate.UNKNOWN,
            code="response_too_large",
            reason=f"{_where(method, url)}: answer larger than {self.max_response_bytes} bytes",
            retryable=True,
            http_status=status,
        )


class _Connection:
    """One keep-alive socket to one origin."""

    __slots__ = ("sock",)

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class _AnswerReader:
    """The llhttp parser's callbacks for one answer: its status, headers and body, and whether the
    connection may carry the next request. Informational (1xx) answers before it are skipped."""

    __slots__ = (
        "chunks",
        "complete",
        "framed",
        "headers",
        "headers_done",
        "keep_alive",
        "parser",
        "received",
        "size",
        "status",
        "trailing",
    )

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.status = 0
        self.framed = False
        """The answer says where its body ends (Content-Length or Transfer-Encoding)."""
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.received = False
        self.trailing = False
        """Bytes arrived after the answer ended: the connection is out of step and is not reused."""

    def feed(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if not self.complete:
                raise http.client.HTTPException("malformed answer") from exc
            self.trailing = True  # the answer is whole; what follows it is not ours to read

    def on_message_begin(self) -> None:
        if self.complete:
            self.trailing = True
            return
        self.headers, self.chunks, self.size = [], [], 0
        self.framed = self.headers_done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.complete:
            return
        lowered = name.lower()
        if lowered in _FRAMING_HEADERS:
            self.framed = True
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        if not self.complete:
            self.chunks.append(body)
            self.size += len(body)

    def on_message_complete(self) -> None:
        if self.complete:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            return  # informational: the answer follows
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        self.complete = True

    def end_of_stream(self) -> None:
        """The partner closed the connection before the answer was complete by its own framing."""
        if not self.received:
            raise http.client.RemoteDisconnected("closed without answering")
        if self.headers_done and not self.framed:
            # A body without length or chunking ends where the connection does (RFC 9112, 6.3).
            self.status = self.parser.get_status_code()
            self.complete = True
            return
        raise http.client.IncompleteRead(b"".join(self.chunks))


_FRAMING_HEADERS = frozenset({b"content-length", b"transfer-encoding"})
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_UNSAFE_IN_TARGET = re.compile(r"[\x00-\x20\x7f]")
_UNSAFE_IN_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _request_head(
    method: str, target: str, host: str, body: bytes | None, headers: Mapping[str, str], url: str
) -> bytes:
    """Request line and headers, refused before anything is sent when a header or the path could split
    the request (a line break in a value is header injection)."""
    if _UNSAFE_IN_TARGET.search(target):
        raise http.client.InvalidURL("path with a space or control character")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Accept-Encoding: identity"]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    lines.append(f"User-Agent: {USER_AGENT}")
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name) or _UNSAFE_IN_VALUE.search(value):
            raise _bad_header(name, method, url)
        if name.lower() != "user-agent":
            lines.append(f"{name}: {value}")
    lines.append("\r\n")
    try:
        return "\r\n".join(lines).encode("latin-1")
    except UnicodeEncodeError:
        raise _bad_header("(a header)", method, url) from None


def _bad_header(name: str, method: str, url: str) -> PartnerError:
    """Never the value (it may be a key), and the name only when it is a plain token."""
    safe_name = name if _TOKEN.fullmatch(name) else "(a header)"
    return _not_sent(
        "bad_request_header",
        f"{_where(method, url)}: header {safe_name} has a character HTTP does not allow",
        retryable=False,
    )


def _host_header(scheme: str, host: str, port: int) -> str:
    """The Host header ``http.client`` would send: IPv6 literals in brackets, the port unless default."""
    name = f"[{host}]" if ":" in host else host
    try:
        name.encode("ascii")
    except UnicodeEncodeError:
        name = name.encode("idna").decode("ascii")
    return name if port == _default_port(scheme) else f"{name}:{port}"


_CONTENT_DECODERS = frozenset(HTTPResponse.CONTENT_DECODERS)
_NO_CONN: Any = None  # urllib3's exception types want a connection object; classification never reads it
_NO_POOL: Any = None


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _parse_origin(origin: str) -> tuple[str, str, int]:
    """(scheme, host, port) of ``scheme://[userinfo@]host[:port]``; userinfo is ignored, never sent."""
    try:
        parts = urlsplit(origin)
        scheme = parts.scheme.lower()
        host = parts.hostname
        port = parts.port
    except ValueError as exc:
        raise LocationValueError("invalid URL") from exc
    if scheme not in ("http", "https") or not host:
        raise LocationValueError("unsupported URL scheme or no host")
    return scheme, host, port or _default_port(scheme)


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


def observed_exchange(
    observer: Observer | None,
    provider: str,
    endpoint: str,
    weight: int,
    send: Callable[[], HttpAnswer],
    read: Callable[[HttpAnswer], T],
) -> T:
    """Run one partner exchange and report it once, whatever happens: "ok", or the ``PartnerError``'s
    code, or "error" for anything else. Both clients route every call through here so that the metrics
    mean the same for every partner."""
    started = time.perf_counter()
    result = "error"
    try:
        value = read(send())
        result = "ok"
        return value
    except PartnerError as exc:
        result = exc.code
        raise
    finally:
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


def account_secrets(api_key: str, signing: SecretStr, others: Iterable[SecretStr]) -> tuple[str, ...]:
    """Everything of one partner account that ``safe_text`` must cut out of partner error text.

    Partners echo request fragments; the webhook and previous secrets are not sent by a client, but an
    echo of a misconfigured value must not reach logs or events either."""
    return (api_key, signing.get_secret_value(), *(secret.get_secret_value() for secret in others))


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
