"""0trace webhooks (spec §11): ``order.status_changed`` carries the whole order DTO, signed over the body."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import SecretStr

from worker.partners.contract import IgnoredPush, Push
from worker.partners.zerotrace.client import parse_order
from worker.partners.zerotrace.signing import MAX_AGE, MAX_FUTURE, verify_zerotrace_webhook


class ZeroTracePushes:
    signature_header = "x-partner-webhook-sign"
    timestamp_header = "x-partner-webhook-timestamp"
    max_future = MAX_FUTURE
    max_age = MAX_AGE
    delivered_status: int | None = None

    def __init__(self, secrets: Sequence[SecretStr]) -> None:
        self._secrets = [secret.get_secret_value() for secret in secrets]

    def verify(self, raw: bytes, signature: str, timestamp: str) -> bool:
        return verify_zerotrace_webhook(raw, signature, self._secrets)

    def parse(self, body: Mapping[str, Any]) -> Push | IgnoredPush:
        event = body.get("event")
        if event != "order.status_changed":
            return IgnoredPush(f"event:{str(event)[:64]}:{body.get('ts')}")
        if not isinstance(body.get("order"), dict):
            raise ValueError("order.status_changed without an order object")
        observed = parse_order(body["order"])
        return Push(
            dedupe_key=f"order:{observed.order_id}:{observed.provider_status}",
            order_id=observed.order_id,
            observed=observed,
        )
