"""Faults at bus -> queue: a rule firing twice, poison bodies on the consumer queue, an archive replay.

`Capture` drains the consumer queue into the list of deliveries every consumer design is then fed, as
a consumer would see them; the seed doubles some (a rule that fired twice). `replay_window` replays a
time window of the bus archive with `start_replay` and captures it too.
"""

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from local.aws.moto_patches import epoch_seconds
from local.aws.stack import LocalStack
from local.aws.template import ACCOUNT_ID, REGION
from local.aws.transport import Transport
from local.chaos.api_faults import CHAOS_TRACEPARENT
from local.chaos.plan import Fault, FaultPlan
from local.chaos.relay_faults import PutCall
from rideonce.logic import events as ride_events
from rideonce.logic import rides as ride_logic
from rideonce.models.requests import CreateRideRequest
from rideonce.models.ride import Location

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

REPLAY_SLICE_EVENTS = 400
"""The replay window is replayed in slices of about this many events, each drained before the next."""


@dataclass(frozen=True)
class Delivery:
    """One message on the consumer queue, as captured: its body and the subject faults are keyed by."""

    body: str
    subject: str
    poison: bool = False


class Capture:
    """Drains the consumer queue into a list, as a consumer would see it; a rule may have fired twice."""

    def __init__(self, sqs: "SQSClient", queue_url: str, plan: FaultPlan, poison: Mapping[str, str]) -> None:
        self._sqs = sqs
        self._url = queue_url
        self._plan = plan
        self._poison = poison
        self.twice = 0

    def drain(self, into: list[Delivery]) -> int:
        drained = 0
        while messages := self._sqs.receive_message(QueueUrl=self._url, MaxNumberOfMessages=10).get("Messages", []):
            self._sqs.delete_message_batch(
                QueueUrl=self._url,
                Entries=[{"Id": str(index), "ReceiptHandle": m["ReceiptHandle"]} for index, m in enumerate(messages)],
            )
            for message in messages:
                drained += 1
                body = message["Body"]
                if body in self._poison:
                    into.append(Delivery(body, self._poison[body], poison=True))
                    continue
                subject = subject_of(body)
                into.append(Delivery(body, subject))
                if self._plan.occurs(Fault.RULE_FIRES_TWICE, subject):
                    self.twice += 1
                    into.append(Delivery(body, subject))
        return drained


def subject_of(body: str) -> str:
    try:
        return str(json.loads(body)["detail"]["metadata"]["idempotencyKey"])
    except (KeyError, TypeError, ValueError):
        return f"unparseable#{uuid.uuid5(uuid.NAMESPACE_OID, body)}"


def committed_at(body: str) -> float | None:
    """When the change an event carries was committed (its `occurredAt`, epoch seconds); None if it has none."""
    try:
        return epoch_seconds(json.loads(body)["detail"]["metadata"]["occurredAt"])
    except (KeyError, TypeError, ValueError):
        return None


def key_of(subject: str) -> tuple[str, int] | None:
    """(rideId, version) back from an event's idempotency key `ride#<rideId>#v<version>`."""
    if not subject.startswith("ride#"):
        return None
    ride_id, _, version = subject[len("ride#") :].rpartition("#v")
    return (ride_id, int(version)) if version.isdigit() else None


def poison_message(index: int) -> str:
    """A body the consumer must refuse: not JSON, no envelope, no ride event, or an event that contradicts itself."""
    if index % 4 == 0:
        return f"this is not JSON #{index}"
    if index % 4 == 1:
        return json.dumps({"poison": index, "detail-type": "OutboxEvent"})
    request = CreateRideRequest(rider_id="rider-poison", pickup=Location(lat=1, lng=2), dropoff=Location(lat=3, lng=4))
    change = ride_logic.request_ride(f"poison-message-{index:04d}", request, datetime(2026, 1, 1, tzinfo=UTC))
    detail = ride_events.build_event(change, change.ride.updated_at, CHAOS_TRACEPARENT).model_dump(mode="json")
    if index % 4 == 2:
        detail = {"metadata": {"idempotencyKey": detail["metadata"]["idempotencyKey"]}, "data": {}}
    else:
        detail["metadata"]["version"] = 2  # data.version stays 1: the event contradicts itself
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.UUID(int=index)),
            "detail-type": "OutboxEvent",
            "source": "rideonce.outbox",
            "account": ACCOUNT_ID,
            "time": "2026-01-01T00:00:00Z",
            "region": REGION,
            "resources": [],
            "detail": detail,
        }
    )


def replay_window(
    local: LocalStack,
    transport: Transport,
    calls: list[PutCall],
    plan: FaultPlan,
    capture: Capture,
    into: list[Delivery],
) -> str:
    """Replay the time window holding about `rate` of the run's events, from the middle of the run.

    The window's edges fall between two PutEvents calls (whose wall-clock times the bus wrapper noted), so
    which events it holds follows from the calls alone, not from how fast this machine ran them. It is
    replayed in slices of about REPLAY_SLICE_EVENTS events, each drained before the next: moto's queue gets
    slower with every message it holds.
    """
    share = min(plan.rates[Fault.ARCHIVE_REPLAY], 1.0)
    total = sum(call.entries for call in calls)
    if share <= 0 or not total:
        return "none"
    window, taken = _window(calls, total * (1 - share) / 2, total * share)
    slices = _slices(calls, window)
    events = transport.events()
    archive_arn = local.stack.get_att("RideEventArchive", "Arn")
    bus_arn = local.stack.get_att("RideEventBus", "Arn")
    for number, (start, end) in enumerate(slices):
        events.start_replay(
            ReplayName=f"chaos-{plan.seed}-{number}-{uuid.uuid4().hex[:8]}",
            EventSourceArn=archive_arn,
            EventStartTime=datetime.fromtimestamp(_edge(calls, start), UTC),
            EventEndTime=datetime.fromtimestamp(_edge(calls, end), UTC),
            Destination={"Arn": bus_arn},
        )
        capture.drain(into)
    opened, closed = (datetime.fromtimestamp(_edge(calls, index), UTC) for index in (window[0], window[-1] + 1))
    return (
        f"{opened:%H:%M:%S.%f}-{closed:%H:%M:%S.%f} UTC: {taken} of {total} events put, PutEvents calls "
        f"{window[0] + 1}-{window[-1] + 1} of {len(calls)} ({len(slices)} slices)"
    )


def _window(calls: list[PutCall], skip: float, take: float) -> tuple[list[int], int]:
    """The indexes of the calls after the first `skip` events that hold about `take` events, and their events."""
    window: list[int] = []
    seen = taken = 0
    for index, call in enumerate(calls):
        if seen >= skip and taken < take:
            window.append(index)
            taken += call.entries
        seen += call.entries
    return window, taken


def _slices(calls: list[PutCall], window: list[int]) -> list[tuple[int, int]]:
    """The window cut into runs of calls of about REPLAY_SLICE_EVENTS events: (first call, call after the last)."""
    slices: list[tuple[int, int]] = []
    first, in_slice = window[0], 0
    for index in window:
        if in_slice and in_slice + calls[index].entries > REPLAY_SLICE_EVENTS:
            slices.append((first, index))
            first, in_slice = index, 0
        in_slice += calls[index].entries
    slices.append((first, window[-1] + 1))
    return slices


def _edge(calls: list[PutCall], index: int) -> float:
    """A moment between call index - 1 and call index (moto stamps each event inside its call)."""
    if index == 0:
        return calls[0].started - 0.001
    if index == len(calls):
        return calls[-1].ended + 0.001
    return (calls[index - 1].ended + calls[index].started) / 2
