"""Every role logs JSON lines when asked, Dramatiq's own processes included, at the level asked for, and a
command's lines carry its fields so that a log pipeline can follow one order across processes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.partners import zerotrace_command
from tests.support.stack import Process, Stack, collect_events, wait_until

pytestmark = pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)


def json_lines(process: Process) -> list[dict[str, Any]]:
    """Every line of the process's output (stopped or not), each of which must be one JSON object."""
    parsed = []
    for line in process.log_path.read_text(errors="replace").splitlines():
        if line.strip():
            try:
                parsed.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"{process.name} wrote a line that is not JSON: {line!r}") from None
    return parsed


def test_every_role_logs_json_and_a_command_carries_its_fields(stack: Stack) -> None:
    env = {"ORDER_WORKER_LOG_FORMAT": "json", "ORDER_WORKER_LOG_LEVEL": "INFO"}
    worker = stack.start_worker(**env)
    scheduler = stack.start_scheduler(**env)
    webhooks = stack.start_webhooks(**env)
    command = zerotrace_command()
    with stack.watcher() as watcher, stack.producer() as producer:
        producer.create_order(command)
        collect_events(watcher, lambda events: any(e["type"] == "created" for e in events), timeout=60)
    wait_until(lambda: '"order_created"' in worker.output(), 10, "the order_created line")

    for process in (worker, scheduler, webhooks):
        lines = json_lines(process)
        assert lines, process.name
        for line in lines:
            assert {"timestamp", "level", "event", "logger"} <= set(line), line
    worker_lines = json_lines(worker)
    # Dramatiq's own lines, from its main process and its worker processes, come out the same way.
    assert {"dramatiq.MainProcess", "dramatiq.WorkerProcess(0)"} <= {line["logger"] for line in worker_lines}
    (created,) = [line for line in worker_lines if line["event"] == "order_created"]
    assert created["command_id"] == command["command_id"]
    assert created["provider"] == "0trace"
    assert created["order_id"] and created["attempt"] == 1 and created["actor"] == "create_order"
    assert created["level"] == "info" and created["pid"] != next(
        line["pid"] for line in worker_lines if line["logger"] == "dramatiq.MainProcess"
    )


def test_dramatiq_worker_processes_honour_the_level(stack: Stack) -> None:
    """Dramatiq's processes used to log at a level of their own, whatever ORDER_WORKER_LOG_LEVEL said."""
    verbose = stack.start_worker(ORDER_WORKER_LOG_FORMAT="json", ORDER_WORKER_LOG_LEVEL="DEBUG")
    wait_until(lambda: "Worker process is ready for action." in verbose.output(), 30, "worker process ready")
    debug = [line for line in json_lines(verbose) if line["level"] == "debug"]
    assert any(line["logger"] == "dramatiq.WorkerProcess(0)" for line in debug)  # "Loading broker..."
    verbose.stop()

    quiet = stack.start_worker(ORDER_WORKER_LOG_FORMAT="json", ORDER_WORKER_LOG_LEVEL="WARNING")
    quiet.stop()
    levels = {line["level"] for line in json_lines(quiet)}
    assert levels <= {"warning", "error", "critical"}, levels


def test_one_trace_id_follows_a_command_through_the_log_lines_of_every_role(stack: Stack) -> None:
    """The producer's trace id on the worker's lines for the command and on the relay's lines for its
    events, as it is on the events' own ``traceparent`` header: logs, traces and events join on it."""
    trace_id = "5c1c63e3b2f84a0f9b0e1d2c3a4b5c6d"
    context = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    env = {"ORDER_WORKER_LOG_FORMAT": "json", "ORDER_WORKER_LOG_LEVEL": "DEBUG"}
    worker = stack.start_worker(**env)
    scheduler = stack.start_scheduler("--no-scheduler", **env)
    command = zerotrace_command()
    with stack.watcher() as watcher, stack.producer() as producer:
        producer.create_order(command, trace_context=context)
        events = collect_events(watcher, lambda seen: any(e["type"] == "created" for e in seen), timeout=60)
    [created] = [e for e in events if e["type"] == "created"]
    wait_until(lambda: '"event_published"' in scheduler.output(), 10, "the relay's event_published line")

    command_lines = [line for line in json_lines(worker) if line.get("command_id") == command["command_id"]]
    assert any(line["event"] == "order_created" for line in command_lines)
    assert {line.get("trace_id") for line in command_lines} == {trace_id}
    published = [
        line
        for line in json_lines(scheduler)
        if line["event"] == "event_published" and line["event_id"] == created["event_id"]
    ]
    assert published and {line.get("trace_id") for line in published} == {trace_id}
