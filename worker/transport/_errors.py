"""Every way a partner call can fail, mapped in one place to what is provable about the request.

What matters is not making requests, it is telling *how* a request failed: a request that never left is
safe to repeat against any partner, one that may have been received is not (itrx create is not
idempotent). The tree of outcomes, by the moment the failure happened::

    before any byte of the request could reach the partner            -> Fate.NOT_SENT
    ├── bad URL, bad header value (refused before connecting)         bad_url, bad_request_header (final)
    ├── name resolution failed                                        dns
    ├── connect refused / failed, TLS handshake failed                connection_refused, connect_failed
    ├── connect (or TLS handshake) timed out                          connect_timeout
    ├── proxy unreachable                                             proxy_unreachable
    ├── proxy refused the CONNECT tunnel                              proxy_refused
    ├── partner certificate rejected by us                            tls_verify (final)
    ├── our client certificate refused by the partner's TLS layer     tls_client_cert (final)
    └── no pooled connection available                                pool_unavailable
    after the request may have been sent                              -> Fate.UNKNOWN (retryable)
    ├── no (whole) answer within the read timeout                     timeout
    ├── closed before answering / reset / broken pipe                 connection_closed, connection_reset
    ├── answer cut short                                              truncated_response
    ├── not HTTP, or a broken exchange                                protocol_error
    ├── answer over a cap (bytes, decoded bytes, header block)        response_too_large, header_too_large
    ├── compressed body that does not decode                          decode_error
    ├── any other TLS failure                                         tls_error
    └── anything else                                                 transport_error

The partner's own answers (any status) are not failures here: the provider clients interpret them.

urllib3 and http.client raise these as a handful of exception types, often nested (urllib3 keeps the
socket error as an argument or a cause), so classification looks through the whole chain. Error texts
carry the method and the URL path only: no host, no query, no userinfo, no body.
"""

from __future__ import annotations

import http.client
import ssl
import zlib
from collections.abc import Iterator
from urllib.parse import urlsplit

from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    EmptyPoolError,
    IncompleteRead,
    InvalidChunkLength,
    LocationValueError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)

from worker.transport._limits import AnswerDeadline, AnswerTooLarge
from worker.transport._outcome import Fate, PartnerError


class TunnelRefused(OSError):
    """The proxy answered the CONNECT with something other than 200: the tunnel never opened."""


class HandshakeFailed(OSError):
    """The connection or its TLS handshake failed before the request was written."""


# OpenSSL's names for the alerts a server sends when it refuses our client certificate (or its absence).
_CLIENT_CERT_ALERTS = ("CERTIFICATE_REQUIRED", "BAD_CERTIFICATE", "UNKNOWN_CA", "HANDSHAKE_FAILURE")


def where(method: str, url: str) -> str:
    """Method and path only: hosts can carry userinfo and queries can carry identifiers."""
    try:
        path = urlsplit(url).path or "/"
    except ValueError:
        path = "?"
    return f"{method} {path}"


def _causes(exc: BaseException) -> Iterator[BaseException]:
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


def _first(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    return next((item for item in _causes(exc) if isinstance(item, kind)), None)


def not_sent(code: str, reason: str, retryable: bool = True) -> PartnerError:
    return PartnerError(fate=Fate.NOT_SENT, code=code, reason=reason, retryable=retryable)


def unknown(code: str, reason: str, http_status: int | None = None) -> PartnerError:
    return PartnerError(fate=Fate.UNKNOWN, code=code, reason=reason, retryable=True, http_status=http_status)


def too_large(exc: AnswerTooLarge, method: str, url: str, status: int | None) -> PartnerError:
    code = "header_too_large" if exc.what == "headers" else "response_too_large"
    return unknown(code, f"{where(method, url)}: {exc.what} larger than {exc.limit} bytes", status)


def classify_transport_error(
    exc: BaseException, method: str, url: str, read_timeout: float | None = None
) -> PartnerError:
    """Map a transport exception to what is provable about the request's fate (see the module's tree)."""
    place = where(method, url)
    if isinstance(exc, AnswerTooLarge):
        return too_large(exc, method, url, None)
    early = _before_sending(exc, place)
    if early is not None:
        return early
    if isinstance(exc, ReadTimeoutError | AnswerDeadline) or _caused_by(exc, AnswerDeadline):
        limit = f" after {read_timeout:g}s" if read_timeout else ""
        return unknown("timeout", f"{place}: no answer{limit} (request may have been received)")
    if isinstance(exc, SSLError) or _caused_by(exc, ssl.SSLError):
        return unknown("tls_error", f"{place}: TLS failure")
    if _caused_by(exc, AnswerTooLarge):
        found = _first(exc, AnswerTooLarge)
        assert isinstance(found, AnswerTooLarge)
        return too_large(found, method, url, None)
    return _broken_exchange(exc, place)


def _before_sending(exc: BaseException, place: str) -> PartnerError | None:
    """NOT_SENT outcomes: each proves the request was never written to a connection that reaches the
    partner. Order matters: NameResolutionError < NewConnectionError < ConnectTimeoutError in urllib3."""
    if _caused_by(exc, TunnelRefused):
        return not_sent("proxy_refused", f"{place}: the proxy refused to open a tunnel")
    if isinstance(exc, ProxyError):
        return not_sent("proxy_unreachable", f"{place}: could not reach the proxy")
    if isinstance(exc, NameResolutionError):
        return not_sent("dns", f"{place}: partner host name did not resolve")
    if isinstance(exc, NewConnectionError):
        refused = _caused_by(exc, ConnectionRefusedError)
        code = "connection_refused" if refused else "connect_failed"
        return not_sent(code, f"{place}: could not open a connection ({'refused' if refused else 'failed'})")
    if isinstance(exc, ConnectTimeoutError):
        return not_sent("connect_timeout", f"{place}: connect timed out")
    if _caused_by(exc, ssl.SSLCertVerificationError, ssl.CertificateError):
        return not_sent("tls_verify", f"{place}: partner TLS certificate rejected", retryable=False)
    tls = _first(exc, ssl.SSLError)
    alert = str(getattr(tls, "reason", "") or "")
    if tls is not None and any(name in alert for name in _CLIENT_CERT_ALERTS):
        # The partner's TLS layer ended the handshake: nothing we wrote after it reached its application.
        return not_sent("tls_client_cert", f"{place}: partner refused our TLS client certificate", False)
    if _caused_by(exc, HandshakeFailed):
        if _caused_by(exc, TimeoutError):
            return not_sent("connect_timeout", f"{place}: connect timed out")
        return not_sent("connect_failed", f"{place}: could not open a connection (failed)")
    if isinstance(exc, LocationValueError | http.client.InvalidURL):
        return not_sent("bad_url", f"{place}: invalid partner URL", retryable=False)
    if isinstance(exc, EmptyPoolError | ClosedPoolError):
        return not_sent("pool_unavailable", f"{place}: no connection available")
    return None


def _broken_exchange(exc: BaseException, place: str) -> PartnerError:
    if _caused_by(exc, IncompleteRead, InvalidChunkLength, http.client.IncompleteRead):
        return unknown("truncated_response", f"{place}: answer cut short")
    if _caused_by(exc, http.client.LineTooLong):
        return unknown("header_too_large", f"{place}: answer header line too long")
    if _caused_by(exc, zlib.error):
        return unknown("decode_error", f"{place}: compressed answer could not be decoded")
    if _caused_by(exc, http.client.RemoteDisconnected):
        return unknown("connection_closed", f"{place}: partner closed the connection before answering")
    if _caused_by(exc, ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
        return unknown("connection_reset", f"{place}: connection reset")
    if isinstance(exc, ProtocolError) or _caused_by(exc, http.client.HTTPException):
        return unknown("protocol_error", f"{place}: malformed or broken HTTP exchange")
    return unknown("transport_error", f"{place}: {type(exc).__name__}")
