"""Test helpers: an in-process sandbox on an ephemeral port, a control client, and request signers.

Typical use::

    from order_worker_sandbox.testing import running_sandbox

    with running_sandbox(zerotrace_scenario="manual", speed=100) as sb:
        settings = Settings(partners={"0trace": {"base_url": sb.base_url}, "itrx": {"base_url": sb.base_url}})
        ...  # exercise the worker against sb.base_url
        assert len(sb.control.orders(provider="0trace")) == 1
        sb.control.drive_zerotrace(order_id, "DONE")

The signers here are deliberately the sandbox's own implementation (``order_worker_sandbox.signing``);
tests of the worker's signer must not use them as the expected value for that signer, or both could
share a bug.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from order_worker_sandbox.config import SandboxConfig, coerce_value, from_env
from order_worker_sandbox.server import SandboxServer
from order_worker_sandbox.signing import canonical_json, itrx_sign, zerotrace_sign

T = TypeVar("T")


class ControlError(RuntimeError):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"control API answered {status}: {body}")
        self.status = status
        self.body = body


class SandboxControl:
    """Blocking client for ``/_sandbox/*`` (stdlib only, usable from any thread or process)."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(  # noqa: S310 - URL is the sandbox's own http base URL
            f"{self.base_url}/_sandbox{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - see above
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                parsed: Any = json.loads(raw)
            except ValueError:
                parsed = raw.decode("utf-8", "replace")
            raise ControlError(exc.code, parsed) from None

    # time
    def ping(self) -> bool:
        return bool(self.request("GET", "/ping").get("ok"))

    def clock(self) -> dict[str, Any]:
        return dict(self.request("GET", "/clock"))

    def set_speed(self, speed: float) -> dict[str, Any]:
        return dict(self.request("POST", "/clock", {"speed": speed}))

    def advance(self, seconds: float) -> dict[str, Any]:
        return dict(self.request("POST", "/clock", {"advance": seconds}))

    # orders
    def drive_zerotrace(self, order_id: str, status: str, **options: Any) -> dict[str, Any]:
        return dict(
            self.request(
                "POST", "/drive", {"provider": "0trace", "id": order_id, "status": status, **options}
            )
        )

    def drive_itrx(self, serial: str, status: int, **options: Any) -> dict[str, Any]:
        return dict(
            self.request(
                "POST", "/drive", {"provider": "itrx", "serial": serial, "status": status, **options}
            )
        )

    def orders(self, provider: str | None = None) -> list[dict[str, Any]]:
        return list(self.request("GET", "/orders" + (f"?provider={provider}" if provider else "")))

    def order(self, provider: str, ref: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/orders/{provider}/{ref}"))

    # faults
    def add_fault(self, endpoint: str, kind: str, **options: Any) -> dict[str, Any]:
        return dict(self.request("POST", "/faults", {"endpoint": endpoint, "kind": kind, **options}))

    def faults(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/faults"))

    def clear_faults(self, endpoint: str | None = None) -> int:
        return int(
            self.request("DELETE", "/faults" + (f"?endpoint={endpoint}" if endpoint else ""))["removed"]
        )

    # deliveries and config
    def set_webhooks(self, **fields: Any) -> dict[str, Any]:
        return dict(self.request("POST", "/webhooks", fields))

    def deliveries(self, provider: str | None = None, ref: str | None = None) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={v}" for k, v in (("provider", provider), ("ref", ref)) if v)
        return list(self.request("GET", "/deliveries" + (f"?{query}" if query else "")))

    def stats(self) -> dict[str, Any]:
        return dict(self.request("GET", "/stats"))

    def config(self) -> dict[str, Any]:
        return dict(self.request("GET", "/config"))

    def patch_config(self, **fields: Any) -> dict[str, Any]:
        return dict(self.request("POST", "/config", fields))

    def set_asset(self, code: str, **fields: Any) -> dict[str, Any]:
        return dict(self.request("POST", "/assets", {"code": code, **fields}))

    def reset(self) -> None:
        self.request("POST", "/reset", {})


@dataclass
class RunningSandbox:
    base_url: str
    control: SandboxControl
    config: SandboxConfig
    server: SandboxServer

    @property
    def port(self) -> int:
        return self.server.port


@contextmanager
def running_sandbox(config: SandboxConfig | None = None, **overrides: Any) -> Iterator[RunningSandbox]:
    """Serve both APIs on 127.0.0.1:<ephemeral> in a background thread; stopped on exit.

    ``overrides`` are config field names (see :class:`SandboxConfig`), e.g. ``speed=50`` or
    ``zerotrace_webhook_url="http://127.0.0.1:9/hook"``. Environment variables are ignored unless you pass
    ``config=from_env()``, so tests are not affected by a developer's shell.
    """
    cfg = (config or SandboxConfig()).copy()
    for name, value in overrides.items():
        setattr(cfg, name, coerce_value(name, value))
    if "host" not in overrides:
        cfg.host = "127.0.0.1"
    if "port" not in overrides:
        cfg.port = 0
    server = SandboxServer(cfg)
    server.start_in_thread()
    try:
        yield RunningSandbox(server.base_url, SandboxControl(server.base_url), cfg, server)
    finally:
        server.stop_thread()


def wait_until(predicate: Callable[[], T], timeout: float = 5.0, interval: float = 0.01) -> T:
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` elapses (raises)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout}s (last value: {value!r})")
        time.sleep(interval)


# --- request builders (the sandbox's own signing rules) --------------------------------------------


def zerotrace_headers(
    body: bytes, api_key: str, api_secret: str, nonce: str | None = None, code: str | None = None
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-API-KEY": api_key + (f".{code}" if code else ""),
        "X-API-SIGN": zerotrace_sign(body, api_secret),
        "X-API-NONCE": nonce or secrets.token_hex(16),
    }


def itrx_signed(
    data: dict[str, Any], api_key: str, api_secret: str, ts: int | None = None
) -> tuple[bytes, dict[str, str]]:
    body = canonical_json(data)
    stamp = str(int(time.time()) if ts is None else ts)
    return body, {
        "Content-Type": "application/json",
        "API-KEY": api_key,
        "TIMESTAMP": stamp,
        "SIGNATURE": itrx_sign(body, stamp, api_secret),
    }


__all__ = [
    "ControlError",
    "RunningSandbox",
    "SandboxControl",
    "from_env",
    "itrx_signed",
    "running_sandbox",
    "wait_until",
    "zerotrace_headers",
]
