"""What every command shares: logging, reading the settings with errors a person can act on."""

from __future__ import annotations

import logging
import sys

from pydantic import ValidationError

from worker.partners import registry
from worker.settings import Settings, get_settings


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pika").setLevel(logging.WARNING)


def load_settings() -> Settings:
    """The process's settings, or exit naming each invalid variable (never its value)."""
    try:
        return get_settings()
    except ValidationError as error:
        lines = [
            f"  {'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
            for e in error.errors(include_input=False)
        ]
        sys.exit(
            "order-worker: invalid settings (environment variables ORDER_WORKER_*):\n" + "\n".join(lines)
        )


def check_partners(settings: Settings) -> None:
    """Every partner's settings group readable and safe, or a message naming what to fix."""
    lines = []
    for name in registry.names():
        prefix = str(registry.get(name).settings_model.model_config.get("env_prefix", ""))
        try:
            registry.partner_settings(settings, name)
        except ValidationError as error:
            lines += [
                f"  {prefix}{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
                for e in error.errors(include_input=False)
            ]
    if lines:
        sys.exit("order-worker: invalid partner settings:\n" + "\n".join(lines))
    try:
        registry.checked_groups(settings)
    except ValueError as error:
        sys.exit(f"order-worker: {error}")
