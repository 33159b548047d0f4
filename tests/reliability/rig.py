"""What is particular to the reliability suite; the processes, the throwaway broker, the fault proxy, the
event witness and the ledger views it shares with the end-to-end tests live in ``tests.support``.

* sizes (CI or large), seeds and one-line JSON verdicts appended to a JSON-lines report;
* canary credentials and the scan for them, and a sandbox and :class:`RelStack` that use them;
* a :class:`Supervisor` that restarts dead or hung roles, and /proc sampling of process trees.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import signal
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.stack import Process, Sandbox, Stack, http_ok, spawn_sandbox
from worker.ledger.base import Ledger
from worker.sealing import SealError, TokenSealer

REPO = Path(__file__).resolve().parents[2]

# ------------------------------------------------------------------------------------------ sizes & seeds


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is. CI sizes meet the issue's minimums; ``large`` is for nightly runs."""

    name: str
    kill9_commands: int
    broker_commands: int
    cluster_commands: int
    relay_orders: int
    relay_resets: int
    flaky_commands: int
    outage_seconds: float
    outage_commands: int
    ratelimit_replicas: int
    ratelimit_commands: int
    poison_commands: int
    shutdown_commands: int
    canary_commands: int
    soak_seconds: float
    soak_rate: float
    state_machine_examples: int
    idle_connection_creates: int
    early_push_commands: int
    stale_orders: int
    """Orders worker A has out when it is stopped past its lease (per provider); A runs a thread each."""
    ledger_outage_commands: int
    ledger_outage_seconds: float
    disk_full_commands: int
    disk_full_seconds: float


CI = Sizes(
    name="ci",
    kill9_commands=250,
    broker_commands=2000,
    cluster_commands=2000,
    relay_orders=120,
    relay_resets=6,
    flaky_commands=400,
    outage_seconds=120.0,
    outage_commands=60,
    ratelimit_replicas=3,
    ratelimit_commands=40,
    poison_commands=40,
    shutdown_commands=24,
    canary_commands=40,
    soak_seconds=300.0,
    soak_rate=4.0,
    state_machine_examples=400,
    idle_connection_creates=500,
    early_push_commands=100,
    stale_orders=8,
    ledger_outage_commands=1000,
    ledger_outage_seconds=60.0,
    disk_full_commands=500,
    disk_full_seconds=25.0,
)
LARGE = Sizes(
    name="large",
    kill9_commands=1000,
    broker_commands=10000,
    cluster_commands=10000,
    relay_orders=600,
    relay_resets=25,
    flaky_commands=1000,
    outage_seconds=120.0,
    outage_commands=300,
    ratelimit_replicas=6,
    ratelimit_commands=200,
    poison_commands=200,
    shutdown_commands=100,
    canary_commands=200,
    soak_seconds=1800.0,
    soak_rate=8.0,
    state_machine_examples=3000,
    idle_connection_creates=2000,
    early_push_commands=500,
    stale_orders=32,
    ledger_outage_commands=5000,
    ledger_outage_seconds=120.0,
    disk_full_commands=2000,
    disk_full_seconds=60.0,
)


def pick_sizes(option: str | None) -> Sizes:
    name = (option or os.environ.get("ORDER_WORKER_RELIABILITY_SIZE") or "ci").lower()
    if name not in ("ci", "large"):
        raise ValueError(f"reliability size must be 'ci' or 'large', got {name!r}")
    return LARGE if name == "large" else CI


def new_seed() -> int:
    return int(os.environ.get("ORDER_WORKER_TEST_SEED", "0")) or random.randrange(1, 2**31)


def report_path() -> Path:
    configured = os.environ.get("ORDER_WORKER_RELIABILITY_REPORT")
    return Path(configured) if configured else REPO / ".run" / "reliability.jsonl"


# ------------------------------------------------------------------------------------------ verdicts


class Verdict:
    """The counts of one scenario and the criteria judged on them, emitted as one JSON line.

    ``emit()`` prints the line, appends it to the report and then fails the test if a criterion failed,
    so the report holds failures too. A scenario that dies before its verdict gets an ``aborted`` line.
    """

    def __init__(self, scenario: str, seed: int, size: str) -> None:
        self.scenario = scenario
        self.started = time.monotonic()
        self.data: dict[str, Any] = {"seed": seed, "size": size}
        self.checks: dict[str, bool] = {}
        self.emitted = False

    def count(self, **values: Any) -> None:
        self.data.update(values)

    def check(self, name: str, ok: bool) -> bool:
        self.checks[name] = bool(ok)
        return bool(ok)

    def line(self, error: str | None = None) -> dict[str, Any]:
        failed = [name for name, ok in self.checks.items() if not ok]
        record: dict[str, Any] = {
            "scenario": self.scenario,
            "pass": error is None and bool(self.checks) and not failed,
            "seconds": round(time.monotonic() - self.started, 1),
            **self.data,
            "criteria": self.checks,
        }
        if failed:
            record["failed"] = failed
        if error is not None:
            record["error"] = error[:500]
        record["at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return record

    def write(self, record: dict[str, Any]) -> None:
        text = json.dumps(record, default=str)
        print(text, flush=True)
        path = report_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(text + "\n")
        self.emitted = True

    def emit(self) -> dict[str, Any]:
        record = self.line()
        self.write(record)
        failed = record.get("failed", [])
        assert not failed, f"{self.scenario} failed {failed}: {json.dumps(record)}"
        return record

    def abort(self, error: str) -> None:
        if not self.emitted:
            self.write(self.line(error=error))


# ------------------------------------------------------------------------------------------ canaries


@dataclass(frozen=True)
class Canaries:
    """Distinctive credentials for one run: the sandbox and the service both use them, and none may
    ever be found in what the service writes (logs, events, dead letters, metrics, exception text)."""

    zt_api_secret: str
    zt_webhook_secret: str
    itrx_api_key: str
    itrx_api_secret: str
    token_key_material: str

    @classmethod
    def fresh(cls) -> Canaries:
        tag = uuid.uuid4().hex
        return cls(
            zt_api_secret=f"canaryZtApiSecret{tag[:20]}",
            zt_webhook_secret=f"canaryZtWebhook{tag[8:28]}",
            itrx_api_key=f"CANARYITRXKEY{tag[:19].upper()}",
            itrx_api_secret=f"CANARYITRXSECRET{tag.upper()}",
            token_key_material=base64.b64encode(os.urandom(32)).decode(),
        )

    @property
    def token_keys(self) -> str:
        return f"rk1:{self.token_key_material}"

    def sandbox_env(self) -> dict[str, str]:
        return {
            "ORDER_WORKER_SANDBOX_ZEROTRACE_API_SECRET": self.zt_api_secret,
            "ORDER_WORKER_SANDBOX_ZEROTRACE_WEBHOOK_SECRET": self.zt_webhook_secret,
            "ORDER_WORKER_SANDBOX_ITRX_API_KEY": self.itrx_api_key,
            "ORDER_WORKER_SANDBOX_ITRX_API_SECRET": self.itrx_api_secret,
        }

    def service_env(self) -> dict[str, str]:
        return {
            "ORDER_WORKER_ZEROTRACE_API_SECRET": self.zt_api_secret,
            "ORDER_WORKER_ZEROTRACE_WEBHOOK_SECRETS": self.zt_webhook_secret,
            "ORDER_WORKER_ITRX_API_KEY": self.itrx_api_key,
            "ORDER_WORKER_ITRX_API_SECRET": self.itrx_api_secret,
            "ORDER_WORKER_TOKEN_KEYS": self.token_keys,
        }

    def secrets(self) -> dict[str, str]:
        return {
            "zt_api_secret": self.zt_api_secret,
            "zt_webhook_secret": self.zt_webhook_secret,
            "itrx_api_key": self.itrx_api_key,
            "itrx_api_secret": self.itrx_api_secret,
            "token_key": self.token_key_material,
        }


def scan_for(texts: Mapping[str, bytes | str], needles: Mapping[str, str]) -> list[str]:
    """``where:what`` for every needle found in any text (needles shorter than 8 chars are ignored)."""
    found = []
    for where, text in texts.items():
        blob = text.encode("utf-8", "replace") if isinstance(text, str) else text
        for what, needle in needles.items():
            if len(needle) >= 8 and needle.encode() in blob:
                found.append(f"{where}:{what}")
    return found


# ------------------------------------------------------------------------------------------ sandbox


def canary_sandbox(
    log_dir: Path,
    canaries: Canaries,
    *,
    speed: float = 100.0,
    seed: int | None = None,
    rate_limit_weight: int = 10_000_000,
    extra: Mapping[str, str] | None = None,
) -> Sandbox:
    """A sandbox of our own, with the run's canary credentials (passed by environment, not argv)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDER_WORKER_")}
    env.update(canaries.sandbox_env())
    env["ORDER_WORKER_SANDBOX_ZEROTRACE_RATE_LIMIT_WEIGHT"] = str(rate_limit_weight)
    if seed is not None:
        env["ORDER_WORKER_SANDBOX_SEED"] = str(seed)
    env.update(extra or {})
    return spawn_sandbox(log_dir, speed, ["--quiet"], env)


def sandbox_requests(sandbox: Sandbox) -> Counter[str]:
    return Counter(sandbox.stats()["requests"])


def add_fault(sandbox: Sandbox, **rule: Any) -> dict[str, Any]:
    answer: dict[str, Any] = sandbox.control("faults", rule)
    return answer


def clear_faults(sandbox: Sandbox) -> None:
    request = urllib.request.Request(f"{sandbox.url}/_sandbox/faults", method="DELETE")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


# ------------------------------------------------------------------------------------------ the stack


@dataclass
class RelStack(Stack):
    """A :class:`Stack` with canary credentials (and, like any stack, optionally its own broker URL)."""

    canaries: Canaries = field(default_factory=Canaries.fresh)

    def env(self, **extra: str) -> dict[str, str]:
        """Defaults < this stack's canaries < ``settings`` < ``extra``."""
        merged = {
            # the sandboxes here have a huge budget unless a scenario says otherwise (the rate-limit one)
            "ORDER_WORKER_ZEROTRACE_WEIGHT_BUDGET": "10000000",
            "ORDER_WORKER_METRICS_HOST": "127.0.0.1",
            "ORDER_WORKER_WEBHOOKS_HOST": "127.0.0.1",
            **self.canaries.service_env(),
            **self.settings,
            **extra,
        }
        return super().env(**merged)


# ------------------------------------------------------------------------------------------ supervisor


class Supervisor:
    """Restarts a role whenever its process has died, as Kubernetes would, and, like a liveness probe,
    when it is alive but its /healthz has stopped answering (3 failures 1 s apart, after a 20 s grace).
    Counts both; a liveness restart is the symptom of a hang, so scenarios report it separately."""

    GRACE = 20.0
    PROBES = 3

    def __init__(self, stack: Stack, role: str, *args: str, **env: str) -> None:
        self.stack = stack
        self.role = role
        self.args = args
        self.env = env
        self.restarts = 0
        self.liveness_restarts = 0
        self.exit_codes: list[int | None] = []
        self.process = self._start()

    def _start(self) -> Process:
        self._started = time.monotonic()
        self._failed_probes = 0
        self._last_probe = 0.0
        return self.stack.start(self.role, *self.args, **self.env)

    def _healthy(self) -> bool:
        port = getattr(self.process, "metrics_port", None)
        return port is None or http_ok(f"http://127.0.0.1:{port}/healthz")

    def ensure(self) -> bool:
        """True when the process had died (or hung) and was restarted."""
        if self.process.alive:
            now = time.monotonic()
            if now - self._started < self.GRACE or now - self._last_probe < 1.0:
                return False
            self._last_probe = now
            self._failed_probes = 0 if self._healthy() else self._failed_probes + 1
            if self._failed_probes < self.PROBES:
                return False
            self.liveness_restarts += 1
            self.process.signal_group(signal.SIGKILL)
            self.process.popen.wait(10)
        self.exit_codes.append(self.process.popen.returncode)
        self.restarts += 1
        self.process = self._start()
        return True

    def wait_ready(self, timeout: float = 60) -> None:
        self.stack.wait_ready(self.process, timeout)


def open_tokens(ledger: Ledger, canaries: Canaries, command_ids: Iterable[str]) -> dict[str, str]:
    """{command_id: plaintext token} for every 0trace order with a sealed token (the test holds the key)."""
    from pydantic import SecretStr

    sealer = TokenSealer.from_settings([SecretStr(canaries.token_keys)])
    tokens = {}
    for command_id in command_ids:
        record = ledger.get(command_id)
        if record is None or record.sealed_token is None or record.order_id is None:
            continue
        try:
            tokens[command_id] = sealer.open(record.sealed_token, record.order_id)
        except SealError:
            tokens[command_id] = ""
    return tokens


# ------------------------------------------------------------------------------------------ /proc sampling


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    tree, stack = [], [pid]
    while stack:
        current = stack.pop()
        tree.append(current)
        stack.extend(children.get(current, []))
    return tree


@dataclass
class ProcSample:
    rss_kb: int
    fds: int
    threads: int


def sample(pid: int) -> ProcSample | None:
    try:
        status = (Path("/proc") / str(pid) / "status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    values = {}
    for line in status.splitlines():
        name, _, rest = line.partition(":")
        values[name] = rest.strip()
    return ProcSample(
        rss_kb=int(values.get("VmRSS", "0 kB").split()[0]),
        fds=fds,
        threads=int(values.get("Threads", "0")),
    )


def tree_sample(pid: int) -> dict[int, ProcSample]:
    samples = {}
    for member in process_tree(pid):
        taken = sample(member)
        if taken is not None:
            samples[member] = taken
    return samples
