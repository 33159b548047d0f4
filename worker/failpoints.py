"""Crash points for fault tests: ``ORDER_WORKER_FAILPOINTS="after_intent=0.2,before_ack=0.1"``.

A named point kills its own process with SIGKILL (no cleanup, no ack, no rollback hooks) with the given
probability, which is the only honest way to prove that a crash at that exact step loses and duplicates
nothing. ``NAME@TEXT=P`` fires only where the point is given a subject (a command_id) containing ``TEXT``:
that is how a test makes one poison command crash the worker on every delivery while every other command
passes (``@`` is outside the command_id alphabet, so the split is unambiguous). Before dying, the point
writes one line to stderr naming itself, so a test can tell which points fired.

``NAME=sleep:SECONDS`` pauses the thread at the point instead, every time: a race that is rare in
production becomes certain (``after_partner=sleep:2``: the partner's answer is committed two seconds
late, so the partner's pushes about the new order arrive before the ledger knows it).

Unset in production; reading the variable once keeps the cost of an unused point to a dict lookup.
"""

from __future__ import annotations

import os
import random
import signal
import time
from typing import NamedTuple

POINTS = (
    "after_intent",  # create: intent committed, partner not called yet
    "after_partner",  # create: partner answered, nothing recorded yet
    "after_commit",  # create: result committed, message not acked yet
    "before_ack",  # create: actor finished, Dramatiq has not acked
    "after_poll",  # poll: observation committed, message not acked yet
    "relay_after_publish",  # relay: broker confirmed a batch, ledger not told yet
    "on_message",  # any command, before anything is done with it (use with @TEXT for a poison command)
    "worker_boot",  # a Dramatiq worker process loading the actors, before it has told its parent it is up
)


class Rule(NamedTuple):
    probability: float
    subject: str | None
    sleep: float = 0.0


def _parse(spec: str) -> dict[str, Rule]:
    points: dict[str, Rule] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        target, _, probability = item.partition("=")
        name, at, subject = target.partition("@")
        if name not in POINTS:
            raise ValueError(f"unknown failpoint {name!r}; known: {', '.join(POINTS)}")
        if at and not subject:
            raise ValueError(f"failpoint {name!r}: '@' needs the text a subject must contain")
        if probability.startswith("sleep:"):
            points[name] = Rule(0.0, subject or None, float(probability.removeprefix("sleep:")))
        else:
            points[name] = Rule(float(probability or 1.0), subject or None)
    return points


_ACTIVE = _parse(os.environ.get("ORDER_WORKER_FAILPOINTS", ""))


def hit(name: str, subject: str | None = None) -> None:
    rule = _ACTIVE.get(name)
    if rule is None:
        return
    if rule.subject is not None and (subject is None or rule.subject not in subject):
        return
    if rule.sleep:
        time.sleep(rule.sleep)
        return
    if rule.probability and random.random() < rule.probability:
        os.write(2, f"failpoint {name}: SIGKILL pid {os.getpid()}\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)
