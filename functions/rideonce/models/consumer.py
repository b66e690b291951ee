"""What the consumer stores: the keys it has processed, and the state its effects leave behind."""

from typing import Annotated

from pydantic import Field

from rideonce.models.base import CamelModel
from rideonce.models.events import EventType
from rideonce.models.ride import Timestamp


class ProcessedKey(CamelModel):
    """Proof that one event took effect; written in the same transaction as the effect itself."""

    idempotency_key: str
    ride_id: str
    version: int
    event_type: EventType
    processed_at: Timestamp
    expires_at: Annotated[int, Field(description="Epoch seconds; the table's TTL attribute.")]
