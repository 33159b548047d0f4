"""Counters behind ``GET /_sandbox/stats``: what tests assert on instead of guessing from logs.

Plain dict increments (a few tens of nanoseconds) so counting every request is free at benchmark rates.
"""

from __future__ import annotations

from collections import Counter
from typing import Any


class Stats:
    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.requests: Counter[str] = Counter()
        self.responses: Counter[tuple[str, int]] = Counter()
        self.auth_failures: Counter[str] = Counter()
        self.signature_failures: Counter[str] = Counter()
        self.rate_limited: Counter[str] = Counter()
        # Per 0trace apiKey (one partner account each): weight accepted, the most weight its window ever
        # held, and the calls it answered 429 for its own budget.
        self.weight_by_key: Counter[str] = Counter()
        self.peak_weight_by_key: dict[str, int] = {}
        self.rate_limited_by_key: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.orders_created: Counter[str] = Counter()
        self.signature_forms: Counter[str] = Counter()
        self.deliveries: dict[str, Counter[str]] = {"0trace": Counter(), "itrx": Counter()}

    def to_json(self) -> dict[str, Any]:
        responses: dict[str, dict[str, int]] = {}
        for (endpoint, status), n in sorted(self.responses.items()):
            responses.setdefault(endpoint, {})[str(status)] = n
        return {
            "requests": dict(sorted(self.requests.items())),
            "responses": responses,
            "auth_failures": dict(sorted(self.auth_failures.items())),
            "signature_failures": {"0trace": 0, "itrx": 0, **self.signature_failures},
            "rate_limited": {"total": sum(self.rate_limited.values()), **self.rate_limited},
            "zerotrace_keys": {
                key: {
                    "weight": self.weight_by_key[key],
                    "peak_window_weight": self.peak_weight_by_key.get(key, 0),
                    "rate_limited": self.rate_limited_by_key[key],
                }
                for key in sorted(self.weight_by_key.keys() | self.rate_limited_by_key.keys())
            },
            "faults_triggered": dict(sorted(self.faults.items())),
            "orders_created": {"0trace": 0, "itrx": 0, **self.orders_created},
            "itrx_signature_forms": dict(self.signature_forms),
            "webhooks": _delivery_counts(self.deliveries["0trace"]),
            "callbacks": _delivery_counts(self.deliveries["itrx"]),
        }


def _delivery_counts(c: Counter[str]) -> dict[str, int]:
    keys = ("queued", "attempts", "delivered", "failed_attempts", "gave_up", "skipped")
    return {k: c[k] for k in keys}
