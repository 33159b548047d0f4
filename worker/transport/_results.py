"""The ``result`` of a partner call as a metric label: a short, closed vocabulary instead of raw codes.

Raw codes are the partner's own (0trace answers ``5`` for its rate limit, itrx ``errno_<n>`` with any n)
or the transport's; neither reads well on a dashboard, and a partner inventing codes would add series
without end. Each partner names its own codes (:attr:`~worker.partners.contract.Capabilities.
call_results`); the transport names its own and the HTTP statuses; everything else is ``other``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class CallResult(StrEnum):
    OK = "ok"
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    """Nothing reached the partner: DNS, refused or failed connection, proxy, no pooled connection."""
    CONNECTION_LOST = "connection_lost"
    BAD_ANSWER = "bad_answer"
    """An answer that could not be read: not HTTP, not the partner's format, over a size cap."""
    TLS = "tls"
    AUTH = "auth"
    INVALID = "invalid"
    """The request itself was refused as malformed (by us before sending, or by the partner)."""
    NOT_FOUND = "not_found"
    REFUSED = "refused"
    """The partner read the request and declined it for a business reason (balance, duplicate...)."""
    UNAVAILABLE = "unavailable"
    """The partner or its upstream is temporarily down (502/503/504, an upstream error code)."""
    SERVER_ERROR = "server_error"
    INTERNAL = "internal"
    """Our own code failed reading the answer: a bug, not the partner."""
    OTHER = "other"


RESULTS = frozenset(item.value for item in CallResult)

_TRANSPORT: Mapping[str, CallResult] = {
    "error": CallResult.INTERNAL,
    "timeout": CallResult.TIMEOUT,
    "connect_timeout": CallResult.TIMEOUT,
    "dns": CallResult.UNREACHABLE,
    "connect_failed": CallResult.UNREACHABLE,
    "connection_refused": CallResult.UNREACHABLE,
    "proxy_unreachable": CallResult.UNREACHABLE,
    "proxy_refused": CallResult.UNREACHABLE,
    "pool_unavailable": CallResult.UNREACHABLE,
    "connection_closed": CallResult.CONNECTION_LOST,
    "connection_reset": CallResult.CONNECTION_LOST,
    "truncated_response": CallResult.CONNECTION_LOST,
    "protocol_error": CallResult.BAD_ANSWER,
    "decode_error": CallResult.BAD_ANSWER,
    "response_too_large": CallResult.BAD_ANSWER,
    "header_too_large": CallResult.BAD_ANSWER,
    "bad_response": CallResult.BAD_ANSWER,
    "transport_error": CallResult.BAD_ANSWER,
    "tls_verify": CallResult.TLS,
    "tls_client_cert": CallResult.TLS,
    "tls_error": CallResult.TLS,
    "bad_url": CallResult.INVALID,
    "bad_request_header": CallResult.INVALID,
    "invalid_request": CallResult.INVALID,
}

_HTTP: Mapping[int, CallResult] = {
    400: CallResult.INVALID,
    401: CallResult.AUTH,
    403: CallResult.AUTH,
    404: CallResult.NOT_FOUND,
    408: CallResult.TIMEOUT,
    422: CallResult.INVALID,
    429: CallResult.RATE_LIMITED,
    502: CallResult.UNAVAILABLE,
    503: CallResult.UNAVAILABLE,
    504: CallResult.UNAVAILABLE,
}


def call_result(code: str, partner_codes: Mapping[str, str] | None = None) -> str:
    """The named result of a call that ended with ``code`` ("ok" or a ``PartnerError`` code).

    The partner's own names win (it knows what its codes mean); a name outside the vocabulary counts as
    ``other`` so that no mapping, however wrong, can add a label value."""
    if code == CallResult.OK:
        return CallResult.OK.value
    named = (partner_codes or {}).get(code)
    if named is not None:
        return str(named) if named in RESULTS else CallResult.OTHER.value
    known = _TRANSPORT.get(code)
    if known is not None:
        return known.value
    if code.startswith("http_") and code[5:].isdigit():
        return _http_result(int(code[5:])).value
    return CallResult.OTHER.value


def _http_result(status: int) -> CallResult:
    known = _HTTP.get(status)
    if known is not None:
        return known
    if 500 <= status < 600:
        return CallResult.SERVER_ERROR
    if 400 <= status < 500:
        return CallResult.REFUSED
    return CallResult.OTHER
