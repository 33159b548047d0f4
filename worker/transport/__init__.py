"""How order-worker talks to partners over HTTP: one client per partner, on urllib3.

The public surface is this module; the rest is private. :class:`PartnerHttp` sends a request and returns
an :class:`HttpAnswer` (any status) or raises :class:`PartnerError` whose fate says
what is provable about the request (:func:`classify_transport_error`). :class:`TransportSettings` says how
the calls travel. The helpers below are what the partner clients share.
"""

from worker.transport._client import USER_AGENT, HttpAnswer, PartnerHttp
from worker.transport._errors import classify_transport_error
from worker.transport._helpers import (
    Observer,
    PartnerAccount,
    decode_json_object,
    notify,
    observed_exchange,
    parse_retry_after,
    safe_text,
)
from worker.transport._outcome import Fate, PartnerError
from worker.transport._results import RESULTS, CallResult, call_result
from worker.transport._settings import DEFAULT_MAX_RESPONSE_BYTES, TransportSettings

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "RESULTS",
    "USER_AGENT",
    "CallResult",
    "Fate",
    "HttpAnswer",
    "Observer",
    "PartnerAccount",
    "PartnerError",
    "PartnerHttp",
    "TransportSettings",
    "call_result",
    "classify_transport_error",
    "decode_json_object",
    "notify",
    "observed_exchange",
    "parse_retry_after",
    "safe_text",
]
