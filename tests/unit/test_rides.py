"""The ride state machine, without AWS."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from rideonce.logic import rides
from rideonce.logic.errors import InvalidTransitionError, MalformedPreconditionError, VersionMismatchError
from rideonce.models.events import EventType
from rideonce.models.requests import CreateRideRequest
from rideonce.models.ride import Location, Money, Ride, RideStatus

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
FARE = Money(amount=Decimal("23.50"), currency="EUR")


def requested() -> Ride:
    request = CreateRideRequest(rider_id="r-1", pickup=Location(lat=1, lng=2), dropoff=Location(lat=3, lng=4))
    return rides.request_ride("ride-1", request, T0).ride


def test_a_new_ride_is_requested_at_version_1() -> None:
    change = rides.request_ride(
        "ride-1",
        CreateRideRequest(rider_id="r-1", pickup=Location(lat=1, lng=2), dropoff=Location(lat=3, lng=4)),
        T0,
    )
    assert change.ride.status is RideStatus.REQUESTED
    assert change.ride.version == 1
    assert change.event_type is EventType.RIDE_REQUESTED
    assert change.expected_version == 0


def test_the_happy_lifecycle_adds_one_version_per_change() -> None:
    ride = requested()
    accepted = rides.accept(ride, "d-1", T0 + timedelta(minutes=1))
    started = rides.start(accepted.ride, T0 + timedelta(minutes=2))
    completed = rides.complete(started.ride, FARE, T0 + timedelta(minutes=30))
    assert [c.ride.version for c in (accepted, started, completed)] == [2, 3, 4]
    assert [c.event_type for c in (accepted, started, completed)] == [
        EventType.RIDE_ACCEPTED,
        EventType.RIDE_STARTED,
        EventType.RIDE_COMPLETED,
    ]
    assert completed.ride.status is RideStatus.COMPLETED
    assert completed.ride.fare == FARE
    assert completed.ride.driver_id == "d-1"
    assert completed.ride.created_at == T0
    assert completed.ride.updated_at == T0 + timedelta(minutes=30)
    assert completed.expected_version == 3


@pytest.mark.parametrize("path", [[], ["accept"]])
def test_requested_or_accepted_rides_can_be_cancelled(path: list[str]) -> None:
    ride = requested()
    if path:
        ride = rides.accept(ride, "d", T0).ride
    cancelled = rides.cancel(ride, "changed my mind", T0)
    assert cancelled.ride.status is RideStatus.CANCELLED
    assert cancelled.ride.cancellation_reason == "changed my mind"
    assert cancelled.event_type is EventType.RIDE_CANCELLED


def test_every_disallowed_transition_is_refused() -> None:
    states = {RideStatus.REQUESTED: requested()}
    states[RideStatus.ACCEPTED] = rides.accept(states[RideStatus.REQUESTED], "d", T0).ride
    states[RideStatus.STARTED] = rides.start(states[RideStatus.ACCEPTED], T0).ride
    states[RideStatus.COMPLETED] = rides.complete(states[RideStatus.STARTED], FARE, T0).ride
    states[RideStatus.CANCELLED] = rides.cancel(states[RideStatus.REQUESTED], None, T0).ride
    attempts: dict[rides.Action, Callable[[Ride], rides.Change]] = {
        rides.Action.ACCEPT: lambda ride: rides.accept(ride, "d", T0),
        rides.Action.START: lambda ride: rides.start(ride, T0),
        rides.Action.COMPLETE: lambda ride: rides.complete(ride, FARE, T0),
        rides.Action.CANCEL: lambda ride: rides.cancel(ride, None, T0),
    }
    refused = 0
    for status, ride in states.items():
        for action, attempt in attempts.items():
            if status in rides.RULES[action].allowed_from:
                continue
            with pytest.raises(InvalidTransitionError, match=f"cannot {action}"):
                attempt(ride)
            refused += 1
    assert refused == 15  # 5 states x 4 actions, minus the 5 allowed ones


def test_if_match_must_name_the_current_version() -> None:
    ride = requested()
    with pytest.raises(VersionMismatchError, match="version 1, not 2"):
        rides.accept(ride, "d", T0, if_match=2)
    assert rides.accept(ride, "d", T0, if_match=1).ride.version == 2


@pytest.mark.parametrize(("header", "expected"), [(None, None), ("*", None), ('"3"', 3), (' "12" ', 12)])
def test_if_match_parsing(header: str | None, expected: int | None) -> None:
    assert rides.parse_if_match(header) == expected


@pytest.mark.parametrize("header", ["3", 'W/"3"', '"three"', '""'])
def test_if_match_that_is_not_our_etag_is_refused(header: str) -> None:
    with pytest.raises(MalformedPreconditionError):
        rides.parse_if_match(header)


def test_etag_round_trips_through_if_match() -> None:
    assert rides.parse_if_match(rides.etag(7)) == 7
