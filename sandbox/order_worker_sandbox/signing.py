"""The sandbox's own signature rules, written from the specs and independent of the worker's signer.

Keeping a separate implementation is the point: if the worker signs wrongly, the sandbox must refuse,
not agree because both share one buggy helper. These are pure functions so the spec test vectors can be
checked against exactly the code the HTTP handlers use.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Literal

ItrxForm = Literal["raw", "canonical"]


def hmac_hex(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


# --- 0trace -------------------------------------------------------------------------------------


def zerotrace_sign(body: bytes, secret: str) -> str:
    """``X-API-SIGN`` / ``X-Partner-Webhook-Sign``: lower-case hex HMAC-SHA256 of the body bytes only."""
    return hmac_hex(secret.encode("utf-8"), body)


def zerotrace_verify(body: bytes, secret: str, signature: str) -> bool:
    """Exact, constant-time check. Upper-case hex is refused: the docs specify lower-case output."""
    expected = zerotrace_sign(body, secret)
    return hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace"))


# --- itrx ---------------------------------------------------------------------------------------


def canonical_json(data: Any) -> bytes:
    """The docs' reference form: ``json.dumps(sort_keys=True, separators=(',', ':'))``, ASCII-escaped."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def itrx_message(timestamp: str, body: bytes) -> bytes:
    return timestamp.encode("ascii") + b"&" + body


def itrx_sign(body: bytes, timestamp: str, secret: str) -> str:
    """``hex(HMAC-SHA256(key=ASCII bytes of the secret text, msg="<timestamp>&<body>"))``."""
    return hmac_hex(secret.encode("ascii"), itrx_message(timestamp, body))


def itrx_verify(
    body: bytes,
    timestamp: str,
    secret: str,
    signature: str,
    mode: Literal["raw", "raw_or_canonical", "strict_canonical"] = "raw",
) -> ItrxForm | None:
    """Which body form the signature matched, or None.

    * ``raw``: only the bytes received.
    * ``raw_or_canonical``: also the Python-canonical re-serialisation of the parsed body (what a server
      that re-serialises would hash).
    * ``strict_canonical``: the raw bytes must match *and* already be canonical, i.e. a body every plausible
      server implementation would accept.
    """
    sig = signature.encode("utf-8", "replace")
    raw_ok = hmac.compare_digest(itrx_sign(body, timestamp, secret).encode("ascii"), sig)
    if mode == "raw":
        return "raw" if raw_ok else None
    canonical = _canonical_or_none(body)
    if mode == "strict_canonical":
        return "raw" if raw_ok and canonical == body else None
    if raw_ok:
        return "raw"
    if canonical is not None and hmac.compare_digest(
        itrx_sign(canonical, timestamp, secret).encode("ascii"), sig
    ):
        return "canonical"
    return None


def _canonical_or_none(body: bytes) -> bytes | None:
    try:
        return canonical_json(json.loads(body))
    except (ValueError, UnicodeDecodeError):
        return None


def itrx_callback(payload: dict[str, Any], timestamp: str, secret: str) -> tuple[bytes, str]:
    """Callback body bytes and SIGNATURE: compact sorted ASCII JSON, signed exactly as sent."""
    body = canonical_json(payload)
    return body, itrx_sign(body, timestamp, secret)
