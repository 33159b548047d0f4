"""Log lines: one per event, JSON or console, with the command's fields on every line logged while the
command is handled, library lines (Dramatiq, pika, aiohttp through the standard library) included."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from worker import logs


@pytest.fixture
def root_logging() -> Iterator[None]:
    """configure() changes the process's root logger; put it back for the tests that follow."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_lines_carry_level_event_timestamp_and_the_command(
    root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("INFO", "json")
    with logs.command_scope(command_id="c-1", provider="0trace"):
        logs.bind(order_id="o-1", attempt=2, account=None)
        logs.get_logger("worker.pipeline").warning("order_in_doubt", code="interrupted")
        logging.getLogger("dramatiq.worker.WorkerThread").info("Retrying message %r.", "m-1")
    logs.get_logger("worker.pipeline").info("after")
    first, library, after = lines(capsys.readouterr().err)
    assert list(first)[:8] == [
        "timestamp",
        "level",
        "logger",
        "event",
        "command_id",
        "provider",
        "order_id",
        "attempt",
    ]
    assert (
        first["level"] == "warning" and first["event"] == "order_in_doubt" and first["code"] == "interrupted"
    )
    assert "account" not in first  # None values are not bound
    assert library["event"] == "Retrying message 'm-1'." and library["command_id"] == "c-1"
    assert library["logger"] == "dramatiq.worker.WorkerThread"
    assert "command_id" not in after  # the scope ended: the next command starts clean


def test_exceptions_stay_on_one_json_line(root_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO", "json")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logs.get_logger("worker.scheduler").exception("scheduler_pass_failed")
    (line,) = lines(capsys.readouterr().err)
    assert line["level"] == "error" and "RuntimeError: boom" in str(line["exception"])


def test_the_level_is_honoured_for_our_lines_and_the_libraries(
    root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("warning", "json")
    logs.get_logger("worker.pipeline").info("hidden")
    logging.getLogger("dramatiq.MainProcess").info("hidden too")
    logging.getLogger("dramatiq.MainProcess").warning("shown")
    assert [line["event"] for line in lines(capsys.readouterr().err)] == ["shown"]
    logs.configure("DEBUG", "json")
    logs.get_logger("worker.pipeline").debug("now_shown")
    logging.getLogger("pika.connection").info("pika narrates")  # pika stays at WARNING
    assert [line["event"] for line in lines(capsys.readouterr().err)] == ["now_shown"]


def test_console_lines_are_for_a_person(root_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO", "console")
    with logs.command_scope(command_id="c-2", provider="itrx"):
        logs.get_logger("worker.pipeline").info("order_created", status="processing")
    (line,) = capsys.readouterr().err.splitlines()
    assert "[info" in line and "order_created" in line and "[worker.pipeline]" in line
    assert line.index("command_id=c-2") < line.index("provider=itrx") < line.index("status=processing")


def test_auto_is_console_on_a_terminal_and_json_elsewhere() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert logs.resolve_format("auto", Terminal()) == "console"
    assert logs.resolve_format("auto", io.StringIO()) == "json"
    assert logs.resolve_format("json", Terminal()) == "json"
    assert logs.resolve_format("console", io.StringIO()) == "console"


def test_configuring_again_replaces_our_handler_only(root_logging: None) -> None:
    root = logging.getLogger()
    others = [h for h in root.handlers if not isinstance(h, logs.CurrentStderr)]
    logs.configure("INFO", "json")
    logs.configure("DEBUG", "console")
    assert [h for h in root.handlers if isinstance(h, logs.CurrentStderr)] != []
    assert len(root.handlers) == len(others) + 1 and root.level == logging.DEBUG


def test_threads_keep_their_own_command(root_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    """Dramatiq runs commands on several threads of one process at once; each line names its own."""
    logs.configure("INFO", "json")
    barrier = threading.Barrier(2)

    def handle(command_id: str) -> None:
        with logs.command_scope(command_id=command_id):
            barrier.wait()
            logs.get_logger("worker.pipeline").info("order_created")
            barrier.wait()

    threads = [threading.Thread(target=handle, args=(f"c-{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(str(line["command_id"]) for line in lines(capsys.readouterr().err)) == ["c-0", "c-1"]


def test_the_trace_hook_adds_nothing_without_a_tracer() -> None:
    event = logs.add_trace_id(None, "info", {"event": "x"})
    assert "trace_id" not in event or logs._TRACE is not None
