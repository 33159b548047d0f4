"""itrx request signing and callback verification (spec §3, §7): HMAC over ``<timestamp>&<body>``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Literal

from worker.partners.signing import SecretLike, hmac_hex, matches_any, secret_bytes, timestamp_in_window

ItrxForm = Literal["raw", "compact_sorted", "python_default"]

# itrx callback window: the docs' sample verifier flags callbacks older than 100 s; the future bound is ours.
MAX_FUTURE = 60.0
MAX_AGE = 100.0


def canonical_json(obj: Any) -> bytes:
    """The itrx Python sample's serialisation; ASCII-only, so any server-side re-check gives these bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _python_default_json(obj: Any) -> bytes:
    """``json.dumps(body, sort_keys=True)`` as the docs' Python callback verifier does (spaces included)."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=True).encode("ascii")


def itrx_message(timestamp: str, body: bytes) -> bytes:
    """``<timestamp>&<body>``; the timestamp must be ASCII (it is a decimal number on the wire)."""
    return timestamp.encode("ascii") + b"&" + body


def itrx_sign(secret: SecretLike, timestamp: str, body: bytes) -> str:
    """itrx ``SIGNATURE``: the key is the secret's own text bytes, never hex-decoded."""
    return hmac_hex(secret_bytes(secret), itrx_message(timestamp, body))


def _itrx_forms(raw_body: bytes) -> list[tuple[ItrxForm, bytes]]:
    """Candidate signed bodies, most faithful first (spec §7): the raw bytes, then two re-serialisations."""
    forms: list[tuple[ItrxForm, bytes]] = [("raw", raw_body)]
    try:
        parsed = json.loads(raw_body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return forms
    forms.append(("compact_sorted", canonical_json(parsed)))
    forms.append(("python_default", _python_default_json(parsed)))
    return forms


def verify_itrx_callback(
    raw_body: bytes, timestamp: str | None, signature: str | None, secrets: Iterable[SecretLike]
) -> ItrxForm | None:
    """Which serialisation form the callback's signature matched, or None when none did.

    The callback docs contradict themselves about the signed serialisation, so the caller gets the form
    back and can log it: if itrx ever signs differently, the log says so before verification breaks.
    """
    presented = (signature or "").strip().lower().encode("utf-8", "replace")
    if not timestamp or len(presented) != 64 or not timestamp.isascii():
        return None
    keys = [secret_bytes(secret) for secret in secrets]
    for form, body in _itrx_forms(raw_body):
        message = itrx_message(timestamp, body)
        if matches_any((hmac_hex(key, message).encode("ascii") for key in keys), presented):
            return form
    return None


def itrx_timestamp_ok(timestamp: str | float | None, now: float | None = None) -> bool:
    """Optional freshness check for callbacks, mirroring the docs' 100 s sample (future skew is ours)."""
    return timestamp_in_window(timestamp, now=now, max_future=MAX_FUTURE, max_age=MAX_AGE)
