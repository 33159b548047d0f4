"""itrx callbacks: a signed trigger to re-read the order, never a source of truth (no documented schema)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import SecretStr

from worker.logs import get_logger
from worker.partners.contract import IgnoredPush, Push
from worker.partners.itrx.client import parse_callback
from worker.partners.itrx.signing import MAX_FUTURE, verify_itrx_callback

log = get_logger(__name__)


class ItrxPushes:
    signature_header = "signature"
    timestamp_header = "timestamp"
    max_future = MAX_FUTURE
    delivered_status: int | None = 200
    """itrx counts only HTTP 200 as delivered and would redeliver a 202 seven more times."""

    def __init__(self, secrets: Sequence[SecretStr], max_age: float) -> None:
        self._secrets = [secret.get_secret_value() for secret in secrets]
        self.max_age = max_age

    def verify(self, raw: bytes, signature: str, timestamp: str) -> bool:
        form = verify_itrx_callback(raw, timestamp, signature, self._secrets)
        if form is not None and form != "raw":
            log.info("push_verified_reserialised", provider="itrx", form=form)
        return form is not None

    def parse(self, body: Mapping[str, Any]) -> Push | IgnoredPush:
        serial, out_trade_no, _claimed = parse_callback(body)
        return Push(
            dedupe_key=f"itrx:{serial or out_trade_no}:{body.get('status')}",
            order_id=serial,
            partner_ref=out_trade_no,
        )
