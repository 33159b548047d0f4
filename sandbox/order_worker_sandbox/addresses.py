"""Address checks and deterministic address/hash generation.

TRON checks are exact (base58check, version byte 0x41, double-SHA-256 checksum) because itrx delegates
to a real on-chain account. The 0trace checks default to *shape* checks (prefix, alphabet, length) since
the spec's own examples (``TXyzExampleRecipientAddress0001``) are not checksummed; ``strict`` adds the
TRON checksum and exact Ethereum hex length.
"""

from __future__ import annotations

import hashlib
import re

B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(B58_ALPHABET)}
TRON_VERSION = 0x41


def b58decode(text: str) -> bytes | None:
    num = 0
    for ch in text:
        digit = _B58_INDEX.get(ch)
        if digit is None:
            return None
        num = num * 58 + digit
    pad = len(text) - len(text.lstrip("1"))
    body = num.to_bytes((num.bit_length() + 7) // 8, "big") if num else b""
    return b"\x00" * pad + body


def b58encode(data: bytes) -> str:
    num = int.from_bytes(data, "big")
    out = []
    while num:
        num, rem = divmod(num, 58)
        out.append(B58_ALPHABET[rem])
    pad = len(data) - len(data.lstrip(b"\x00"))
    return "1" * pad + "".join(reversed(out))


def _checksum(payload: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]


def is_tron_address(text: object) -> bool:
    """Base58check, 25 bytes: 0x41 + 20-byte account id + 4-byte double-SHA-256 checksum."""
    if not isinstance(text, str) or len(text) != 34 or not text.startswith("T"):
        return False
    raw = b58decode(text)
    if raw is None or len(raw) != 25 or raw[0] != TRON_VERSION:
        return False
    return _checksum(raw[:21]) == raw[21:]


def tron_address_from_seed(seed: bytes) -> str:
    payload = bytes([TRON_VERSION]) + hashlib.sha256(seed).digest()[:20]
    return b58encode(payload + _checksum(payload))


def hex_hash(seed: str) -> str:
    """A 64-hex pseudo transaction id, stable for a given seed (handy for reproducible runs)."""
    return hashlib.sha256(seed.encode("utf-8")).hexdigest()


_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def payin_address(network: str, seed: str) -> str:
    """A plausible, deterministic deposit address for an order on ``network``."""
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    if network == "Tron":
        return tron_address_from_seed(digest)
    if network == "Ethereum":
        return "0x" + digest[:20].hex()
    tail = "".join(_BECH32[b % 32] for b in digest[:38] + digest[:6])[:38]
    return ("ltc1q" if network == "Litecoin" else "bc1q") + tail


_SHAPES: dict[str, re.Pattern[str]] = {
    "Bitcoin": re.compile(r"^(?:(?:bc1|tb1)[a-z0-9]{6,87}|[13mn2][1-9A-HJ-NP-Za-km-z]{25,39})$"),
    "Litecoin": re.compile(r"^(?:(?:ltc1|tltc1)[a-z0-9]{6,87}|[LM3][1-9A-HJ-NP-Za-km-z]{25,39})$"),
    "Ethereum": re.compile(r"^0x[0-9a-fA-F]{40}$"),
    "Tron": re.compile(r"^T[A-Za-z0-9]{9,199}$"),
}


def valid_for_network(network: str, address: object, *, strict: bool = False) -> bool:
    """Length 10..200 plus the network's shape; ``strict`` also verifies TRON checksums."""
    if not isinstance(address, str) or not 10 <= len(address) <= 200:
        return False
    shape = _SHAPES.get(network)
    if shape is None or not shape.match(address):
        return False
    if strict and network == "Tron":
        return is_tron_address(address)
    return True
