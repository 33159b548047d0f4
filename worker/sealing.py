"""Order tokens at rest: AES-256-GCM with a key id and the partner order id as associated data.

The 0trace token is shown once and is the only way to read an order through the API, so it is stored, but
never in clear: a database dump alone reveals nothing, and binding the order id as associated data means a
sealed token copied onto another order's row fails to open instead of silently working. The key id in the
envelope lets operators rotate keys (seal with the new one, keep the old one to open existing rows).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

_VERSION = b"\x01"
_NONCE_BYTES = 12


class SealError(Exception):
    """A sealed token could not be opened (unknown key id, tampered, or bound to another order)."""


@dataclass(frozen=True)
class TokenSealer:
    keys: dict[str, AESGCM] = field(repr=False)
    active_key_id: str

    @classmethod
    def from_settings(cls, token_keys: list[SecretStr]) -> TokenSealer:
        """Parse ``KEY_ID:BASE64`` entries (already validated by Settings); the first one seals."""
        keys: dict[str, AESGCM] = {}
        for entry in token_keys:
            key_id, _, material = entry.get_secret_value().partition(":")
            keys[key_id] = AESGCM(base64.b64decode(material))
        first = token_keys[0].get_secret_value().partition(":")[0]
        return cls(keys=keys, active_key_id=first)

    def seal(self, token: str, order_id: str) -> bytes:
        key_id = self.active_key_id.encode()
        nonce = os.urandom(_NONCE_BYTES)
        ciphertext = self.keys[self.active_key_id].encrypt(nonce, token.encode(), order_id.encode())
        return _VERSION + bytes([len(key_id)]) + key_id + nonce + ciphertext

    def open(self, sealed: bytes, order_id: str) -> str:
        """Fail closed: any doubt about the envelope raises SealError, never returns a guess."""
        if len(sealed) < 2 or sealed[:1] != _VERSION:
            raise SealError("unknown sealed-token format")
        id_len = sealed[1]
        key_id = sealed[2 : 2 + id_len].decode(errors="replace")
        body = sealed[2 + id_len :]
        key = self.keys.get(key_id)
        if key is None:
            raise SealError(f"token sealed with key id {key_id!r}, which is not configured")
        try:
            return key.decrypt(body[:_NONCE_BYTES], body[_NONCE_BYTES:], order_id.encode()).decode()
        except (InvalidTag, ValueError):
            raise SealError("sealed token failed authentication (wrong key or wrong order)") from None

    @staticmethod
    def key_id_of(sealed: bytes) -> str:
        return sealed[2 : 2 + sealed[1]].decode(errors="replace")
