"""Crash points for fault tests: ``ORDER_WORKER_FAILPOINTS="after_intent=0.2,before_ack=0.1"``.

A named point kills its own process with SIGKILL (no cleanup, no ack, no rollback hooks) with the given
probability, which is the only honest way to prove that a crash at that exact step loses and duplicates
nothing. Unset in production; reading the variable once keeps the cost of an unused point to a dict lookup.
"""

from __future__ import annotations

import os
import random
import signal

POINTS = ("after_intent", "after_partner", "after_commit", "before_ack")


def _parse(spec: str) -> dict[str, float]:
    points: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, probability = item.partition("=")
        if name not in POINTS:
            raise ValueError(f"unknown failpoint {name!r}; known: {', '.join(POINTS)}")
        points[name] = float(probability or 1.0)
    return points


_ACTIVE = _parse(os.environ.get("ORDER_WORKER_FAILPOINTS", ""))


def hit(name: str) -> None:
    probability = _ACTIVE.get(name)
    if probability and random.random() < probability:
        os.kill(os.getpid(), signal.SIGKILL)
