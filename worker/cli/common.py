"""What every command shares: logging, reading the settings with errors a person can act on."""

from __future__ import annotations

import sys

from pydantic import ValidationError

from worker.partners import registry
from worker.settings import ENV_PREFIX, GROUPS, Settings, get_settings


def load_settings() -> Settings:
    """The process's settings, or exit naming every invalid variable of every group (never its value)."""
    lines = []
    for group in GROUPS.values():
        try:
            group()
        except ValidationError as error:
            lines += variable_errors(error, ENV_PREFIX)
    if lines:
        sys.exit("order-worker: invalid settings:\n" + "\n".join(lines))
    return get_settings()


def variable_errors(error: ValidationError, prefix: str) -> list[str]:
    """One line per invalid setting, named as the environment variable that holds it."""
    lines = []
    for item in error.errors(include_input=False):
        name = "_".join(str(part) for part in item["loc"] if isinstance(part, str)).upper()
        lines.append(f"  {prefix}{name or '*'}: {item['msg']}")
    return lines


def check_partners(settings: Settings) -> None:
    """Every partner's settings group readable and safe, or a message naming what to fix."""
    groups, lines = {}, []
    for name in registry.names():
        try:
            groups[name] = registry.partner_settings(settings, name)
        except ValidationError as error:
            prefix = str(registry.get(name).settings_model.model_config.get("env_prefix", ""))
            lines += variable_errors(error, prefix)
    if lines:
        sys.exit("order-worker: invalid partner settings:\n" + "\n".join(lines))
    try:
        registry.checked_groups(settings, groups)
    except ValueError as error:
        sys.exit(f"order-worker: {error}")
