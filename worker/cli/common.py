"""What every command shares: logging, reading the settings with errors a person can act on."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, NoReturn

from pydantic import ValidationError

from worker.partners import registry
from worker.settings import ENV_PREFIX, GROUPS, Settings, broker_hosts, get_settings

if TYPE_CHECKING:
    from worker.ledger.base import Ledger


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


def open_ready_ledger(command: str) -> Ledger:
    """The configured ledger, migrated and reachable, or exit 2 with one line saying what to do. Creates
    nothing: a mistyped SQLite path must not leave an empty database behind."""
    from worker.ledger import EngineNotInstalledError, open_ledger

    url = load_settings().ledger.ledger_url.get_secret_value()
    # A person is waiting: a server that does not answer is reported after seconds, not the pool's 30 s of
    # retries, each logged.
    quick = {"pool_timeout": 5} if not url.startswith("sqlite") else {}
    pool_log = logging.getLogger("psycopg.pool")
    level = pool_log.level
    pool_log.setLevel(logging.CRITICAL)
    try:
        ledger = open_ledger(url, **quick)
        pending = ledger.pending_migrations()
    except EngineNotInstalledError as error:
        refuse(command, str(error))
    except Exception as error:  # noqa: BLE001 - any engine's connection failure, named but not echoed
        refuse(command, f"cannot read the ledger ({type(error).__name__}); check ORDER_WORKER_LEDGER_URL")
    finally:
        pool_log.setLevel(level)
    if pending:
        ledger.close()
        refuse(
            command,
            f"the ledger is not migrated ({pending} migrations to apply): run 'order-worker migrate', "
            "or check ORDER_WORKER_LEDGER_URL",
        )
    return ledger


def refuse(command: str, message: str) -> NoReturn:
    """One line on standard error and exit status 2: the command cannot run where it was pointed."""
    print(f"order-worker {command}: {message}", file=sys.stderr)
    sys.exit(2)


@contextlib.contextmanager
def unreachable_broker(command: str, settings: Settings) -> Iterator[None]:
    """Turn a broker that cannot be reached into one line and exit 2, naming the host, never the URL.
    pika's own account of the failure (several ERROR lines and a traceback) is held back meanwhile."""
    from order_worker_client.producer import BrokerUnavailableError
    from pika.exceptions import AMQPConnectionError

    pika_log = logging.getLogger("pika")
    level = pika_log.level
    pika_log.setLevel(logging.CRITICAL)
    try:
        yield
    except (AMQPConnectionError, BrokerUnavailableError) as error:
        hosts = broker_hosts(settings.bus.broker_url.get_secret_value())
        refuse(
            command,
            f"cannot reach RabbitMQ at {hosts} ({type(error).__name__}); check ORDER_WORKER_BROKER_URL",
        )
    finally:
        pika_log.setLevel(level)
