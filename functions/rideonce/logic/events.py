"""Building ride events and outbox records: deterministic, so a rebuilt event is the same event."""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from rideonce.logic.rides import Change
from rideonce.models.events import EventMetadata, OutboxRecord, RideEvent

# Fixed forever: changing it would give every past event a new id.
EVENT_ID_NAMESPACE = uuid.UUID("6f1c2d1e-52a4-4d8e-9d59-0b4f3c6a7e21")


@dataclass(frozen=True)
class EventIdentity:
    event_id: str
    idempotency_key: str


def event_identity(ride_id: str, version: int) -> EventIdentity:
    """The identity of the change (rideId, version): every hop that sees it again derives the same key."""
    key = f"ride#{ride_id}#v{version}"
    return EventIdentity(event_id=str(uuid.uuid5(EVENT_ID_NAMESPACE, key)), idempotency_key=key)


def build_event(change: Change, occurred_at: datetime, traceparent: str) -> RideEvent:
    identity = event_identity(change.ride.ride_id, change.ride.version)
    return RideEvent(
        metadata=EventMetadata(
            event_id=identity.event_id,
            idempotency_key=identity.idempotency_key,
            event_type=change.event_type,
            aggregate_id=change.ride.ride_id,
            version=change.ride.version,
            occurred_at=occurred_at,
            traceparent=traceparent,
        ),
        data=change.ride,
    )


def outbox_record(change: Change, occurred_at: datetime, traceparent: str, retention: timedelta) -> OutboxRecord:
    """The outbox row for a change; it expires (TTL) after `retention`, long after the Pipe has read it."""
    return OutboxRecord(
        ride_id=change.ride.ride_id,
        version=change.ride.version,
        expires_at=int((occurred_at + retention).timestamp()),
        event=build_event(change, occurred_at, traceparent),
    )
