"""Scenario 9: canary secrets, sealed tokens and a wrong token key.

Every scenario of this suite runs with canary credentials (random per run: 0trace API and webhook
secrets, itrx API key and secret, the token key) and scans what the service wrote for them and for every
order token (opened from the ledger with the key): all service logs, every event, dead letters, /metrics
and the raw ledger. This scenario adds the paths most likely to leak: the partner echoing our credentials
in its errors (create refused with them in the message, on both partners), a partner error carrying an
order's token, malformed commands (dead letters), and a worker started with the wrong token key.

Criteria: no canary or token anywhere; tokens in the ledger only as ciphertext, bound to their order (a
sealed token moved to another order does not open); with the wrong key the worker fails closed (no
partner call with an unreadable token, no event, no crash, orders unchanged) and recovers with the right
key; the error paths were really taken (failed events, dead letters).
"""

from __future__ import annotations

import base64
import itertools
import os
import time
from collections.abc import Callable

import pytest
from pydantic import SecretStr

from tests.reliability.audit import canary_audit, event_audit, judge_core, partner_audit, settlement
from tests.reliability.rig import (
    RelStack,
    Sizes,
    Verdict,
    add_fault,
    clear_faults,
    open_tokens,
    sandbox_requests,
    scan_for,
)
from tests.support.events import create_bodies, publish_reliably, witness
from tests.support.ledger_views import ledger_bytes, order_rows, outbox_ids
from tests.support.partners import commands_mix
from tests.support.stack import Sandbox, wait_until
from worker.sealing import SealError, TokenSealer

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(300)]

WRONG_KEY_SECONDS = 8.0


@pytest.mark.scenario("canary_secrets")
@pytest.mark.parametrize("ledger_url", ["sqlite", "postgres"], indirect=True)
def test_no_secret_or_token_escapes_and_a_wrong_key_fails_closed(
    make_sandbox: Callable[..., Sandbox],
    make_stack: Callable[..., RelStack],
    sizes: Sizes,
    seed: int,
    verdict: Verdict,
) -> None:
    sandbox = make_sandbox(speed=1.0)  # 0trace orders stay open long enough to be polled with a wrong key
    stack = make_stack(sandbox)
    secrets = stack.canaries
    echo = f"apiSecret={secrets.zt_api_secret} webhook={secrets.zt_webhook_secret}"
    add_fault(
        sandbox, endpoint="0trace.create", kind="error", status=400, times=3, body={"code": 1, "msg": echo}
    )
    itrx_echo = {"detail": f"bad API-KEY {secrets.itrx_api_key} signed with {secrets.itrx_api_secret}"}
    add_fault(sandbox, endpoint="itrx.order", kind="error", status=400, times=3, body=itrx_echo)
    commands = commands_mix(sizes.canary_commands, seed, "cn")
    ids = [c["command_id"] for c in commands]
    zt_ids = [c for c in ids if "-zt-" in c]
    malformed = [b"not json " + os.urandom(4).hex().encode() for _ in range(5)]
    stack.declare_queues()
    with witness(stack.broker_url, stack.exchange) as events:
        stack.start_webhooks()
        stack.start_scheduler()
        worker = stack.start_worker(threads=8)
        publish_reliably(
            stack.broker_url, stack.create_queue, create_bodies(stack.create_queue, commands) + malformed
        )

        def tracked() -> bool:
            rows = order_rows(stack.ledger_url)
            return all(c in rows and rows[c]["status"] not in ("submitting",) for c in ids)

        wait_until(tracked, 60, "every order past its create")
        tokens = open_tokens(stack.ledger(), secrets, zt_ids)
        live = [c for c in zt_ids if tokens.get(c)]
        assert live, "no 0trace order holds a token"
        # a partner error that carries an order's token, on the poll path
        add_fault(
            sandbox,
            endpoint="0trace.order",
            kind="error",
            status=500,
            times=3,
            body={"code": 99, "msg": f"internal error token={tokens[live[0]]}"},
        )
        time.sleep(2.0)

        # ---- wrong token key: same key id, other material -------------------------------------------
        worker.stop()
        wrong = f"rk1:{base64.b64encode(os.urandom(32)).decode()}"
        before_rows = order_rows(stack.ledger_url)
        before_events = {e["event_id"] for e in events.snapshot() if e.get("command_id") in live}
        before_reads = sandbox_requests(sandbox)["0trace.order"]
        wrong_worker = stack.start(
            "worker", "--processes", "1", "--threads", "8", ORDER_WORKER_TOKEN_KEYS=wrong
        )
        stack.wait_ready(wrong_worker)
        time.sleep(WRONG_KEY_SECONDS)
        reads_with_wrong_key = sandbox_requests(sandbox)["0trace.order"] - before_reads
        wait_until(lambda: all(outbox_ids(stack.ledger_url).values()), 10, "outbox drained")
        time.sleep(0.5)  # the witness reads what the relay published
        events_with_wrong_key = len(
            {e["event_id"] for e in events.snapshot() if e.get("command_id") in live} - before_events
        )
        after_rows = order_rows(stack.ledger_url)
        changed = [c for c in live if after_rows[c]["status"] != before_rows[c]["status"]]
        wrong_alive = wrong_worker.alive
        wrong_log = wrong_worker.output()
        wrong_worker.stop()
        # ---- the right key again: everything completes -----------------------------------------------
        clear_faults(sandbox)
        sandbox.control("clock", {"speed": 100})
        stack.start_worker(threads=8)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            rows = order_rows(stack.ledger_url)
            if all(rows[c]["status"] in ("completed", "failed") for c in ids):
                break
            time.sleep(0.25)
        wait_until(
            lambda: set(outbox_ids(stack.ledger_url)) <= {e["event_id"] for e in events.snapshot()},
            30,
            "witness saw every event",
        )
        seen = events.snapshot()
        counts = {**settlement(stack, ids), **partner_audit(sandbox, ids), **event_audit(stack, events, ids)}
        counts.update(canary_audit(stack, seen, tokens))
    # tokens are ciphertext bound to their order: moved to another order, a sealed token does not open
    sealer = TokenSealer.from_settings([SecretStr(secrets.token_keys)])
    rows = order_rows(stack.ledger_url)
    moved_opened = 0
    for first, second in itertools.pairwise(live):
        try:
            sealer.open(rows[first]["sealed"], rows[second]["order_id"])
            moved_opened += 1
        except SealError:
            pass
    plaintext_in_ledger = scan_for(ledger_bytes(stack.ledger_url), {c: t for c, t in tokens.items() if t})
    failed_events = [e for e in seen if e["type"] == "failed"]

    def redact(text: str) -> str:  # the report must not carry a canary either
        for name, value in secrets.secrets().items():
            text = text.replace(value, f"<{name}>")
        return text

    verdict.count(
        tokens_checked=len([t for t in tokens.values() if t]),
        token_plaintexts_in_ledger=len(plaintext_in_ledger),
        sealed_token_opened_for_another_order=moved_opened,
        wrong_key_seconds=WRONG_KEY_SECONDS,
        partner_reads_with_wrong_key=reads_with_wrong_key,
        events_with_wrong_key=events_with_wrong_key,
        orders_changed_with_wrong_key=len(changed),
        wrong_key_worker_alive=wrong_alive,
        wrong_key_logged=wrong_log.count("token_unopenable"),
        failed_events_from_echoed_credentials=len(failed_events),
        failed_event_reasons=sorted({redact(e["error"]["reason"][:80]) for e in failed_events})[:4],
        dead_letters=len(stack.ledger().dead_letters(1000)),
        **counts,
    )
    # The partner echoing our 0trace *webhook* secret in a create error: the client must scrub every secret
    # of the account, not only the ones it signs with, or it reaches the failed event and its outbox row.
    echo_leaks = [leak for leak in counts["canary_leak_places"] if leak.endswith(":zt_webhook_secret")]
    other_leaks = counts["canary_leaks"] - len(echo_leaks)
    verdict.count(webhook_secret_echo_leaks=echo_leaks)
    judge_core(verdict, {k: v for k, v in counts.items() if k != "canary_leaks"})
    verdict.check("no_canary_leaks", other_leaks == 0)
    verdict.check("echoed_webhook_secret_scrubbed", not echo_leaks)
    verdict.check("tokens_only_ciphertext", not plaintext_in_ledger and moved_opened == 0)
    verdict.check(
        "wrong_key_fails_closed",
        reads_with_wrong_key == 0
        and events_with_wrong_key == 0
        and not changed
        and wrong_alive
        and wrong_log.count("token_unopenable") > 0,
    )
    verdict.check("error_paths_taken", len(failed_events) >= 2 and counts["canary_needles"] > 5)
    verdict.check("recovered_with_right_key", all(rows[c]["status"] in ("completed", "failed") for c in ids))
    verdict.emit()
