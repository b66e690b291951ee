"""Consumer rules: which arriving event to apply, drop or defer, and what each one charges.

Events of one ride are applied strictly in version order, so the projection's version tells
everything about an event of that ride: at or below it, the event was applied before (a duplicate,
a replay, a redrive); exactly one above, it is next; further above, its predecessor has not arrived.
"""

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import ValidationError

from rideonce.logic.reconcile import repair_horizon
from rideonce.models.consumer import ProcessedKey
from rideonce.models.events import EventType, RideEvent
from rideonce.models.ride import Money


class Verdict(StrEnum):
    APPLY = "apply"
    DUPLICATE = "duplicate"
    EARLY = "early"


class PoisonMessageError(ValueError):
    """A message that can never be applied; it goes to the DLQ after maxReceiveCount tries."""


class OutOfOrderError(RuntimeError):
    """The event's predecessor has not been applied yet; the message is retried soon (see `EarlyRetries`)."""


FIRST_RETRY_SECONDS = 1
SQS_MAX_VISIBILITY_SECONDS = 43_200 - 60
"""ChangeMessageVisibility keeps a message invisible at most 12 hours in all since it was received
(https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibility.html);
the call comes within the function's timeout after the receive, so a minute is left for it."""


@dataclass(frozen=True)
class EarlyRetries:
    """When an early event is tried again: within seconds at first, and its last try only after a
    predecessor the relay lost has had time to be republished by the reconciler.

    The waits double from 1 s with the message's receive count (1, 2, 4, ...), so a predecessor late by
    seconds costs its successor seconds. The wait before the last receive (the queue's maxReceiveCount)
    stretches to `patience_seconds` in all: a change lost at the relay is republished within the
    reconciler's grace + 2 periods, so its successors are applied then instead of being parked in the
    DLQ, where only a person would find them. A gap that outlasts that still parks: a real fault.
    """

    max_receive_count: int
    patience_seconds: int

    def delay(self, receive_count: int) -> int:
        """Seconds until the next try of an event deferred on its `receive_count`-th receive."""
        count = max(receive_count, 1)
        wait = FIRST_RETRY_SECONDS << (count - 1)
        if count == self.max_receive_count - 1:
            waited = sum(self.delay(earlier) for earlier in range(1, count))
            wait = max(wait, self.patience_seconds - waited)
        return min(wait, SQS_MAX_VISIBILITY_SECONDS)


REDELIVERY_MARGIN_SECONDS = 120
"""The queue's visibility timeout: time for a republished predecessor to arrive and, once, be tried again."""


def early_retries(max_receive_count: int, reconcile_period: timedelta, reconcile_grace: timedelta) -> EarlyRetries:
    """The retries of a stack whose reconciler runs every `reconcile_period`, `reconcile_grace` behind."""
    horizon = repair_horizon(reconcile_period, reconcile_grace)
    return EarlyRetries(max_receive_count, int(horizon.total_seconds()) + REDELIVERY_MARGIN_SECONDS)


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


def processed_key(event: RideEvent, now: datetime, ttl_seconds: int) -> ProcessedKey:
    """The record that `event` took effect at `now`, kept `ttl_seconds` (the processed-key table's TTL)."""
    return ProcessedKey(
        idempotency_key=event.metadata.idempotency_key,
        ride_id=event.data.ride_id,
        version=event.data.version,
        event_type=event.metadata.event_type,
        processed_at=now,
        expires_at=int(now.timestamp()) + ttl_seconds,
    )


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
