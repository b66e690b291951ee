"""Republish the events of accepted changes that have not taken effect: the repair behind the relay.

When the Pipe gives up on a batch (retries or record age exhausted), its dead-letter queue gets only a
pointer into the stream, and the stream forgets the records after 24 hours. The outbox table still holds
every change for 7 days, so a scheduled run compares the changes committed in its window with the version
the consumer's projection has reached and publishes the missing events again: the same deterministic
events (same idempotency key, same detail), in version order. The consumer drops whatever did arrive in
the meantime, so a repair can never apply a change twice.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from rideonce.dal.reconciler import EventPublisher, OutboxReader, ProjectionReader
from rideonce.logic.reconcile import Window, buckets, repairs, window
from rideonce.models.events import RideEvent
from rideonce.services.clock import utc_now
from rideonce.settings import ReconcilerSettings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient


class Publisher(Protocol):
    """Where republished events go: the bus (EventPublisher), or a dry run's record of what would be put."""

    def publish(self, events: Sequence[RideEvent]) -> int: ...


@dataclass(frozen=True)
class ReconcileReport:
    """What one run saw and did; each figure becomes a metric."""

    window: Window
    checked: int
    """Changes committed in the window (read from the CommitTime index)."""
    rides_behind: int
    """Rides whose projection had not reached a change of the window."""
    republished: int
    """Events put on the bus again."""
    unreadable: int
    """Outbox records that are not valid records (the enrichment quarantined them): nothing to republish."""


class Reconciler:
    def __init__(
        self,
        outbox: OutboxReader,
        projection: ProjectionReader,
        bus: Publisher,
        period: timedelta,
        grace: timedelta,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._outbox = outbox
        self._projection = projection
        self._bus = bus
        self._period = period
        self._grace = grace
        self._clock = clock

    @classmethod
    def from_settings(
        cls,
        settings: ReconcilerSettings,
        dynamodb: "DynamoDBClient",
        events: "EventBridgeClient",
        bus: Publisher | None = None,
    ) -> "Reconciler":
        """The reconciler the function's settings describe; `bus` replaces the event bus (a dry run's recorder)."""
        return cls(
            OutboxReader(dynamodb, settings.outbox_table_name, settings.outbox_commit_index_name),
            ProjectionReader(dynamodb, settings.ride_projection_table_name),
            bus
            or EventPublisher(events, settings.event_bus_name, settings.relay_event_source, settings.relay_detail_type),
            period=timedelta(minutes=settings.reconcile_period_minutes),
            grace=timedelta(minutes=settings.reconcile_grace_minutes),
        )

    def run(self, scheduled_at: datetime | None = None) -> ReconcileReport:
        """One scheduled run: the window ends `grace` before the time the schedule fired (or now)."""
        return self.reconcile(window(scheduled_at or self._clock(), self._period, self._grace))

    def reconcile(self, span: Window) -> ReconcileReport:
        """Check every change committed in `span` and republish what its ride's projection lacks."""
        committed = [key for bucket in buckets(span) for key in self._outbox.committed(bucket, span)]
        applied = self._projection.applied_versions(key.ride_id for key in committed)
        events: list[RideEvent] = []
        unreadable = 0
        todo = repairs(committed, applied)
        for repair in todo:
            for record in self._outbox.records(repair.ride_id, repair.from_version, repair.to_version):
                if record is None:
                    unreadable += 1
                else:
                    events.append(record.event)
        republished = self._bus.publish(events)
        return ReconcileReport(
            window=span, checked=len(committed), rides_behind=len(todo), republished=republished, unreadable=unreadable
        )
