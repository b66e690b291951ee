"""Bodies the ride API accepts. Unknown fields are rejected (see CamelModel), never silently dropped."""

from typing import Annotated

from pydantic import Field

from rideonce.models.base import CamelModel
from rideonce.models.ride import Location, Money

Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


class CreateRideRequest(CamelModel):
    rider_id: Identifier
    pickup: Location
    dropoff: Location


class AcceptRideRequest(CamelModel):
    driver_id: Identifier


class StartRideRequest(CamelModel):
    """Starting a ride takes no fields: the body may be omitted or `{}`."""


class CompleteRideRequest(CamelModel):
    fare: Money


class CancelRideRequest(CamelModel):
    reason: Annotated[str | None, Field(default=None, max_length=200)] = None
