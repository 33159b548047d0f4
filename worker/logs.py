"""Structured logs for every process: one line per event, JSON for a log pipeline or console for a person.

Our own code logs through structlog (``log.warning("order_in_doubt", command_id=..., reason=...)``) so the
fields stay fields; Dramatiq, pika and aiohttp log through the standard library, and the one root handler
renders their records the same way, so a pipeline can parse every line of every role. Fields that belong
to one command (command_id, provider, order_id, attempt, event_id) are bound once per command in context
variables and ride along on every line logged while it is handled, third-party lines included.

This module imports nothing from order-worker, so every layer, the transport included, may log through it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, TextIO

import structlog
from structlog.contextvars import bind_contextvars, clear_contextvars
from structlog.typing import EventDict, Processor, WrappedLogger

from worker import tracing

Format = Literal["auto", "json", "console"]
FORMATS: tuple[Format, ...] = ("auto", "json", "console")


def _process_id(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Dramatiq's worker processes share one stream; the pid tells their lines apart."""
    event.setdefault("pid", os.getpid())
    return event


COMMAND_FIELDS = (
    *("command_id", "provider", "account", "order_id", "attempt", "event_id", "trace_id", "span_id"),
)
"""The fields bound once per command (``bind``, ``command_scope``); a log pipeline filters on these."""

LEADING = ("timestamp", "level", "logger", "event", *COMMAND_FIELDS)


def _leading_fields_first(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """The same keys open every line in the same order, whichever order the context variables come in,
    so that a person reading raw lines finds the command at once."""
    return {**{key: event.pop(key) for key in LEADING if key in event}, **event}


def add_trace_id(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """The trace the line belongs to: the current span's when spans are recorded, else the trace context
    the command or push being handled arrived with, so a log pipeline joins lines and traces either way."""
    context = tracing.current()
    if context:
        _version, trace, span, _flags = context[tracing.TRACEPARENT].split("-")
        event.setdefault("trace_id", trace)
        event.setdefault("span_id", span)
    return event


SHARED: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    add_trace_id,
]
"""What every line gets, whether it was logged by our code or by a library through the standard library."""

# Configured on import so that our loggers always hand their events to the standard library: tests that
# capture records (pytest's caplog) and embedders that never call configure() still see them.
structlog.configure(
    processors=[
        structlog.stdlib.filter_by_level,
        *SHARED,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.StackInfoRenderer(),
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=True,
)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


class CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a line is emitted.

    Dramatiq points ``sys.stderr`` of each worker process at a pipe to its main process, which writes the
    lines of all processes one whole line at a time; a handler holding the original stream would bypass
    that pipe and let two processes' lines interleave.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def resolve_format(log_format: str, stream: TextIO | None = None) -> Literal["json", "console"]:
    """``auto`` is console for a person at a terminal and JSON everywhere else (containers, files)."""
    if log_format in ("json", "console"):
        return "json" if log_format == "json" else "console"
    stream = stream or sys.stderr
    return "console" if stream.isatty() else "json"


def formatter(log_format: Literal["json", "console"]) -> structlog.stdlib.ProcessorFormatter:
    renderer: list[Processor]
    if log_format == "json":
        renderer = [
            _process_id,
            structlog.processors.format_exc_info,
            _leading_fields_first,
            structlog.processors.JSONRenderer(sort_keys=False),
        ]
    else:
        renderer = [
            _leading_fields_first,
            structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(), sort_keys=False),
        ]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=SHARED,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    )


def level_number(level: str) -> int:
    number = logging.getLevelName(level.strip().upper())
    return number if isinstance(number, int) else logging.INFO


def configure(level: str = "INFO", log_format: str = "auto") -> None:
    """Route every record of this process to stderr at ``level`` in ``log_format``; safe to call again.

    Handlers others installed on the root logger (pytest's capture) are kept; only our own is replaced.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, CurrentStderr)]:
        root.removeHandler(handler)
    handler = CurrentStderr()
    handler.setFormatter(formatter(resolve_format(log_format)))
    root.addHandler(handler)
    number = level_number(level)
    root.setLevel(number)
    # Library warnings (deprecations) become records too, so that stderr carries nothing but log lines.
    logging.captureWarnings(True)
    # pika narrates every connection step at INFO; its warnings and errors are what an operator needs.
    logging.getLogger("pika").setLevel(max(number, logging.WARNING))


def configure_from_environment() -> None:
    """Logging from ``ORDER_WORKER_LOG_LEVEL`` and ``ORDER_WORKER_LOG_FORMAT`` alone, read before the rest
    of the settings so that an invalid setting is itself reported in the chosen format."""
    environ = os.environ
    configure(environ.get("ORDER_WORKER_LOG_LEVEL", "INFO"), environ.get("ORDER_WORKER_LOG_FORMAT", "auto"))


def bind(**fields: Any) -> None:
    """Add fields to every later line of the current command (``None`` values are left out)."""
    bind_contextvars(**{key: value for key, value in fields.items() if value is not None})


@contextmanager
def command_scope(**fields: Any) -> Iterator[None]:
    """The fields of one command, on every line logged while it is handled, then dropped.

    Dramatiq runs many commands one after another on each worker thread; clearing on entry and exit keeps
    a command's id from leaking onto the next command's lines.
    """
    clear_contextvars()
    bind(**fields)
    try:
        yield
    finally:
        clear_contextvars()
