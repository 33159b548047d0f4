"""Canary secrets: configured secrets and order tokens never show up in answers, events, the ledger or logs.

The autouse ``canary_guard`` (conftest) already checks this after every test of this directory. Here the
paths most likely to leak are driven on purpose (errors echoed by the partner, a logged traceback, the
re-serialised itrx forms), and the guard itself is shown to be able to fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.webhooks.helpers import (
    CANARIES,
    CANARY_ITRX_API_KEY,
    CANARY_ITRX_SECRET,
    CANARY_TOKEN,
    CANARY_ZT_API_SECRET,
    CANARY_ZT_WEBHOOK_OLD,
    T0,
    AppServer,
    World,
    build_world,
    find_leaks,
    itrx_callback_payload,
    itrx_signed,
    ledger_files,
    zt_body,
    zt_dto,
    zt_http_headers,
)
from worker.webhooks.server import build_app


def test_the_guard_can_fail(world: World) -> None:
    """Not vacuous: it recognises every canary, and the ledger bytes it scans do hold the events."""
    for canary in CANARIES:
        assert find_leaks({"text": f"prefix {canary} suffix"}), canary
    seeded = world.seed_zerotrace()
    assert seeded.order_id is not None
    raw = zt_body(zt_dto(seeded.order_id, "PENDING", T0 + 5))
    assert world.zerotrace(raw, _headers(raw)).result == "accepted"
    stored = b"".join(blob for _, blob in ledger_files(world))
    assert seeded.command_id.encode() in stored and b"status_changed" in stored
    assert CANARY_TOKEN.encode() in raw  # the webhook carried a token ...
    assert CANARY_TOKEN.encode() not in stored  # ... and it was not kept
    assert not find_leaks({"events": json.dumps(world.events())})


def _headers(raw: bytes) -> dict[str, list[str]]:
    return {name.lower(): [value] for name, value in zt_http_headers(raw, CANARY_ZT_WEBHOOK_OLD)}


def test_secrets_stay_out_of_every_output_on_error_paths(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    world = build_world(tmp_path / "canary")
    server = AppServer(build_app(world.receiver, threads=2))
    answers: list[bytes] = []
    try:
        seeded = world.seed_zerotrace()
        assert seeded.order_id is not None
        raw = zt_body(zt_dto(seeded.order_id, "DONE", T0 + 5))
        for secret in (CANARY_ZT_WEBHOOK_OLD, "wrong-secret"):
            answers.append(server.request("POST", "/webhooks/0trace", raw, zt_http_headers(raw, secret)).body)

        echo = json.dumps({"detail": f"bad key {CANARY_ITRX_API_KEY} / {CANARY_ITRX_SECRET}"}).encode()
        for status in (503, 400, 403):  # the partner echoes our credentials back in its error
            itrx = world.seed_itrx()
            assert itrx.order_id is not None
            world.stub.fail[itrx.order_id] = (status, echo)
            payload = itrx_callback_payload(itrx.order_id, itrx.partner_ref, 40)
            for form in ("compact", "python_default"):
                body, headers = itrx_signed(payload, CANARY_ITRX_SECRET, int(T0), form=form)
                sent = [("TIMESTAMP", headers["timestamp"][0]), ("SIGNATURE", headers["signature"][0])]
                answers.append(server.request("POST", "/webhooks/itrx", body, sent).body)
        answers.append(server.request("GET", "/metrics").body)
        answers.append(server.request("GET", "/readyz").body)
        world.ledger.close()  # and a logged traceback
        answers.append(server.request("POST", "/webhooks/0trace", raw, zt_http_headers(raw)).body)
    finally:
        server.close()
        world.close()

    results = [json.loads(a)["result"] for a in answers[:2] + answers[2:8] + answers[-1:]]
    assert results[:2] == ["accepted", "bad_signature"]
    assert set(results[2:8]) == {"requery_failed", "requery_refused"}
    assert results[-1] == "unavailable"
    assert any(r.exc_info for r in caplog.records)
    outputs: dict[str, bytes | str] = {
        "answers": b"\n".join(answers),
        "log": caplog.text,
        "partner reprs": f"{world.pipeline.partners!r} {world.receiver!r}",
        **dict(ledger_files(world)),
    }
    assert not find_leaks(outputs)
    assert CANARY_ZT_API_SECRET not in caplog.text
    # Settings repr: every credential is a SecretStr and masked, the itrx API key included.
    assert not find_leaks({"settings repr": f"{world.settings!r} {world.settings}"}, list(CANARIES))
