"""The ride aggregate: its lifecycle states and the full state every event carries."""

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, Field, PlainSerializer

from rideonce.models.base import CamelModel

Timestamp = Annotated[
    AwareDatetime,
    PlainSerializer(lambda value: format_timestamp(value), return_type=str, when_used="json"),
]
"""A UTC instant that always serialises the same way, so events built twice are byte-identical."""


def format_timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with millisecond precision and a `Z`, the one text form of every instant."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


class RideStatus(StrEnum):
    REQUESTED = "REQUESTED"
    ACCEPTED = "ACCEPTED"
    STARTED = "STARTED"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"


class Location(CamelModel):
    lat: Annotated[float, Field(ge=-90, le=90, description="Latitude in decimal degrees.")]
    lng: Annotated[float, Field(ge=-180, le=180, description="Longitude in decimal degrees.")]
    address: Annotated[str | None, Field(default=None, max_length=200)] = None


class Money(CamelModel):
    amount: Annotated[
        Decimal,
        Field(gt=0, le=100_000, max_digits=8, decimal_places=2, description='A decimal string, e.g. "23.50".'),
    ]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. EUR.")]


class Ride(CamelModel):
    """The whole state of one ride after a change; `version` counts its accepted changes from 1."""

    ride_id: str
    rider_id: str
    status: RideStatus
    version: Annotated[int, Field(ge=1)]
    pickup: Location
    dropoff: Location
    driver_id: str | None = None
    fare: Money | None = None
    cancellation_reason: str | None = None
    created_at: Timestamp
    updated_at: Timestamp
