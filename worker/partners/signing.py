"""HMAC helpers every partner's signing shares.

Everything here works on bytes, because partners sign bytes: a signature computed over anything but the
exact body that travels (or arrived) is a signature over a different message. Verification always uses
constant-time comparison and tries every configured secret, so a secret can be rotated without a window
in which genuine pushes are refused.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets as _secrets
import time
from collections.abc import Iterable

from pydantic import SecretStr

SecretLike = str | SecretStr
NONCE_BYTES = 16


def secret_bytes(secret: SecretLike) -> bytes:
    value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    return value.encode("utf-8")


def hmac_hex(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def matches_any(expected: Iterable[bytes], presented: bytes) -> bool:
    """Compare against every candidate without stopping early, so timing says nothing about which one hit."""
    hit = False
    for candidate in expected:
        hit |= hmac.compare_digest(candidate, presented)
    return hit


# --- nonces -----------------------------------------------------------------------------------------


def new_nonce() -> str:
    """32 hex characters: inside 0trace's 16..64 window and drawn from an alphabet every server accepts."""
    return _secrets.token_hex(NONCE_BYTES)


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
