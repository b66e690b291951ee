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
    """The event's predecessor has not been applied yet; the message is retried soon (see `retry_delay`)."""


FIRST_RETRY_SECONDS = 1
QUICK_RETRIES = 3
RETRY_CAP_SECONDS = 120
"""The queue's visibility timeout: a shortened retry is never later than a plain one."""


def retry_delay(receive_count: int) -> int:
    """Seconds until an early event's next try, backing off with its receive count: 1, 2, 4, then 120.

    A predecessor late by seconds costs its successor seconds, not the queue's 120 s visibility timeout;
    three quick tries, doubling, resolve a ride whose events all arrived reversed within seconds. The
    fourth wait is the queue's timeout again, so a predecessor late by up to 1 + 2 + 4 + 120 = 127 s is
    still applied before its successor's fifth and last try (with maxReceiveCount 5), and a gap that
    never fills is parked in the DLQ after those five receives.
    """
    count = max(receive_count, 1)
    if count > QUICK_RETRIES:
        return RETRY_CAP_SECONDS
    return int(FIRST_RETRY_SECONDS * 2 ** (count - 1))


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
