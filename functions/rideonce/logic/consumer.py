"""Consumer rules: which arriving event to apply, drop or defer, and what each one charges.

Events of one ride are applied strictly in version order, so the projection's version tells
everything about an event of that ride: at or below it, the event was applied before (a duplicate,
a replay, a redrive); exactly one above, it is next; further above, its predecessor has not arrived.
"""

import json
from enum import StrEnum
from typing import Any

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import ValidationError

from rideonce.models.events import EventType, RideEvent
from rideonce.models.ride import Money


class Verdict(StrEnum):
    APPLY = "apply"
    DUPLICATE = "duplicate"
    EARLY = "early"


class PoisonMessageError(ValueError):
    """A message that can never be applied; it goes to the DLQ after maxReceiveCount tries."""


class OutOfOrderError(RuntimeError):
    """The event's predecessor has not been applied yet; the message is retried after its visibility timeout."""


def classify(event_version: int, applied_version: int) -> Verdict:
    if event_version <= applied_version:
        return Verdict.DUPLICATE
    if event_version == applied_version + 1:
        return Verdict.APPLY
    return Verdict.EARLY


def charge_for(event: RideEvent) -> Money | None:
    """Only a completed ride charges its rider, and exactly its fare."""
    if event.metadata.event_type is not EventType.RIDE_COMPLETED:
        return None
    if event.data.fare is None:
        raise PoisonMessageError(f"{event.metadata.idempotency_key}: RideCompleted without a fare")
    return event.data.fare


def parse_message(body: str) -> RideEvent:
    """An SQS body holding an EventBridge envelope whose detail is a ride event (validated, one model)."""
    try:
        envelope = EventBridgeModel.model_validate_json(body)
        return RideEvent.model_validate(envelope.detail)
    except (ValidationError, json.JSONDecodeError) as error:
        raise PoisonMessageError(f"not a ride event in an EventBridge envelope: {error}") from error


def arrival_order(body: str) -> tuple[int, str, int]:
    """Sort key for a batch: each ride's events by version, so an in-batch reordering costs no retry.

    Unparseable bodies sort last; they fail on their own without delaying the others. A sort key that
    raised would fail the whole batch before any record ran, so every failure of reading one is caught:
    `Infinity` as a version (OverflowError), JSON nested too deeply (RecursionError), and the rest.
    """
    try:
        detail: Any = json.loads(body).get("detail", {})
        return (0, str(detail["metadata"]["aggregateId"]), int(detail["metadata"]["version"]))
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError):
        return (1, "", 0)
