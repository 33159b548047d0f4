"""Settings for tests, written as the flat names operators use (``ledger_url``, ``polling_enabled``).

Tests set a handful of core values at a time; naming each one's group (``ledger={"ledger_url": ...}``)
would only repeat what :data:`worker.settings.GROUPS` already knows.
"""

from __future__ import annotations

from typing import Any

from worker.settings import GROUPS, Settings


def settings_of(partners: dict[str, dict[str, Any]] | None = None, **values: Any) -> Settings:
    """``Settings`` with each core value routed to its group; an unknown name is a TypeError, not ignored."""
    groups: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        group = next((key for key, model in GROUPS.items() if name in model.model_fields), None)
        if group is None:
            raise TypeError(f"no core setting is called {name!r}")
        groups.setdefault(group, {})[name] = value
    return Settings(partners=partners or {}, **groups)
