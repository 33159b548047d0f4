"""What an order book needs of the sandbox it lives in.

The books are built by :class:`~order_worker_sandbox.core.Sandbox` and read its configuration, clock,
scheduler, counters and webhook deliverer at call time (a control-API patch replaces values in place).
Naming that here rather than the ``Sandbox`` class keeps the books below the core: the core imports them,
never the other way round.
"""

from __future__ import annotations

from typing import Protocol

from order_worker_sandbox.clock import SandboxClock, Scheduler
from order_worker_sandbox.config import SandboxConfig
from order_worker_sandbox.stats import Stats
from order_worker_sandbox.webhooks import Deliverer


class SandboxParts(Protocol):
    config: SandboxConfig
    clock: SandboxClock
    scheduler: Scheduler
    stats: Stats
    deliverer: Deliverer
