"""Building ride events and outbox records: deterministic, so a rebuilt event is the same event."""

from datetime import datetime, timedelta

from rideonce.logic.identity import EVENT_ID_NAMESPACE, EventIdentity, event_identity
from rideonce.logic.reconcile import commit_bucket
from rideonce.logic.rides import Change
from rideonce.models.events import EventMetadata, OutboxRecord, RideEvent

__all__ = ["EVENT_ID_NAMESPACE", "EventIdentity", "build_event", "event_identity", "outbox_record"]


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
        commit_bucket=commit_bucket(change.ride.ride_id, occurred_at),
        committed_at=occurred_at,
        event=build_event(change, occurred_at, traceparent),
    )
