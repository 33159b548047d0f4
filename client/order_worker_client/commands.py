"""The commands producers send: their models, limits and the message format that carries them.

Validation is strict on purpose: a command that is wrong is rejected once with a reason the producer can
read, instead of reaching a partner that would refuse it (or, worse, accept something unintended). The
params of a create belong to its partner and are checked by the service, which knows which partners a
deployment runs.

Commands travel as Dramatiq messages (:func:`envelope`), the format the service's workers consume; any
AMQP client can build one (the AsyncAPI document shows the shape).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

COMMAND_ID_PATTERN = r"^[A-Za-z0-9._:-]{8,128}$"
CommandId = Annotated[str, StringConstraints(pattern=COMMAND_ID_PATTERN)]
MAX_COMMAND_BYTES = 16 * 1024
PROVIDER_PATTERN = r"^[A-Za-z0-9_.-]{1,32}$"
ACCOUNT_PATTERN = r"^[a-z][a-z0-9_]{0,23}$"
"""An account's name: it becomes part of variable names, budget names and metric labels."""
DEFAULT_ACCOUNT = "default"
"""The account of a partner's own settings group, used by a create that names none."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


Metadata = Annotated[
    dict[
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")],
        Annotated[str, Field(max_length=256)],
    ],
    Field(max_length=16),
]


_FINGERPRINT_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
"""``json.dumps(value, sort_keys=True, separators=(",", ":"))`` without an encoder per call."""


class CreateOrderCommand(_Strict):
    """kwargs of the ``create_order`` actor (queue ``orders.create``)."""

    command_id: CommandId
    provider: Annotated[str, StringConstraints(pattern=PROVIDER_PATTERN)]
    """A provider id of an installed partner (``0trace``, ``itrx``, ...); checked against the registry
    when the command is handled, since which partners exist is a deployment's choice."""
    params: dict[str, Any]
    ref_code: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{4,32}$")] | None = None
    metadata: Metadata = Field(default_factory=dict)
    account: Annotated[str, StringConstraints(pattern=ACCOUNT_PATTERN)] | None = None
    """Which of the provider's accounts places the order (its credentials, budget and webhook secrets);
    None or ``default``: the partner's own settings group. Checked against the deployment's settings when
    the command is handled, like the provider."""

    def fingerprint(self) -> str:
        """Identity of the request: the same command_id with another fingerprint is a different order.

        The account joins the identity only when it is not the default one, so fingerprints recorded
        before accounts existed still match their commands sent again."""
        identity: dict[str, Any] = {
            "provider": self.provider,
            "params": self.params,
            "ref_code": self.ref_code,
        }
        if self.account not in (None, DEFAULT_ACCOUNT):
            identity["account"] = self.account
        canonical = _FINGERPRINT_JSON.encode(identity)
        return hashlib.sha256(canonical.encode()).hexdigest()


class PollOrderCommand(_Strict):
    """kwargs of the ``poll_order`` actor (queue ``orders.poll``)."""

    command_id: CommandId


class ResolveOrderCommand(_Strict):
    """kwargs of the ``resolve_order`` actor (queue ``orders.actions``): an operator's answer to an order
    the partner holds for a decision (``action_required``, 0trace's EMERGENCY).

    ``action_id`` is the action's own identity, apart from the order's ``command_id``: the same action
    sent again is acted on once, and a second decision on one order is a new action."""

    action_id: CommandId
    command_id: CommandId
    """The create command of the order to resolve."""
    choice: Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z_]{0,31}$")]
    """A choice the order's partner accepts (0trace: ``EXCHANGE``); checked against the partner when the
    command is handled."""
    options: Annotated[
        dict[
            Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,64}$")],
            Annotated[str, Field(max_length=256)],
        ],
        Field(max_length=8),
    ] = Field(default_factory=dict)
    """Extra fields of the choice, for partners that take some; a partner refuses any it does not."""
    note: Annotated[str, Field(max_length=256)] | None = None
    """Who decided and why, kept with the action for the audit trail."""

    def fingerprint(self) -> str:
        """Identity of the decision: the same action_id with another fingerprint is a different action."""
        canonical = _FINGERPRINT_JSON.encode(
            {"command_id": self.command_id, "choice": self.choice, "options": self.options}
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


ENVELOPE_FIELDS = (
    "queue_name",
    "actor_name",
    "args",
    "kwargs",
    "options",
    "message_id",
    "message_timestamp",
)
"""Every field of the message a command travels in; the service rejects one without any of them."""


def envelope(
    queue_name: str,
    actor_name: str,
    kwargs: dict[str, Any],
    message_id: str | None = None,
    options: dict[str, Any] | None = None,
) -> bytes:
    """The body of a command message: Dramatiq's message format (stable since Dramatiq 1.0), ``kwargs``
    being the command and ``options`` what the README's command contract allows."""
    return json.dumps(
        {
            "queue_name": queue_name,
            "actor_name": actor_name,
            "args": [],
            "kwargs": kwargs,
            "options": options or {},
            "message_id": message_id or str(uuid.uuid4()),
            "message_timestamp": int(time.time() * 1000),
        },
        separators=(",", ":"),
    ).encode()
