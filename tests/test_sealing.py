"""Tokens at rest: sealed with AES-GCM, bound to their order, openable after key rotation, fail closed."""

from __future__ import annotations

import base64

import pytest
from pydantic import SecretStr

from worker.sealing import SealError, TokenSealer

TOKEN = "Zk3hQ9tXb2vN8mR4pL6sW1yC5dF7gJ0aE3uK9oT2iYw"


def key(key_id: str, fill: bytes) -> SecretStr:
    return SecretStr(f"{key_id}:{base64.b64encode(fill * 32).decode()}")


def test_round_trip_and_no_plaintext() -> None:
    sealer = TokenSealer.from_settings([key("k1", b"a")])
    sealed = sealer.seal(TOKEN, "order-1")
    assert TOKEN.encode() not in sealed
    assert sealer.open(sealed, "order-1") == TOKEN
    assert TokenSealer.key_id_of(sealed) == "k1"


def test_bound_to_order_id() -> None:
    sealer = TokenSealer.from_settings([key("k1", b"a")])
    with pytest.raises(SealError):
        sealer.open(sealer.seal(TOKEN, "order-1"), "order-2")


def test_rotation_new_key_seals_old_key_opens() -> None:
    old = TokenSealer.from_settings([key("k1", b"a")])
    sealed_old = old.seal(TOKEN, "o")
    rotated = TokenSealer.from_settings([key("k2", b"b"), key("k1", b"a")])
    assert rotated.open(sealed_old, "o") == TOKEN
    assert TokenSealer.key_id_of(rotated.seal(TOKEN, "o")) == "k2"


def test_wrong_or_missing_key_fails_closed() -> None:
    sealed = TokenSealer.from_settings([key("k1", b"a")]).seal(TOKEN, "o")
    with pytest.raises(SealError, match="not configured"):
        TokenSealer.from_settings([key("k9", b"a")]).open(sealed, "o")
    with pytest.raises(SealError):
        TokenSealer.from_settings([key("k1", b"z")]).open(sealed, "o")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(SealError):
        TokenSealer.from_settings([key("k1", b"a")]).open(tampered, "o")
    assert TOKEN not in repr(TokenSealer.from_settings([key("k1", b"a")]))
