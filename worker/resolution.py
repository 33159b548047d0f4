"""Operator actions on an order the partner holds for a decision (``action_required``; 0trace's EMERGENCY).

Without this, such an order waits for its deposit window to end: the decision needs the order's sealed
secret, which never leaves the service. The flow keeps create's safety: the intent is committed in the
ledger before the partner call, so a worker that dies after the call leaves an open action that its
redelivery finds, and the action's own id makes a repeated command act once. What a partner accepts is
data (:attr:`~worker.partners.Capabilities.action_choices`), so nothing here knows a partner.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from worker.ledger.base import ActionClaim, ActionStart, ActionState, OrderRecord
from worker.logs import get_logger
from worker.messages import EventAction, EventError, ResolveOrderCommand, Source
from worker.partners.base import PartnerError
from worker.partners.contract import ResolvesActions
from worker.partners.registry import Connected, UnknownAccountError, UnknownPartnerError
from worker.pipeline import OrderPipeline, Outcome, validation_summary
from worker.rejections import field_names, record_rejection
from worker.sealing import SealError
from worker.status import Status

log = get_logger(__name__)

ACTOR = "resolve_order"


class ActionDeferred(RuntimeError):
    """The action could not be settled now and is safe to try again: the message is redelivered later."""


def handle_resolve(pipeline: OrderPipeline, kwargs: dict[str, Any], message_id: str) -> Outcome:
    try:
        command = ResolveOrderCommand.model_validate(kwargs)
    except ValidationError as error:
        return _reject(pipeline, message_id, kwargs, "invalid_command", validation_summary(error))
    record = pipeline.ledger.get(command.command_id)
    if record is None:
        reason = "no order was created for this command_id"
        return _reject(pipeline, _key(command), kwargs, "unknown_command", reason, command)
    try:
        connected = pipeline.account_of(record)
    except (UnknownPartnerError, UnknownAccountError) as error:
        reason = f"provider: {error}"
        return _reject(pipeline, _key(command), kwargs, "invalid_command", reason, command, record.provider)
    refusal = choice_refusal(connected, command)
    if refusal is not None:
        return _reject(pipeline, _key(command), kwargs, "invalid_choice", refusal, command, record.provider)
    claim = pipeline.ledger.begin_action(
        command, pipeline.clock(), pipeline.settings.calls.create_lease_seconds
    )
    if claim.outcome is ActionStart.CONFLICT:
        reason = "action_id was already used for another decision (order, choice or options differ)"
        key = f"conflict:{message_id}"
        return _reject(pipeline, key, kwargs, "action_id_conflict", reason, command, record.provider)
    if claim.outcome is ActionStart.UNKNOWN_ORDER:
        reason = "no order was created for this command_id"
        return _reject(pipeline, _key(command), kwargs, "unknown_command", reason, command)
    if claim.outcome is ActionStart.NOT_ACTIONABLE:
        return Outcome("rejected", claim.events)
    if claim.outcome is ActionStart.DONE:
        return Outcome("duplicate", [])
    if claim.outcome is ActionStart.BUSY:
        # Another worker is sending it; if that worker died, a later delivery takes the action over.
        raise ActionDeferred("another worker holds this action")
    return _act(pipeline, connected, command, claim)


def choice_refusal(connected: Connected, command: ResolveOrderCommand) -> str | None:
    """Why the order's partner cannot take this choice, checked before any intent is recorded."""
    capabilities = connected.partner.capabilities
    if not capabilities.action_choices or not isinstance(connected.session, ResolvesActions):
        return f"{connected.name} orders take no operator choice through its API"
    if command.choice not in capabilities.action_choices:
        return f"{connected.name} accepts the choice {' or '.join(capabilities.action_choices)}"
    unknown = sorted(set(command.options) - capabilities.action_options)
    if unknown:
        return f"{connected.name} takes no option {', '.join(unknown)}"
    return None


def _act(
    pipeline: OrderPipeline, connected: Connected, command: ResolveOrderCommand, claim: ActionClaim
) -> Outcome:
    ledger = pipeline.ledger
    order = claim.order
    assert order is not None
    events = []
    if claim.previous_unresolved:
        # An earlier call may have reached the partner: if the order has moved on, it was acted on (by
        # this action or by the partner), and sending the choice again would only be refused.
        events += pipeline.refresh(order, Source.OPERATOR).events
        order = ledger.get(order.command_id) or order
        if order.status != Status.ACTION_REQUIRED:
            ledger.finish_action(command.action_id, ActionState.MOOT, None, pipeline.clock())
            return Outcome("moot", events)
    if order.order_id is None or order.untrackable:
        error = EventError(code="untrackable", reason="the order cannot be addressed at the partner")
        rejected = ledger.finish_action(command.action_id, ActionState.REJECTED, error, pipeline.clock())
        return Outcome("rejected", events + rejected)
    try:
        _send(pipeline, connected, order, command)
    except SealError as error:
        log.error(
            "token_unopenable", command_id=order.command_id, error=type(error).__name__, purpose="action"
        )
        ledger.release_action(command.action_id, EventError(code="token_unreadable", reason=str(error)))
        raise ActionDeferred("the order's secret cannot be opened") from None
    except PartnerError as error:
        reason = EventError(code=error.code, reason=error.reason)
        if error.retryable:
            ledger.release_action(command.action_id, reason)
            raise ActionDeferred(f"{connected.name} did not answer the choice: {error.code}") from None
        refused = EventError(code="partner_refused", reason=f"{connected.name}: {error.reason}")
        rejected = ledger.finish_action(command.action_id, ActionState.REJECTED, refused, pipeline.clock())
        return Outcome("rejected", events + rejected)
    events += ledger.finish_action(command.action_id, ActionState.ACCEPTED, None, pipeline.clock())
    current = ledger.get(order.command_id) or order
    # The partner acts on the choice shortly; read it now so a quick resumption is reported at once.
    events += pipeline.refresh(current, Source.OPERATOR).events
    return Outcome("accepted", events)


def _send(
    pipeline: OrderPipeline, connected: Connected, order: OrderRecord, command: ResolveOrderCommand
) -> None:
    session = connected.session
    assert isinstance(session, ResolvesActions) and order.order_id is not None
    secret = pipeline.order_secret(connected, order)
    order_id = order.order_id
    pipeline.budgeted(
        connected,
        "action",
        lambda: session.resolve_action(order_id, secret, command.choice, command.options),
    )


def _key(command: ResolveOrderCommand) -> str:
    return f"action:{command.action_id}"


def _reject(
    pipeline: OrderPipeline,
    key: str,
    kwargs: dict[str, Any],
    code: str,
    reason: str,
    command: ResolveOrderCommand | None = None,
    provider: str | None = None,
) -> Outcome:
    action = None if command is None else EventAction(action_id=command.action_id, choice=command.choice)
    events = record_rejection(
        pipeline.ledger,
        key,
        kwargs,
        code,
        reason,
        field_names(kwargs),
        pipeline.clock(),
        source=Source.OPERATOR,
        action=action,
        provider=provider,
    )
    return Outcome("rejected", events)
