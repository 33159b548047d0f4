"""Control API, CLI entry point, and the small building blocks (limits, clock, config coercion)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from order_worker_sandbox.__main__ import main
from order_worker_sandbox.clock import SandboxClock
from order_worker_sandbox.config import SandboxConfig, coerce_value, from_env
from order_worker_sandbox.limits import NonceStore, WeightWindow
from order_worker_sandbox.market import parse_amount
from order_worker_sandbox.testing import ControlError, RunningSandbox, running_sandbox, wait_until

from tests.sandbox.conftest import CREATE, ZeroTrace, compact, hmac_hex

REPO = Path(__file__).resolve().parents[2]


def test_clock_speed_and_advance(sb: RunningSandbox) -> None:
    before = sb.control.clock()
    assert before["speed"] == 1.0
    after = sb.control.advance(3600)
    assert after["now"] - before["now"] >= 3600
    assert sb.control.set_speed(25)["speed"] == 25
    with pytest.raises(ControlError):
        sb.control.advance(-1)
    with pytest.raises(ControlError):
        sb.control.set_speed(0)


def test_ledger_and_stats_count_everything(zt: ZeroTrace, sb: RunningSandbox) -> None:
    zt.create(idem="ledger-00001")
    zt.create(idem="ledger-00001")
    zt.call("/api/v1/order", {"id": "x", "token": "y"}, sign="0" * 64)
    stats = sb.control.stats()
    assert stats["requests"]["0trace.create"] == 2 and stats["responses"]["0trace.create"] == {"200": 2}
    assert stats["responses"]["0trace.order"] == {"401": 1}
    assert stats["auth_failures"] == {"0trace.bad_signature": 1}
    assert stats["orders_created"] == {"0trace": 1, "itrx": 0} and stats["orders"]["0trace"] == 1
    assert [o["idempotency_key"] for o in sb.control.orders()] == ["ledger-00001"]


def test_reset_forgets_everything(zt: ZeroTrace, sb: RunningSandbox) -> None:
    new_secret = zt.call("/api/v1/keys/rotate", {"rotate": ["apiSecret"]})[1]["data"]["apiSecret"]
    zt.call("/api/v1/create", CREATE, secret=new_secret)
    sb.control.patch_config(zerotrace_scenario="manual")
    sb.control.add_fault("*", "reset")
    sb.control.reset()
    assert sb.control.faults() == [] and sb.control.orders() == []
    assert sb.control.config()["zerotrace_scenario"] == "auto"
    assert sb.control.stats()["requests"] == {}
    assert zt.call("/api/v1/currencies", {})[0] == 200, "secret back to the configured one"
    assert zt.call("/api/v1/currencies", {}, secret=new_secret)[1]["code"] == 3


def test_config_patch_validation(sb: RunningSandbox) -> None:
    for bad in (
        {"zerotrace_scenario": "chaos"},
        {"port": 1},
        {"nope": 1},
        {"speed": -2},
        {"itrx_min_energy": "x"},
    ):
        with pytest.raises(ControlError) as info:
            sb.control.request("POST", "/config", bad)
        assert info.value.status == 400
    assert sb.control.patch_config(zerotrace_webhook_schedule=[1, 2])["zerotrace_webhook_schedule"] == [
        1.0,
        2.0,
    ]


def test_control_404s(sb: RunningSandbox) -> None:
    with pytest.raises(ControlError) as info:
        sb.control.drive_zerotrace("nope", "DONE")
    assert info.value.status == 404
    with pytest.raises(ControlError):
        sb.control.order("itrx", "nope")
    with pytest.raises(ControlError):
        sb.control.request("POST", "/drive", {"provider": "other"})


def test_running_sandbox_accepts_settings_and_stops_cleanly() -> None:
    with running_sandbox(zerotrace_scenario="manual", speed=5) as sb:
        cfg = sb.control.config()
        assert cfg["zerotrace_scenario"] == "manual" and cfg["speed"] == 5 and cfg["host"] == "127.0.0.1"
        url = sb.base_url
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/_sandbox/ping", timeout=2)
    with pytest.raises(ValueError), running_sandbox(nope=1):
        pass


def test_cli_help_explains_everything(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for needle in (
        "--port",
        "--speed",
        "--webhook-url",
        "ORDER_WORKER_SANDBOX_",
        "/_sandbox/",
        "--set",
        "--list-settings",
    ):
        assert needle in text
    assert main(["--list-settings"]) == 0
    listed = capsys.readouterr().out
    assert "ORDER_WORKER_SANDBOX_ZEROTRACE_API_SECRET" in listed and "itrx_callback_schedule" in listed


def test_cli_subprocess_with_env_credentials() -> None:
    env = {**os.environ, "ORDER_WORKER_SANDBOX_ZEROTRACE_API_SECRET": "custom-secret-for-this-test"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "order_worker_sandbox",
            "--port",
            "0",
            "--speed",
            "10",
            "--set",
            "itrx_scenario=manual",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("order-worker sandbox listening on http://127.0.0.1:")
        url = first.rsplit(" ", 1)[1].strip()
        banner = "".join(proc.stdout.readline() for _ in range(11))
        assert "custom-secret-for-this-test" in banner and "sandbox-0trace-key" in banner
        body = compact(CREATE)
        headers = {
            "Content-Type": "application/json",
            "X-API-KEY": "sandbox-0trace-key",
            "X-API-SIGN": hmac_hex("custom-secret-for-this-test", body),
            "X-API-NONCE": "n" * 32,
        }
        assert (
            requests.post(url + "/api/v1/create", data=body, headers=headers, timeout=10).json()["code"] == 0
        )
        cfg = requests.get(url + "/_sandbox/config", timeout=10).json()
        assert cfg["speed"] == 10 and cfg["itrx_scenario"] == "manual"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_cli_rejects_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--set", "zerotrace_scenario=chaos"])
    assert info.value.code == 2
    assert "zerotrace_scenario" in capsys.readouterr().err


# --- building blocks -------------------------------------------------------------------------------


def test_nonce_store_expires_in_fifo_order() -> None:
    store = NonceStore(ttl=300)
    assert store.check_and_add("a", now=0)
    assert not store.check_and_add("a", now=299.9)
    assert store.check_and_add("b", now=100)
    assert store.check_and_add("a", now=300.0)  # expired exactly at the ttl
    assert not store.check_and_add("b", now=399)
    assert len(store) == 2


def test_weight_window_retry_after_is_exact() -> None:
    w = WeightWindow(limit=100, window=60)
    assert w.take(50, now=0) is None
    assert w.take(50, now=10) is None
    assert w.take(1, now=20) == 40  # the first 50 leave at t=60
    assert w.take(60, now=20) == 50  # needs both to leave: t=70
    assert w.take(1, now=60) is None
    assert w.take(101, now=60) == 60  # can never fit


def test_weight_window_rounds_up() -> None:
    w = WeightWindow(limit=10, window=1.0)
    assert w.take(10, now=0.0) is None
    assert w.take(1, now=0.2) == 1  # 0.8 s -> 1


def test_clock_speed_is_continuous() -> None:
    clock = SandboxClock(speed=1)
    t0 = clock.now()
    clock.set_speed(1000)
    assert clock.now() - t0 < 1
    clock.advance(100)
    assert clock.now() - t0 >= 100
    assert clock.real_delay(1000) == pytest.approx(1.0)


def test_parse_amount() -> None:
    assert str(parse_amount("0.01")) == "0.01"
    assert parse_amount(5) is not None and parse_amount(0.5) is not None
    bad_values: list[object] = ["0", "-1", "1e3", " 1", "1.", ".5", "", "abc", True, None, [], float("nan")]
    for bad in [*bad_values, float("inf")]:
        assert parse_amount(bad) is None, bad


def test_config_coercion_and_env() -> None:
    assert coerce_value("zerotrace_webhook_schedule", "1, 2.5") == (1.0, 2.5)
    assert coerce_value("zerotrace_webhook_url", "") is None
    assert coerce_value("itrx_strict_out_trade_no", "yes") is True
    with pytest.raises(ValueError):
        coerce_value("zerotrace_rate_limit_weight", "lots")
    cfg = from_env({"ORDER_WORKER_SANDBOX_SPEED": "4", "ORDER_WORKER_SANDBOX_ITRX_API_KEY": "K"})
    assert cfg.speed == 4 and cfg.itrx_api_key == "K" and SandboxConfig().speed == 1


def test_wait_until_is_bounded() -> None:
    assert wait_until(lambda: 7) == 7
    with pytest.raises(TimeoutError):
        wait_until(lambda: 0, timeout=0.05)


def test_the_simulator_and_the_worker_default_to_the_same_development_credentials() -> None:
    """The simulator keeps its own copy of the public development credentials (it must not import the
    worker); the two copies must agree, or the README's demo fails with bad signatures."""
    from order_worker_sandbox import config as simulator

    from worker.partners.itrx import settings as itrx
    from worker.partners.zerotrace import settings as zerotrace

    assert (
        simulator.SANDBOX_ZEROTRACE_API_KEY,
        simulator.SANDBOX_ZEROTRACE_API_SECRET,
        simulator.SANDBOX_ZEROTRACE_WEBHOOK_SECRET,
        simulator.SANDBOX_ITRX_API_KEY,
        simulator.SANDBOX_ITRX_API_SECRET,
    ) == (
        zerotrace.DEVELOPMENT_API_KEY,
        zerotrace.DEVELOPMENT_API_SECRET,
        zerotrace.DEVELOPMENT_WEBHOOK_SECRET,
        itrx.DEVELOPMENT_API_KEY,
        itrx.DEVELOPMENT_API_SECRET,
    )
