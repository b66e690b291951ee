"""Building outbox records and ride events, without AWS."""

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from rideonce.logic import events, rides
from rideonce.logic.tracecontext import traceparent_for
from rideonce.models.events import OutboxRecord, RideEvent
from rideonce.models.requests import CreateRideRequest
from rideonce.models.ride import Location

T0 = datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=UTC)
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def change() -> rides.Change:
    request = CreateRideRequest(rider_id="r-1", pickup=Location(lat=1, lng=2), dropoff=Location(lat=3, lng=4))
    return rides.request_ride("ride-1", request, T0)


def test_event_identity_is_a_function_of_ride_and_version() -> None:
    assert events.event_identity("ride-1", 3) == events.event_identity("ride-1", 3)
    assert events.event_identity("ride-1", 3) != events.event_identity("ride-1", 4)
    assert events.event_identity("ride-1", 3) != events.event_identity("ride-2", 3)
    assert events.event_identity("ride-1", 3).idempotency_key == "ride#ride-1#v3"


def test_outbox_record_is_keyed_by_ride_and_version_and_expires_after_retention() -> None:
    record = events.outbox_record(change(), T0, TRACE, timedelta(days=7))
    assert (record.ride_id, record.version) == ("ride-1", 1)
    assert record.expires_at == int((T0 + timedelta(days=7)).timestamp())
    assert record.event.metadata.traceparent == TRACE
    assert record.event.data == change().ride


def test_event_json_has_the_contract_shape_with_millisecond_utc_instants() -> None:
    event = events.build_event(change(), T0, TRACE).model_dump(mode="json")
    assert set(event) == {"metadata", "data"}
    assert event["metadata"] == {
        "eventId": events.event_identity("ride-1", 1).event_id,
        "idempotencyKey": "ride#ride-1#v1",
        "eventType": "RideRequested",
        "source": "rideonce.rides",
        "aggregateType": "ride",
        "aggregateId": "ride-1",
        "version": 1,
        "occurredAt": "2026-11-22T10:00:00.123Z",
        "traceparent": TRACE,
        "schemaVersion": "1",
    }
    assert event["data"]["createdAt"] == "2026-11-22T10:00:00.123Z"


def test_an_event_whose_envelope_disagrees_with_its_state_is_invalid() -> None:
    event = events.build_event(change(), T0, TRACE).model_dump(mode="json")
    event["metadata"]["version"] = 2
    with pytest.raises(ValidationError, match="must match"):
        RideEvent.model_validate(event)


def test_an_outbox_record_whose_key_disagrees_with_its_event_is_invalid() -> None:
    record = events.outbox_record(change(), T0, TRACE, timedelta(days=1)).model_dump(mode="json")
    record["version"] = 5
    with pytest.raises(ValidationError, match="must match"):
        OutboxRecord.model_validate(record)


def test_traceparent_keeps_a_valid_header() -> None:
    assert traceparent_for(TRACE.upper(), None) == TRACE


def test_traceparent_continues_the_xray_trace_when_the_header_is_missing_or_invalid() -> None:
    xray = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    assert traceparent_for("garbage", xray) == "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"


def test_traceparent_starts_a_new_trace_otherwise() -> None:
    made = traceparent_for(None, None)
    assert made != traceparent_for(None, None)
    assert traceparent_for(made, None) == made
