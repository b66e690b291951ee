"""The ride event: the one definition the outbox writer, the enrichment and the consumer all validate against."""

from enum import StrEnum
from typing import Annotated, Final, Literal, Self

from pydantic import ConfigDict, Field, JsonValue, model_validator

from rideonce.models.base import CamelModel
from rideonce.models.ride import Ride, Timestamp

RIDE_EVENT_SOURCE = "rideonce.rides"
SCHEMA_VERSION = "1"


class EventType(StrEnum):
    RIDE_REQUESTED = "RideRequested"
    RIDE_ACCEPTED = "RideAccepted"
    RIDE_STARTED = "RideStarted"
    RIDE_COMPLETED = "RideCompleted"
    RIDE_CANCELLED = "RideCancelled"


class EventMetadata(CamelModel):
    """Envelope fields. `idempotency_key` is what consumers deduplicate on, never EventBridge's `id`."""

    event_id: str
    idempotency_key: str
    event_type: EventType
    source: Literal["rideonce.rides"] = "rideonce.rides"
    aggregate_type: Literal["ride"] = "ride"
    aggregate_id: str
    version: Annotated[int, Field(ge=1)]
    occurred_at: Timestamp
    traceparent: str
    schema_version: Literal["1"] = "1"


class RideEvent(CamelModel):
    """A full-state event: `data` is the whole ride after the change, so consumers never call back."""

    metadata: EventMetadata
    data: Ride

    @model_validator(mode="after")
    def _envelope_matches_state(self) -> Self:
        if self.metadata.aggregate_id != self.data.ride_id or self.metadata.version != self.data.version:
            raise ValueError("metadata.aggregateId/version must match data.rideId/version")
        return self


class OutboxRecord(CamelModel):
    """One row of the outbox table, keyed (rideId, version) so a change can never be written twice."""

    ride_id: str
    version: Annotated[int, Field(ge=1)]
    expires_at: Annotated[int, Field(ge=0, description="Epoch seconds; the outbox table's TTL attribute.")]
    commit_bucket: Annotated[
        str, Field(description="Partition key of the CommitTime index: the commit's UTC hour and a shard.")
    ]
    committed_at: Annotated[Timestamp, Field(description="Sort key of the CommitTime index: the event's occurredAt.")]
    event: RideEvent

    @model_validator(mode="after")
    def _key_matches_event(self) -> Self:
        if (self.ride_id, self.version) != (self.event.data.ride_id, self.event.data.version):
            raise ValueError("the outbox key (rideId, version) must match the event it carries")
        if self.committed_at != self.event.metadata.occurred_at:
            raise ValueError("committedAt must be the event's metadata.occurredAt")
        return self


REJECTION_SOURCE: Final = "rideonce.relay"
REJECTION_EVENT_TYPE: Final = "OutboxRecordRejected"


# The rejection models are built on the first rejection, not at import: most cold starts never reject a record.
DEFERRED = ConfigDict(**{**CamelModel.model_config, "defer_build": True})


class RejectionMetadata(CamelModel):
    """The envelope of a rejection, with `eventType` and `source` where the bus rules read them."""

    model_config = DEFERRED

    event_id: str
    idempotency_key: str
    event_type: Literal["OutboxRecordRejected"] = REJECTION_EVENT_TYPE
    source: Literal["rideonce.relay"] = REJECTION_SOURCE
    occurred_at: Annotated[
        Timestamp | None,
        Field(description="When DynamoDB wrote the stream record (ApproximateCreationDateTime), if it says."),
    ] = None
    schema_version: Literal["1"] = "1"


class Rejection(CamelModel):
    model_config = DEFERRED

    reason: Annotated[str, Field(description="What is wrong with the record, for the person who redrives it.")]
    record: Annotated[JsonValue, Field(description="The stream record exactly as the Pipe delivered it.")]


class RecordRejected(CamelModel):
    """An outbox stream record the enrichment could not turn into a ride event, parked for a person.

    Emitting this instead of raising keeps the rest of the batch flowing: a raised error would re-run the
    whole batch, and the bad record with it, until the Pipe gives up on all of them.
    """

    model_config = DEFERRED

    metadata: RejectionMetadata
    data: Rejection
