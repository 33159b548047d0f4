"""Prometheus metrics of every role.

Label values are closed vocabularies only (provider, endpoint, status, named call result, reason code):
never a command id, order id, address or anything secret, so cardinality stays bounded and nothing leaks.
The Dramatiq worker forks several processes, so ``order-worker worker`` sets PROMETHEUS_MULTIPROC_DIR
before anything imports prometheus_client; gauges therefore declare how processes combine.
"""

from __future__ import annotations

from typing import TypeVar, cast

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from worker.transport import RESULTS, CallResult

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

COMMANDS = Counter("order_worker_commands", "Commands handled, by actor and outcome.", ["actor", "outcome"])
COMMAND_WAIT = Histogram(
    "order_worker_command_wait_seconds",
    "Time from a command's enqueue to the start of its processing.",
    ["actor"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900),
)
PARTNER_REQUESTS = Counter(
    "order_worker_partner_requests",
    "Partner HTTP calls by provider, account, endpoint and named result (ok, rate_limited, ..., other).",
    ["provider", "account", "endpoint", "result"],
)
PARTNER_LATENCY = Histogram(
    "order_worker_partner_request_seconds",
    "Partner HTTP call latency.",
    ["provider", "account", "endpoint"],
    buckets=_LATENCY_BUCKETS,
)
PARTNER_WEIGHT = Counter(
    "order_worker_partner_weight",
    "Rate-limit weight spent against each partner account's budget.",
    ["provider", "account"],
)
BUDGET_WAIT = Histogram(
    "order_worker_budget_wait_seconds",
    "Time a partner call waited for room in its account's weight budget, by priority (first: creates and "
    "operator actions; read: polls, quotes, reads a push asks for).",
    ["budget", "priority"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10),
)
BUDGET_DEFERRED = Counter(
    "order_worker_budget_deferred",
    "Partner calls given up for lack of budget within their wait (the command is retried later).",
    ["budget", "priority"],
)
POLL_STALENESS = Gauge(
    "order_worker_poll_staleness_seconds",
    "Age of the last sight of the open order polling has neglected longest (its cadence plus how late its "
    "poll is); compare with order_worker_poll_cycle_seconds.",
    ["provider"],
    multiprocess_mode="max",
)
POLL_CYCLE = Gauge(
    "order_worker_poll_cycle_seconds",
    "Seconds the partner's poll budget needs to poll every open order once (open orders / polls per "
    "second the budget allows; 0: no budget). Polls cannot come more often than this on average.",
    ["provider"],
    multiprocess_mode="max",
)
CREATE_RETRIES = Counter(
    "order_worker_create_retries", "Create attempts scheduled again, by reason code.", ["provider", "reason"]
)
EVENTS_PUBLISHED = Counter("order_worker_events_published", "Events confirmed by the broker.", ["type"])
OUTBOX_BACKLOG = Gauge(
    "order_worker_outbox_backlog", "Events committed but not yet confirmed.", multiprocess_mode="mostrecent"
)
OUTBOX_OLDEST = Gauge(
    "order_worker_outbox_oldest_seconds",
    "Age of the oldest event not yet confirmed by the broker (0 when drained).",
    multiprocess_mode="mostrecent",
)
ORDERS = Gauge(
    "order_worker_orders",
    "Orders in the ledger by provider and status (each order once).",
    ["provider", "status"],
    multiprocess_mode="mostrecent",
)
ORDERS_UNTRACKABLE = Gauge(
    "order_worker_orders_untrackable",
    "Orders that cannot be polled (no token), whatever their status; order_worker_orders counts them too.",
    ["provider"],
    multiprocess_mode="mostrecent",
)
REJECTIONS = Counter("order_worker_rejections", "Commands rejected as malformed, by reason.", ["reason"])
DEAD_LETTERS = Counter("order_worker_dead_letters", "Dead-letter records written, by reason.", ["reason"])
IN_DOUBT = Counter("order_worker_in_doubt", "Orders that became in_doubt.", ["provider"])
STALE_ATTEMPTS = Counter(
    "order_worker_stale_attempts",
    "Create attempts whose outcome was discarded because a newer attempt had begun (a worker paused past "
    "its lease).",
    ["provider"],
)
UNTRACKABLE = Counter("order_worker_untrackable", "Orders created without a usable token.", ["provider"])
QUOTES = Counter(
    "order_worker_quotes",
    "Quote requests answered, by provider ('unknown' for none installed) and result (ok or the error code).",
    ["provider", "result"],
)
QUOTE_CACHE_HITS = Counter(
    "order_worker_quote_cache_hits", "Quotes answered from the short cache, by provider.", ["provider"]
)
QUOTE_SECONDS = Histogram(
    "order_worker_quote_seconds",
    "Time from a quote request taken to its reply ready (cache, budget wait and partner call).",
    ["provider"],
    buckets=_LATENCY_BUCKETS,
)
PUSHES = Counter(
    "order_worker_pushes", "Webhooks/callbacks received, by provider and result.", ["provider", "result"]
)
HELD_PUSHES = Counter(
    "order_worker_held_pushes",
    "Verified pushes kept because their order was not known yet (its create had not committed).",
    ["provider"],
)
HELD_PUSHES_APPLIED = Counter(
    "order_worker_held_pushes_applied",
    "Transitions made by held pushes once their order appeared (one per event they caused).",
    ["provider"],
)
HELD_PUSHES_EXPIRED = Counter(
    "order_worker_held_pushes_expired",
    "Held pushes dropped because their order did not appear within HELD_PUSH_SECONDS.",
)
HELD_PUSHES_WAITING = Gauge(
    "order_worker_held_pushes_waiting",
    "Pushes held now for orders not known yet; at HELD_PUSHES_MAX new ones are answered 503.",
    multiprocess_mode="mostrecent",
)
PUSH_TO_EVENT = Histogram(
    "order_worker_push_to_event_seconds",
    "From a push's arrival to its event committed to the outbox.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)

# What the settings say, exported so that alerts and dashboards compare against the configured values
# instead of copies of them. Every process of every role sets the same values; "max" makes one series.
BUILD_INFO = Gauge(
    "order_worker_build_info",
    "1, labelled with the running package version and the source revision it was built from.",
    ["version", "revision"],
    multiprocess_mode="max",
)
PARTNER_BUDGET_WEIGHT = Gauge(
    "order_worker_partner_budget_weight",
    "Configured rate-limit weight per window of each partner account (WEIGHT_BUDGET; 0: no budget).",
    ["provider", "account"],
    multiprocess_mode="max",
)
PARTNER_BUDGET_WINDOW = Gauge(
    "order_worker_partner_budget_window_seconds",
    "Configured sliding rate-limit window of each partner account (WEIGHT_WINDOW).",
    ["provider", "account"],
    multiprocess_mode="max",
)
QUEUE_INFO = Gauge(
    "order_worker_queue_info",
    "1 per RabbitMQ queue this service uses, by the actor it feeds and its kind (commands, dead_letters).",
    ["actor", "kind", "queue"],
    multiprocess_mode="max",
)


_M = TypeVar("_M", bound=MetricWrapperBase)
_CHILDREN: dict[tuple[MetricWrapperBase, tuple[str, ...]], MetricWrapperBase] = {}


def child(metric: _M, *values: str) -> _M:
    """``metric.labels(*values)``, looked up in one dictionary: ``labels()`` validates and locks on every
    call, which costs more than the update on a path taken several times per command. The children are
    the ones ``labels()`` returns (never removed, label values are closed vocabularies), so a race only
    stores the same object twice."""
    key = (metric, values)
    found = _CHILDREN.get(key)
    if found is None:
        found = _CHILDREN[key] = metric.labels(*values)
    return cast(_M, found)


def observe_partner_call(
    provider: str, account: str, endpoint: str, result: str, seconds: float, weight: int
) -> None:
    """The observer of partner calls (``worker.partners.registry.AccountObserver``), for clients that know
    nothing of Prometheus. ``result`` arrives named (``registry.named_results``); anything else is counted
    as ``other``, never as itself, so no caller can grow the label's set of values. Accounts are named in
    the settings, so they are a closed set too."""
    if result not in RESULTS:
        result = CallResult.OTHER.value
    child(PARTNER_REQUESTS, provider, account, endpoint, result).inc()
    child(PARTNER_LATENCY, provider, account, endpoint).observe(seconds)
    if weight:
        child(PARTNER_WEIGHT, provider, account).inc(weight)
