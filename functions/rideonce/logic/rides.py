"""The ride state machine: REQUESTED -> ACCEPTED -> STARTED -> COMPLETED, REQUESTED | ACCEPTED -> CANCELLED.

Every accepted transition adds 1 to the version and yields exactly one event type.
"""

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from rideonce.logic.errors import InvalidTransitionError, MalformedPreconditionError, VersionMismatchError
from rideonce.models.events import EventType
from rideonce.models.requests import CreateRideRequest
from rideonce.models.ride import Money, Ride, RideStatus


class Action(StrEnum):
    ACCEPT = "accept"
    START = "start"
    COMPLETE = "complete"
    CANCEL = "cancel"


@dataclass(frozen=True)
class Rule:
    allowed_from: frozenset[RideStatus]
    to: RideStatus
    event_type: EventType


RULES: dict[Action, Rule] = {
    Action.ACCEPT: Rule(frozenset({RideStatus.REQUESTED}), RideStatus.ACCEPTED, EventType.RIDE_ACCEPTED),
    Action.START: Rule(frozenset({RideStatus.ACCEPTED}), RideStatus.STARTED, EventType.RIDE_STARTED),
    Action.COMPLETE: Rule(frozenset({RideStatus.STARTED}), RideStatus.COMPLETED, EventType.RIDE_COMPLETED),
    Action.CANCEL: Rule(
        frozenset({RideStatus.REQUESTED, RideStatus.ACCEPTED}), RideStatus.CANCELLED, EventType.RIDE_CANCELLED
    ),
}


@dataclass(frozen=True)
class Change:
    """An accepted change: the ride's whole state after it, and the event type it produces."""

    ride: Ride
    event_type: EventType

    @property
    def expected_version(self) -> int:
        """The version the stored ride must still have for this change to commit (0: must not exist)."""
        return self.ride.version - 1


def request_ride(ride_id: str, request: CreateRideRequest, now: datetime) -> Change:
    ride = Ride(
        ride_id=ride_id,
        rider_id=request.rider_id,
        status=RideStatus.REQUESTED,
        version=1,
        pickup=request.pickup,
        dropoff=request.dropoff,
        created_at=now,
        updated_at=now,
    )
    return Change(ride, EventType.RIDE_REQUESTED)


def _advance(ride: Ride, action: Action, now: datetime, if_match: int | None, **updates: object) -> Change:
    if if_match is not None and if_match != ride.version:
        raise VersionMismatchError(
            f"ride {ride.ride_id} is at version {ride.version}, not {if_match}: GET it again and retry"
        )
    rule = RULES[action]
    if ride.status not in rule.allowed_from:
        allowed = ", ".join(sorted(rule.allowed_from))
        raise InvalidTransitionError(
            f"cannot {action} ride {ride.ride_id}: it is {ride.status}, and {action} needs {allowed}"
        )
    changed = ride.model_copy(update={"status": rule.to, "version": ride.version + 1, "updated_at": now, **updates})
    return Change(Ride.model_validate(changed.model_dump()), rule.event_type)


def accept(ride: Ride, driver_id: str, now: datetime, if_match: int | None = None) -> Change:
    return _advance(ride, Action.ACCEPT, now, if_match, driver_id=driver_id)


def start(ride: Ride, now: datetime, if_match: int | None = None) -> Change:
    return _advance(ride, Action.START, now, if_match)


def complete(ride: Ride, fare: Money, now: datetime, if_match: int | None = None) -> Change:
    return _advance(ride, Action.COMPLETE, now, if_match, fare=fare)


def cancel(ride: Ride, reason: str | None, now: datetime, if_match: int | None = None) -> Change:
    return _advance(ride, Action.CANCEL, now, if_match, cancellation_reason=reason)


def etag(version: int) -> str:
    """A strong entity tag that carries the ride's version."""
    return f'"{version}"'


ETAG = re.compile(r'"[0-9]{1,18}"', re.ASCII)


def parse_if_match(header: str | None) -> int | None:
    """The version named by an `If-Match` header; None when absent or `*` (any current version)."""
    if header is None or header.strip() == "*":
        return None
    value = header.strip()
    # ASCII digits only: str.isdigit() also passes superscripts and other scripts' digits that int() refuses.
    if ETAG.fullmatch(value):
        return int(value[1:-1])
    raise MalformedPreconditionError(f'If-Match must be an ETag from GET /rides/{{rideId}}, like "3"; got {value}')
