"""Fault rules injected per endpoint by the control API.

A rule matches an endpoint name exactly (``0trace.create``), a provider wildcard (``itrx.*``) or
everything (``*``). It fires either the next ``times`` requests, or each request with ``probability``
(optionally capped by ``times``). The first matching live rule wins, in insertion order.

Kinds and where they act:

* before the handler: ``latency`` (then the request proceeds normally), ``http_500``, ``http_503``,
  ``http_429``, ``error`` (any status/body), ``reset`` (TCP RST, nothing committed);
* ``idle_close``: a request that arrives on a kept-alive connection (not the connection's first) is not
  read and the connection is closed, as when the partner's idle timer fires while the request is on its
  way; a request on a new connection never matches (nothing committed either way);
* after the handler: ``lose_response`` (the request is fully processed and committed, then the
  connection is reset instead of answering) and ``latency_after`` (the answer is delayed after commit,
  e.g. to make a client time out on a request that did succeed).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Any

KINDS = frozenset(
    {
        "latency",
        "latency_after",
        "http_500",
        "http_503",
        "http_429",
        "error",
        "reset",
        "idle_close",
        "lose_response",
    }
)


@dataclass
class FaultRule:
    id: int
    endpoint: str
    kind: str
    times: int | None = None
    probability: float | None = None
    latency_ms: float = 0.0
    retry_after: int = 1
    status: int = 500
    body: Any = None
    fired: int = 0

    def matches(self, endpoint: str) -> bool:
        if self.endpoint in ("*", endpoint):
            return True
        return self.endpoint.endswith(".*") and endpoint.startswith(self.endpoint[:-1])

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "endpoint": self.endpoint,
            "kind": self.kind,
            "times": self.times,
            "probability": self.probability,
            "latency_ms": self.latency_ms,
            "retry_after": self.retry_after,
            "status": self.status,
            "body": self.body,
            "fired": self.fired,
        }


def parse_rule(rule_id: int, data: dict[str, Any], endpoints: frozenset[str]) -> FaultRule:
    """Validate a control-API fault description; ValueError names the offending field."""
    endpoint = data.get("endpoint")
    if not isinstance(endpoint, str) or not (
        endpoint in endpoints
        or endpoint == "*"
        or (endpoint.endswith(".*") and any(e.startswith(endpoint[:-1]) for e in endpoints))
    ):
        raise ValueError(f"endpoint must be one of {sorted(endpoints)} or a 'provider.*' / '*' wildcard")
    kind = data.get("kind")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}")
    times = data.get("times")
    probability = data.get("probability")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise ValueError("times must be an integer >= 1")
    if probability is not None and (
        isinstance(probability, bool) or not isinstance(probability, int | float) or not 0 < probability <= 1
    ):
        raise ValueError("probability must be a number in (0, 1]")
    if times is None and probability is None:
        times = 1
    latency_ms = data.get("latency_ms", 0)
    if isinstance(latency_ms, bool) or not isinstance(latency_ms, int | float) or latency_ms < 0:
        raise ValueError("latency_ms must be a number >= 0")
    if kind in ("latency", "latency_after") and latency_ms == 0:
        raise ValueError("latency faults need latency_ms > 0")
    retry_after = data.get("retry_after", 1)
    if isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 0:
        raise ValueError("retry_after must be an integer >= 0")
    status = data.get("status", 500)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError("status must be an HTTP status code")
    return FaultRule(
        id=rule_id,
        endpoint=endpoint,
        kind=kind,
        times=times,
        probability=float(probability) if probability is not None else None,
        latency_ms=float(latency_ms),
        retry_after=retry_after,
        status=status,
        body=data.get("body"),
    )


class FaultBook:
    def __init__(self, endpoints: frozenset[str], seed: int | None = None) -> None:
        self.endpoints = endpoints
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)
        self._rng = random.Random(seed)

    def reseed(self, seed: int | None) -> None:
        self._rng.seed(seed)

    def add(self, data: dict[str, Any]) -> FaultRule:
        rule = parse_rule(next(self._ids), data, self.endpoints)
        self._rules.append(rule)
        return rule

    def clear(self, endpoint: str | None = None) -> int:
        before = len(self._rules)
        self._rules = [r for r in self._rules if endpoint is not None and r.endpoint != endpoint]
        return before - len(self._rules)

    def remove(self, rule_id: int) -> bool:
        before = len(self._rules)
        self._rules = [r for r in self._rules if r.id != rule_id]
        return len(self._rules) != before

    def rules(self) -> list[FaultRule]:
        return list(self._rules)

    def pick(self, endpoint: str, reused_connection: bool = False) -> FaultRule | None:
        """The rule that fires for this request (and count it), or None. Cheap when no rules exist."""
        if not self._rules:
            return None
        for rule in self._rules:
            if rule.exhausted or not rule.matches(endpoint):
                continue
            if rule.kind == "idle_close" and not reused_connection:
                continue
            if rule.probability is not None and self._rng.random() >= rule.probability:
                continue
            rule.fired += 1
            return rule
        return None
