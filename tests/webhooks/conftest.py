"""Fixtures of the push-receiver tests, and the canary guard that runs after every one of them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.webhooks.helpers import Seen, World, build_world, find_leaks, ledger_files


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    built = build_world(tmp_path / "world")
    yield built
    built.close()


@pytest.fixture(autouse=True)
def canary_guard(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No configured secret, and no order token, in any answer, event, ledger byte or log line.

    Logs are captured at DEBUG from every logger (the receiver, the ledger, the partner clients, aiohttp's
    access and server loggers), including formatted tracebacks.
    """
    caplog.set_level(logging.DEBUG)
    Seen.bodies.clear()
    worlds_before = len(Seen.worlds)
    yield
    texts: dict[str, bytes | str] = {"log": caplog.text}
    for n, record in enumerate(caplog.records):
        texts[f"log record {n}"] = f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"
    texts["responses"] = b"\n".join(Seen.bodies)
    for world in Seen.worlds[worlds_before:] or Seen.worlds[-1:]:
        for name, blob in ledger_files(world):
            texts[f"ledger file {name}"] = blob
    leaks = find_leaks(texts)
    Seen.bodies.clear()
    assert not leaks, f"secret material leaked: {leaks}"
