"""0trace request signing and webhook verification (spec §3, §11): only the body is signed, nothing else."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from worker.partners.signing import SecretLike, hmac_hex, matches_any, secret_bytes, timestamp_in_window

# 0trace webhook window (spec §11.3): at most 60 s in the future, at most 300 s in the past.
MAX_FUTURE = 60.0
MAX_AGE = 300.0


def sign_body(body: bytes, secret: SecretLike) -> str:
    """0trace ``X-API-SIGN`` / ``X-Partner-Webhook-Sign``: only the body is signed, nothing else."""
    return hmac_hex(secret_bytes(secret), body)


def body_signer(secret: SecretLike) -> Callable[[bytes], str]:
    """``sign_body`` with the secret encoded once, for a client that signs every request it sends."""
    key = secret_bytes(secret)
    return lambda body: hmac_hex(key, body)


def verify_zerotrace_webhook(raw_body: bytes, header_sign: str | None, secrets: Iterable[SecretLike]) -> bool:
    """True when any configured webhookSecret produced ``header_sign`` over ``raw_body``.

    The docs say "hex" without a case, so the header is lower-cased before comparing; anything that is
    not 64 hex characters is refused before any HMAC is computed.
    """
    presented = (header_sign or "").strip().lower().encode("utf-8", "replace")
    if len(presented) != 64:
        return False
    expected = [sign_body(raw_body, secret).encode("ascii") for secret in secrets]
    return matches_any(expected, presented)


def zerotrace_timestamp_ok(timestamp: str | float | None, now: float | None = None) -> bool:
    """The receiver-scaffold window for ``X-Partner-Webhook-Timestamp``: -60 <= now - ts <= 300."""
    return timestamp_in_window(timestamp, now=now, max_future=MAX_FUTURE, max_age=MAX_AGE)
