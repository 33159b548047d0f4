"""The settings that alerts and dashboards compare against, exported as gauges by every role.

A rule that copies a setting (a budget of 2,500, a queue called ``orders.create``) goes silently wrong the
day the setting changes; a rule that joins on these gauges follows it. Each role calls
:func:`export_settings` once it has read its settings, in the process that serves ``/metrics``.
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version

from worker import metrics
from worker.bus.topology import dead_letter_queue
from worker.logs import get_logger
from worker.partners import registry
from worker.settings import Settings

log = get_logger(__name__)

REVISION_ENV = "ORDER_WORKER_REVISION"
"""The source revision the running code was built from; the image sets it from its REVISION build arg
(the same value as its ``org.opencontainers.image.revision`` label)."""


def build_version() -> str:
    try:
        return version("order-worker")
    except PackageNotFoundError:
        return "unknown"


def build_revision() -> str:
    value = os.environ.get(REVISION_ENV, "").strip()
    # A label value: printable and short, whatever the environment holds.
    return value[:64] if value and value.isprintable() else "unknown"


def export_settings(settings: Settings) -> None:
    """Set the build, queue and budget gauges from ``settings`` and each partner's settings group.

    A group that does not read (the roles refuse to start on one long before this) leaves its budget
    gauges unset rather than take ``/metrics`` down with it."""
    metrics.BUILD_INFO.labels(build_version(), build_revision()).set(1)
    queues = {
        "create_order": settings.bus.create_queue,
        "poll_order": settings.bus.poll_queue,
        "resolve_order": settings.bus.actions_queue,
    }
    for actor, queue in queues.items():
        metrics.QUEUE_INFO.labels(actor, "commands", queue).set(1)
        metrics.QUEUE_INFO.labels(actor, "dead_letters", dead_letter_queue(queue)).set(1)
    for name in registry.names():
        try:
            groups = registry.account_groups(settings, name)
        except Exception as error:  # noqa: BLE001 - a metric must not stop a role that started
            log.warning("budget_gauges_not_exported", provider=name, error=type(error).__name__)
            continue
        for account, group in groups.items():
            metrics.PARTNER_BUDGET_WEIGHT.labels(name, account).set(group.weight_budget)
            metrics.PARTNER_BUDGET_WINDOW.labels(name, account).set(group.weight_window)
