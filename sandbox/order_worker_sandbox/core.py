"""The sandbox's shared state: config, clock, timers, stats, faults, deliveries and both simulators.

One object, owned by one event loop: handlers of both partner APIs and the control API reach the same
state without locks, which is what makes "commit, then drop the connection" and exact order counts
trivially consistent.
"""

from __future__ import annotations

from typing import Any

from order_worker_sandbox.clock import SandboxClock, Scheduler
from order_worker_sandbox.config import SandboxConfig, apply_patch, validate
from order_worker_sandbox.faults import FaultBook
from order_worker_sandbox.itrx_orders import ItrxBook
from order_worker_sandbox.stats import Stats
from order_worker_sandbox.webhooks import Deliverer
from order_worker_sandbox.zerotrace_orders import ZeroTraceBook

ZEROTRACE_ENDPOINTS = (
    "0trace.currencies",
    "0trace.pairs",
    "0trace.price",
    "0trace.create",
    "0trace.order",
    "0trace.emergency",
    "0trace.qr",
    "0trace.keys_rotate",
    "0trace.codes",
    "0trace.codes_enable",
)
ITRX_ENDPOINTS = (
    "itrx.order",
    "itrx.order_query",
    "itrx.order_price",
    "itrx.index_data",
    "itrx.summary",
    "itrx.reclaim",
)
ENDPOINTS = frozenset(ZEROTRACE_ENDPOINTS + ITRX_ENDPOINTS)


class Sandbox:
    def __init__(self, config: SandboxConfig) -> None:
        validate(config)
        self.initial_config = config.copy()
        self.config = config
        self.clock = SandboxClock(config.speed)
        self.scheduler = Scheduler(self.clock)
        self.stats = Stats()
        self.faults = FaultBook(ENDPOINTS, config.seed)
        self.deliverer = Deliverer(self.scheduler, self.stats, lambda: self.config.delivery_timeout)
        self.zerotrace = ZeroTraceBook(self)
        self.itrx = ItrxBook(self)
        self.started_at = self.clock.now()

    def patch_config(self, patch: dict[str, Any]) -> list[str]:
        changed = apply_patch(self.config, patch)
        if "seed" in changed:
            self.faults.reseed(self.config.seed)
        if "speed" in changed:
            self.clock.set_speed(self.config.speed)
            self.scheduler.poke()
        self.zerotrace.config_changed(changed)
        self.itrx.config_changed(changed)
        return changed

    def reset(self) -> None:
        """Back to the start-up state: no orders, nonces, budgets, faults, deliveries or counters."""
        host, port = self.config.host, self.config.port
        self.config.__dict__.update(self.initial_config.copy().__dict__)
        self.config.host, self.config.port = host, port
        self.clock.set_speed(self.config.speed)
        self.scheduler.clear()
        self.deliverer.reset()
        self.faults.clear()
        self.faults.reseed(self.config.seed)
        self.stats.clear()
        self.zerotrace = ZeroTraceBook(self)
        self.itrx = ItrxBook(self)
