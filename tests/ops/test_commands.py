"""Each operations command on the local stack: what it writes with --apply, that a dry run writes nothing,
and that a second run changes nothing more."""

import io
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from rich.console import Console

from ops import cli
from ops.aws import Queue, Tables
from rideonce.dal.dynamo import to_item, to_value
from rideonce.logic import events, rides
from rideonce.models.requests import CreateRideRequest
from rideonce.models.ride import Location
from tests.ops.conftest import Ops
from tests.support.consumer import envelope, lifecycle

pytestmark = pytest.mark.e2e

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def completed_ride(ops: Ops, rider_id: str, fare: str) -> str:
    """A ride through its whole lifecycle via the API handler; its id."""
    created = ops.api.call(
        "POST",
        "/rides",
        {"riderId": rider_id, "pickup": {"lat": 52.5, "lng": 13.4}, "dropoff": {"lat": 52.4, "lng": 13.3}},
        key=str(uuid.uuid4()),
    )
    assert created.status == 201, created.body
    ride_id = str(created.body["rideId"])
    steps: list[tuple[str, dict[str, Any]]] = [
        ("accept", {"driverId": "driver-1"}),
        ("start", {}),
        ("complete", {"fare": {"amount": fare, "currency": "EUR"}}),
    ]
    for action, body in steps:
        answer = ops.api.call("POST", f"/rides/{ride_id}/{action}", body, key=str(uuid.uuid4()))
        assert answer.status == 200, answer.body
    return ride_id


def table(ops: Ops, output: str) -> list[dict[str, Any]]:
    return Tables(ops.target.dynamodb()).scan(ops.target.outputs[output])


def projection(ops: Ops) -> dict[str, dict[str, Any]]:
    return {item["rideId"]: item for item in table(ops, "RideProjectionTableName")}


def depth(ops: Ops, output: str) -> int:
    return Queue(ops.target.sqs(), ops.target.outputs[output]).depth()


def charged(ops: Ops, rider_id: str) -> tuple[Decimal, int]:
    accounts = {item["riderId"]: item for item in table(ops, "RiderAccountsTableName")}
    account = accounts.get(rider_id, {})
    return Decimal(str(account.get("chargedEUR", 0))), int(account.get("chargeCount", 0))


def window_around_now() -> tuple[str, str]:
    now = datetime.now(UTC)
    return (now - timedelta(minutes=5)).isoformat(), (now + timedelta(minutes=5)).isoformat()


def test_audit_holds_on_a_healthy_stack_and_exits_1_when_an_invariant_breaks(ops: Ops) -> None:
    # Given rides that went through every hop
    completed_ride(ops, "rider-a", "12.50")
    completed_ride(ops, "rider-a", "7.50")
    ops.pipeline.run_until_quiet()
    # When the audit runs, printing its table
    printed = io.StringIO()
    status = cli.main(["--outputs", str(ops.outputs_file), "audit"], Console(file=printed, width=200))
    # Then every invariant holds, and it says so
    assert status == 0, printed.getvalue()
    assert "all invariants held" in printed.getvalue()
    # Given a ride event parked in the consumer's dead-letter queue
    (first, *_) = lifecycle("ride-parked")
    ops.target.sqs().send_message(
        QueueUrl=ops.target.outputs["ConsumerDeadLetterQueueUrl"], MessageBody=envelope(first)
    )
    # When the audit runs again
    report = ops.run("audit")
    # Then it fails, naming the dead-letter queue's depth
    assert not report.ok
    assert report.counts["ConsumerDeadLetterQueue"] == 1
    assert cli.main(["--outputs", str(ops.outputs_file), "audit"], Console(file=io.StringIO())) == 1


def test_audit_finds_a_double_charge(ops: Ops) -> None:
    # Given a completed ride, and then a second charge of its rider outside the consumer
    completed_ride(ops, "rider-b", "10.00")
    ops.pipeline.run_until_quiet()
    ops.target.dynamodb().update_item(
        TableName=ops.target.outputs["RiderAccountsTableName"],
        Key={"riderId": to_value("rider-b")},
        UpdateExpression="ADD chargedEUR :fare, chargeCount :one",
        ExpressionAttributeValues={":fare": to_value(Decimal("10.00")), ":one": to_value(1)},
    )
    # When the audit runs
    report = ops.run("audit")
    # Then the charges check breaks and names the rider
    (charges,) = [row for row in report.rows if row[0].startswith("no rider charged twice")]
    assert charges[1] == "NO"
    assert "rider-b" in charges[2]


def test_trace_shows_every_hop_of_one_ride(ops: Ops) -> None:
    # Given a completed ride
    ride_id = completed_ride(ops, "rider-c", "23.50")
    ops.pipeline.run_until_quiet()
    # When it is traced
    printed = io.StringIO()
    status = cli.main(["--outputs", str(ops.outputs_file), "trace", ride_id], Console(file=printed, width=220))
    report = ops.run("trace", ride_id)
    # Then the timeline has its four outbox versions and their four applications, in time order
    assert status == 0
    hops = [row[1] for row in report.rows]
    assert hops.count("outbox") == 4
    assert hops.count("consumer") == 4
    timed = [row[0] for row in report.rows if row[1] in ("outbox", "consumer")]
    assert timed == sorted(timed)
    assert report.counts == {"outbox_versions": 4, "applied": 4}
    # And the state each table holds now, the rider's charge, and what cannot be listed
    states = {row[1]: row[2] for row in report.rows if row[0] in ("now", "-")}
    assert states["rides table"] == states["projection"] == "v4 COMPLETED, fare 23.50 EUR"
    assert states["rider account"] == "rider-c: charged 23.50 EUR in 1 charges"
    assert "not listable" in states["bus archive"]
    assert ride_id in printed.getvalue()


def test_trace_of_an_unknown_ride_exits_1(ops: Ops) -> None:
    assert cli.main(["--outputs", str(ops.outputs_file), "trace", "no-such-ride"], Console(file=io.StringIO())) == 1


def test_redrive_consumer_dlq_applies_what_was_parked_once(ops: Ops) -> None:
    # Given the first event of a ride parked in the consumer's dead-letter queue, never applied
    (first, *_) = lifecycle("ride-dlq")
    ops.target.sqs().send_message(
        QueueUrl=ops.target.outputs["ConsumerDeadLetterQueueUrl"], MessageBody=envelope(first)
    )
    # When the redrive runs without --apply
    dry = ops.run("redrive", "consumer-dlq")
    ops.pipeline.run_until_quiet()
    # Then it says what it would move and moves nothing
    assert dry.counts == {"parked": 1, "moved": 0}
    assert depth(ops, "ConsumerDeadLetterQueueUrl") == 1
    assert "ride-dlq" not in projection(ops)
    # When it runs with --apply, and the consumer runs
    applied = ops.run("redrive", "consumer-dlq", "--apply")
    ops.pipeline.run_until_quiet()
    # Then the message went back to the consumer's queue and the event took effect
    assert applied.counts == {"parked": 1, "moved": 1}
    assert any("no StartMessageMoveTask" in note for note in applied.notes)
    assert depth(ops, "ConsumerDeadLetterQueueUrl") == 0
    assert projection(ops)["ride-dlq"]["version"] == 1
    # When it runs a second time
    again = ops.run("redrive", "consumer-dlq", "--apply")
    ops.pipeline.run_until_quiet()
    # Then there was nothing left to move, and the event was applied once
    assert again.counts == {"parked": 0, "moved": 0}
    assert [key["rideId"] for key in table(ops, "ProcessedKeysTableName")] == ["ride-dlq"]


def outbox_item(ride_id: str) -> dict[str, Any]:
    """A valid outbox item for a new ride's first change, as the API writes it."""
    request = CreateRideRequest(rider_id="rider-q", pickup=Location(lat=1, lng=2), dropoff=Location(lat=3, lng=4))
    now = datetime.now(UTC)
    change = rides.request_ride(ride_id, request, now)
    return to_item(events.outbox_record(change, now, TRACE, timedelta(days=7)))


def test_redrive_quarantine_puts_a_fixed_record_back_through_the_pipe(ops: Ops) -> None:
    # Given two malformed outbox items, quarantined by the enrichment, and one of them since deleted
    dynamodb = ops.target.dynamodb()
    outbox = ops.target.outputs["OutboxTableName"]
    for ride_id in ("ride-fixed", "ride-gone"):
        dynamodb.put_item(
            TableName=outbox,
            Item={"rideId": to_value(ride_id), "version": to_value(1), "event": to_value("not an event")},
        )
    ops.pipeline.run_until_quiet()
    assert depth(ops, "QuarantineQueueUrl") == 2
    dynamodb.delete_item(TableName=outbox, Key={"rideId": to_value("ride-gone"), "version": to_value(1)})
    # And the first one fixed in place, which the relay skips (a MODIFY)
    dynamodb.put_item(TableName=outbox, Item=outbox_item("ride-fixed"))
    ops.pipeline.run_until_quiet()
    assert "ride-fixed" not in projection(ops)
    # When the redrive runs without --apply
    dry = ops.run("redrive", "quarantine")
    ops.pipeline.run_until_quiet()
    # Then it plans one redrive and one refusal, and writes nothing
    assert dry.counts == {"quarantined": 2, "redriven": 1, "refused": 1, "duplicates": 0}
    assert depth(ops, "QuarantineQueueUrl") == 2
    assert "ride-fixed" not in projection(ops)
    # When it runs with --apply, and the pipeline runs
    applied = ops.run("redrive", "quarantine", "--apply")
    ops.pipeline.run_until_quiet()
    # Then the fixed record reached the consumer, and the one without an item stays, with the reason
    assert applied.counts == {"quarantined": 2, "redriven": 1, "refused": 1, "duplicates": 0}
    assert projection(ops)["ride-fixed"]["version"] == 1
    (refusal,) = [row for row in applied.rows if row[1] == "ride-gone v1"]
    assert refusal[2].startswith("refused: no outbox item has this key")
    assert depth(ops, "QuarantineQueueUrl") == 1
    # When it runs a second time
    again = ops.run("redrive", "quarantine", "--apply")
    ops.pipeline.run_until_quiet()
    # Then only the refusal is left, and the fixed record was applied once
    assert again.counts == {"quarantined": 1, "redriven": 0, "refused": 1, "duplicates": 0}
    assert [key["rideId"] for key in table(ops, "ProcessedKeysTableName")] == ["ride-fixed"]


def test_redrive_quarantine_refuses_a_record_still_malformed(ops: Ops) -> None:
    # Given a quarantined outbox item nobody fixed
    ops.target.dynamodb().put_item(
        TableName=ops.target.outputs["OutboxTableName"],
        Item={"rideId": to_value("ride-broken"), "version": to_value(1), "event": to_value("not an event")},
    )
    ops.pipeline.run_until_quiet()
    # When the redrive runs with --apply
    report = ops.run("redrive", "quarantine", "--apply")
    # Then it refuses it, says why, and leaves it in the queue
    assert report.counts["refused"] == 1
    assert "still not a valid record" in report.rows[0][2]
    assert depth(ops, "QuarantineQueueUrl") == 1


def test_republish_rebuilds_lost_events_from_the_outbox(ops: Ops) -> None:
    # Given two completed rides whose events the relay put on the bus but the queue lost
    since, until = window_around_now()
    first = completed_ride(ops, "rider-r", "9.00")
    second = completed_ride(ops, "rider-r", "11.00")
    ops.relay_only()
    ops.pipeline.run_until_quiet()
    assert first not in projection(ops)
    # When republish runs over the window without --apply
    dry = ops.run("republish", "--since", since, "--until", until)
    ops.pipeline.run_until_quiet()
    # Then it finds the eight changes and writes nothing
    assert dry.counts == {"changes": 8, "events": 8, "unreadable": 0, "rides_behind": 2}
    assert projection(ops) == {}
    # When it runs with --apply
    applied = ops.run("republish", "--since", since, "--until", until, "--apply")
    ops.pipeline.run_until_quiet()
    # Then both rides took effect, and the rider was charged each fare once
    assert applied.counts["events"] == 8
    assert {projection(ops)[ride]["version"] for ride in (first, second)} == {4}
    assert charged(ops, "rider-r") == (Decimal("20.00"), 2)
    # When it runs a second time
    again = ops.run("republish", "--since", since, "--until", until, "--apply")
    ops.pipeline.run_until_quiet()
    # Then the same events went out again, and the consumer dropped every one
    assert again.counts == {"changes": 8, "events": 8, "unreadable": 0, "rides_behind": 0}
    assert charged(ops, "rider-r") == (Decimal("20.00"), 2)
    assert len(table(ops, "ProcessedKeysTableName")) == 8
    assert ops.run("audit").ok


def test_replay_puts_the_archive_back_and_the_consumer_drops_it(ops: Ops) -> None:
    # Given a completed ride, applied
    since, until = window_around_now()
    completed_ride(ops, "rider-p", "15.00")
    ops.pipeline.run_until_quiet()
    # When the replay runs without --apply
    dry = ops.run("replay", "--since", since, "--until", until)
    # Then no replay is started
    assert dry.counts == {"started": 0}
    assert ops.target.events().list_replays()["Replays"] == []
    # When it runs with --apply, and the consumer runs
    applied = ops.run("replay", "--since", since, "--until", until, "--apply")
    ops.pipeline.run_until_quiet()
    # Then the replay completed, every event arrived again and was dropped: one charge
    assert applied.ok
    assert applied.counts == {"started": 1}
    assert ["replay state", "COMPLETED"] in applied.rows
    assert ops.pipeline.consumer_stats["ConsumerFunction"].succeeded == 8
    assert charged(ops, "rider-p") == (Decimal("15.00"), 1)
    # When it runs a second time over the same window
    again = ops.run("replay", "--since", since, "--until", until, "--apply")
    # Then it finds the replay it made and starts none
    assert again.counts == {"started": 0}
    assert len(ops.target.events().list_replays()["Replays"]) == 1


def test_reconcile_runs_the_reconcilers_window_once(ops: Ops) -> None:
    # Given a completed ride whose events were lost after the relay
    ride_id = completed_ride(ops, "rider-s", "30.00")
    ops.relay_only()
    ops.pipeline.run_until_quiet()
    # When the reconciler runs as the schedule would 16 minutes later (grace 15, period 5), without --apply
    at = (datetime.now(UTC) + timedelta(minutes=16)).isoformat()
    dry = ops.run("reconcile", "--at", at)
    ops.pipeline.run_until_quiet()
    # Then it finds the ride behind, and republishes nothing
    assert dry.counts == {"checked": 4, "rides_behind": 1, "republished": 4, "unreadable": 0}
    assert ride_id not in projection(ops)
    # When it runs with --apply
    applied = ops.run("reconcile", "--at", at, "--apply")
    ops.pipeline.run_until_quiet()
    # Then the ride took effect, charged once
    assert applied.counts["republished"] == 4
    assert projection(ops)[ride_id]["version"] == 4
    assert charged(ops, "rider-s") == (Decimal("30.00"), 1)
    # When it runs again: nothing is behind any more
    again = ops.run("reconcile", "--at", at, "--apply")
    assert again.counts == {"checked": 4, "rides_behind": 0, "republished": 0, "unreadable": 0}
