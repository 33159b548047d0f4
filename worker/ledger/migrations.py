"""Versioned schema migrations, shared by both backends.

Why versioned and append-only: every replica runs ``migrate()`` at start, possibly all at once and possibly
from different releases during a rolling deploy. Each migration is applied exactly once, inside one
transaction that also records it in ``schema_version``, under a lock that serialises the racers (an
advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite). A released migration is never edited; a
change of schema is a new entry at the end of :data:`MIGRATIONS`.

The DDL is written once. Both engines accept the same column types except for binary data, so the only
placeholder is ``{blob}`` (``BLOB`` / ``BYTEA``). ``DOUBLE PRECISION`` gets REAL affinity on SQLite and
``BOOLEAN`` numeric affinity (stored as 0/1), which is what the shared code expects back.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]

    def render(self, blob_type: str) -> list[str]:
        return [statement.format(blob=blob_type) for statement in self.statements]


SCHEMA_VERSION_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " applied_at DOUBLE PRECISION NOT NULL)"
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "orders, outbox, dead letters, pushes",
        (
            """CREATE TABLE orders (
                command_id TEXT PRIMARY KEY,
                provider TEXT NOT NULL,
                fingerprint TEXT NOT NULL,
                command TEXT NOT NULL,
                partner_ref TEXT NOT NULL,
                status TEXT NOT NULL,
                provider_status TEXT,
                order_id TEXT,
                snapshot TEXT,
                sealed_token {blob},
                token_key_id TEXT,
                untrackable BOOLEAN NOT NULL DEFAULT FALSE,
                attempts INTEGER NOT NULL DEFAULT 0,
                attempt_open BOOLEAN NOT NULL DEFAULT FALSE,
                lease_until DOUBLE PRECISION,
                next_action_at DOUBLE PRECISION,
                partner_updated_at DOUBLE PRECISION,
                last_push_at DOUBLE PRECISION,
                last_error TEXT,
                event_seq INTEGER NOT NULL DEFAULT 0,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL
            )""",
            # A partner_ref names one partner order: two commands must never share it.
            "CREATE UNIQUE INDEX orders_partner_ref ON orders (provider, partner_ref)",
            # Webhooks name the partner's order id.
            "CREATE INDEX orders_order_id ON orders (provider, order_id) WHERE order_id IS NOT NULL",
            # The scheduler's scan. Terminal and in_doubt orders keep next_action_at NULL, so the index
            # holds only live work however many finished orders accumulate.
            "CREATE INDEX orders_due ON orders (next_action_at) WHERE next_action_at IS NOT NULL",
            # count_by_status reads this index alone (covering), never the wide rows.
            "CREATE INDEX orders_status ON orders (provider, status, untrackable)",
            """CREATE TABLE outbox (
                event_id TEXT PRIMARY KEY,
                routing_key TEXT NOT NULL,
                event_type TEXT NOT NULL,
                body {blob} NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                published_at DOUBLE PRECISION,
                lease_until DOUBLE PRECISION
            )""",
            # The relay's scan and the backlog gauge touch only unpublished rows.
            "CREATE INDEX outbox_unpublished ON outbox (created_at) WHERE published_at IS NULL",
            "CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL",
            """CREATE TABLE dead_letters (
                rejection_key TEXT PRIMARY KEY,
                event_id TEXT NOT NULL,
                command_id TEXT,
                provider TEXT,
                code TEXT NOT NULL,
                reason TEXT NOT NULL,
                metadata TEXT NOT NULL,
                detail TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX dead_letters_created ON dead_letters (created_at)",
            """CREATE TABLE pushes (
                dedupe_key TEXT PRIMARY KEY,
                seen_at DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX pushes_seen ON pushes (seen_at)",
        ),
    ),
    Migration(
        2,
        "shared partner weight budget (worker.ratelimit)",
        (
            # One row per budget (partner account): the row every taker locks, and a 429's Retry-After.
            """CREATE TABLE rate_budgets (
                name TEXT PRIMARY KEY,
                blocked_until DOUBLE PRECISION NOT NULL DEFAULT 0
            )""",
            # The charges inside the sliding window (older ones are deleted by the next taker).
            """CREATE TABLE rate_charges (
                name TEXT NOT NULL,
                at DOUBLE PRECISION NOT NULL,
                weight INTEGER NOT NULL
            )""",
            "CREATE INDEX rate_charges_name_at ON rate_charges (name, at)",
        ),
    ),
    Migration(
        3,
        "operator actions on orders (emergency resolution)",
        (
            # One row per action_id: the intent committed before the partner call, then its outcome.
            """CREATE TABLE order_actions (
                action_id TEXT PRIMARY KEY,
                command_id TEXT NOT NULL,
                fingerprint TEXT NOT NULL,
                choice TEXT NOT NULL,
                options TEXT NOT NULL,
                note TEXT,
                state TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                lease_until DOUBLE PRECISION,
                last_error TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX order_actions_command ON order_actions (command_id)",
        ),
    ),
    Migration(
        4,
        "trace context of each outbox event (worker.tracing)",
        # Nullable and without a default, so adding it rewrites no existing row on either engine.
        ("ALTER TABLE outbox ADD COLUMN trace_context TEXT",),
    ),
    Migration(
        5,
        "pushes held for orders not known yet (worker.ledger.held)",
        (
            # A verified push naming a partner order the ledger cannot find yet: the create that makes it
            # findable has not committed. Applied (and deleted) in that create's transaction.
            """CREATE TABLE held_pushes (
                dedupe_key TEXT PRIMARY KEY,
                provider TEXT NOT NULL,
                order_id TEXT NOT NULL,
                signers TEXT NOT NULL,
                observation TEXT NOT NULL,
                held_at DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX held_pushes_order ON held_pushes (provider, order_id)",
            "CREATE INDEX held_pushes_held_at ON held_pushes (held_at)",
        ),
    ),
    Migration(
        6,
        "the command each outbox event answers, its message's correlation_id",
        # Nullable: rows written before it are published without a correlation_id.
        ("ALTER TABLE outbox ADD COLUMN command_id TEXT",),
    ),
    Migration(
        7,
        "the shared weight budget counted per second (worker.ledger.budget)",
        (
            # A budget's charges added up per second: a take reads about window + 2 rows however much of
            # the budget is in use. last_at (the bucket's latest charge) says until when it counts;
            # first_weight is the part charged by creates and operator actions, which reads leave room for.
            """CREATE TABLE rate_buckets (
                name TEXT NOT NULL,
                second BIGINT NOT NULL,
                weight INTEGER NOT NULL,
                first_weight INTEGER NOT NULL DEFAULT 0,
                last_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (name, second)
            )""",
            # The charges still in the window when a replica upgrades are carried over, so the account's
            # window is not forgotten while the partner still counts them. The cast truncates on SQLite and
            # rounds on PostgreSQL; either way a bucket's second is at most one above its charges', which
            # only makes the next taker delete it a second later.
            """INSERT INTO rate_buckets (name, second, weight, last_at)
                SELECT name, CAST(at AS BIGINT), SUM(weight), MAX(at) FROM rate_charges
                GROUP BY name, CAST(at AS BIGINT)""",
            # Dropped rather than left behind: during a rolling upgrade a replica of the previous release
            # would go on charging a log that upgraded replicas no longer read, and the two releases would
            # each spend the account's whole budget. Without the table its takes fail and it calls nothing.
            "DROP TABLE rate_charges",
        ),
    ),
    Migration(
        8,
        "due orders by partner, and partner deadlines (worker.scheduler)",
        (
            # The scheduler paces each partner's polls to that partner's budget, so it reads the due rows
            # of one partner at a time, oldest first: an index on next_action_at alone would make it skip
            # every other partner's due rows.
            "DROP INDEX orders_due",
            "CREATE INDEX orders_due ON orders (provider, next_action_at) WHERE next_action_at IS NOT NULL",
            "ALTER TABLE orders ADD COLUMN deadline_at DOUBLE PRECISION",
            # Orders near their deadline are polled first; only live orders with a deadline are indexed.
            "CREATE INDEX orders_deadline ON orders (provider, deadline_at)"
            " WHERE deadline_at IS NOT NULL AND next_action_at IS NOT NULL",
        ),
    ),
)


def latest_version() -> int:
    return MIGRATIONS[-1].version
