"""Request signing and push verification for both partners.

Everything here works on bytes, because both partners sign bytes: a signature computed over anything but
the exact body that travels (or arrived) is a signature over a different message. Verification always
uses constant-time comparison and tries every configured secret, so a secret can be rotated without a
window in which genuine pushes are refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets as _secrets
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

from pydantic import SecretStr

SecretLike = str | SecretStr
ItrxForm = Literal["raw", "compact_sorted", "python_default"]

# 0trace webhook window (spec §11.3): at most 60 s in the future, at most 300 s in the past.
ZEROTRACE_MAX_FUTURE = 60.0
ZEROTRACE_MAX_AGE = 300.0
# itrx callback window: the docs' sample verifier flags callbacks older than 100 s; the future bound is ours.
ITRX_MAX_FUTURE = 60.0
ITRX_MAX_AGE = 100.0

NONCE_BYTES = 16


def _secret_bytes(secret: SecretLike) -> bytes:
    value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    return value.encode("utf-8")


def _hmac_hex(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _matches_any(expected: Iterable[bytes], presented: bytes) -> bool:
    """Compare against every candidate without stopping early, so timing says nothing about which one hit."""
    hit = False
    for candidate in expected:
        hit |= hmac.compare_digest(candidate, presented)
    return hit


# --- nonces -----------------------------------------------------------------------------------------


def new_nonce() -> str:
    """32 hex characters: inside 0trace's 16..64 window and drawn from an alphabet every server accepts."""
    return _secrets.token_hex(NONCE_BYTES)


# --- 0trace -----------------------------------------------------------------------------------------


def sign_body(body: bytes, secret: SecretLike) -> str:
    """0trace ``X-API-SIGN`` / ``X-Partner-Webhook-Sign``: only the body is signed, nothing else."""
    return _hmac_hex(_secret_bytes(secret), body)


def body_signer(secret: SecretLike) -> Callable[[bytes], str]:
    """``sign_body`` with the secret encoded once, for a client that signs every request it sends."""
    key = _secret_bytes(secret)
    return lambda body: _hmac_hex(key, body)


def verify_zerotrace_webhook(raw_body: bytes, header_sign: str | None, secrets: Iterable[SecretLike]) -> bool:
    """True when any configured webhookSecret produced ``header_sign`` over ``raw_body``.

    The docs say "hex" without a case, so the header is lower-cased before comparing; anything that is
    not 64 hex characters is refused before any HMAC is computed.
    """
    presented = (header_sign or "").strip().lower().encode("utf-8", "replace")
    if len(presented) != 64:
        return False
    expected = [sign_body(raw_body, secret).encode("ascii") for secret in secrets]
    return _matches_any(expected, presented)


def timestamp_in_window(
    timestamp: str | float | None, *, now: float | None = None, max_future: float, max_age: float
) -> bool:
    """Accept iff ``-max_future <= now - ts <= max_age``; unparseable timestamps are refused."""
    if timestamp is None:
        return False
    try:
        ts = float(timestamp)
    except (TypeError, ValueError):
        return False
    if not math.isfinite(ts):
        return False
    delta = (time.time() if now is None else now) - ts
    return -max_future <= delta <= max_age


def zerotrace_timestamp_ok(timestamp: str | float | None, now: float | None = None) -> bool:
    """The receiver-scaffold window for ``X-Partner-Webhook-Timestamp``: -60 <= now - ts <= 300."""
    return timestamp_in_window(timestamp, now=now, max_future=ZEROTRACE_MAX_FUTURE, max_age=ZEROTRACE_MAX_AGE)


# --- itrx -------------------------------------------------------------------------------------------


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
    return _hmac_hex(_secret_bytes(secret), itrx_message(timestamp, body))


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
    keys = [_secret_bytes(secret) for secret in secrets]
    for form, body in _itrx_forms(raw_body):
        message = itrx_message(timestamp, body)
        if _matches_any((_hmac_hex(key, message).encode("ascii") for key in keys), presented):
            return form
    return None


def itrx_timestamp_ok(timestamp: str | float | None, now: float | None = None) -> bool:
    """Optional freshness check for callbacks, mirroring the docs' 100 s sample (future skew is ours)."""
    return timestamp_in_window(timestamp, now=now, max_future=ITRX_MAX_FUTURE, max_age=ITRX_MAX_AGE)
