"""The reconciler on moto: changes the relay lost are republished once, in order, and applied exactly once."""

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest

from local.aws.context import FakeLambdaContext
from local.aws.messaging import create_event_buses
from local.aws.template import Stack
from local.emulators.patterns import EventPattern
from rideonce.dal.dynamo import to_item
from rideonce.dal.reconciler import EventPublisher, OutboxReader, ProjectionReader
from rideonce.handlers import reconciler as handler_module
from rideonce.logic.reconcile import commit_bucket
from rideonce.models.events import OutboxRecord, RideEvent
from rideonce.services.reconciler import Reconciler
from tests.support.consumer import T0, ConsumerHarness, envelope, lifecycle
from tests.support.counting import RequestCounter, by_operation, counted_dynamodb_client

# The template's defaults (ReconcileGraceMinutes, ReconcilePeriodMinutes); checked by the first test.
GRACE = timedelta(minutes=15)
PERIOD = timedelta(minutes=5)
DAY = timedelta(days=1)
RULES = ("RideEventsRule", "RideEventArchive", "QuarantineRule")


@pytest.fixture
def bus(stack: Stack) -> str:
    """The ride event bus, with a catch-all rule into a queue that shows what was put on it."""
    events, sqs = boto3.client("events"), boto3.client("sqs")
    create_event_buses(events, stack)
    bus_name = stack.ref("RideEventBus")
    url = sqs.create_queue(QueueName="seen-on-bus")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="everything", EventBusName=bus_name, EventPattern=json.dumps({"source": [{"prefix": ""}]}))
    events.put_targets(Rule="everything", EventBusName=bus_name, Targets=[{"Id": "seen", "Arn": arn}])
    return url


@pytest.fixture
def run(stack: Stack, bus: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Invoke the handler as the schedule does, at a given time, with the template's environment."""
    for name, value in stack.function_environment("ReconcilerFunction").items():
        monkeypatch.setenv(name, value)
    handler_module.reconciler.cache_clear()

    def invoke(at: datetime) -> dict[str, Any]:
        scheduled = {
            "version": "0",
            "id": "89d1a02d-5ec7-412e-82f5-13505f849b41",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/rideonce-local-ReconcilerFunctionEvery"],
            "detail": {},
        }
        result: dict[str, Any] = handler_module.handler(
            scheduled, FakeLambdaContext(function_name="ReconcilerFunction")
        )
        return result

    return invoke


def commit(stack: Stack, events: list[RideEvent]) -> None:
    """The outbox records of these changes, as the API writes them."""
    client = boto3.client("dynamodb")
    for event in events:
        record = OutboxRecord(
            ride_id=event.data.ride_id,
            version=event.data.version,
            expires_at=int((event.metadata.occurred_at + timedelta(days=7)).timestamp()),
            commit_bucket=commit_bucket(event.data.ride_id, event.metadata.occurred_at),
            committed_at=event.metadata.occurred_at,
            event=event,
        )
        client.put_item(TableName=stack.name_of("OutboxTable"), Item=to_item(record))


def seen_on_bus(url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    bodies: list[dict[str, Any]] = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def operate(run: Any, consumer: ConsumerHarness, bus: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The schedule firing every period from `start` to `end`, the consumer applying what each run put on the bus."""
    republished: list[dict[str, Any]] = []
    at = start
    while at <= end:
        run(at)
        if bodies := seen_on_bus(bus):
            assert consumer.deliver(*(json.dumps(body) for body in bodies)) == []
        republished += bodies
        at += PERIOD
    return republished


def versions(bodies: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(body["detail"]["metadata"]["aggregateId"], body["detail"]["metadata"]["version"]) for body in bodies]


def test_the_template_runs_it_every_five_minutes_with_a_fifteen_minute_grace(stack: Stack) -> None:
    environment = stack.function_environment("ReconcilerFunction")
    assert int(environment["RECONCILE_PERIOD_MINUTES"]) * 60 == PERIOD.total_seconds()
    assert int(environment["RECONCILE_GRACE_MINUTES"]) * 60 == GRACE.total_seconds()


def test_changes_the_relay_lost_are_republished_once_in_order_and_applied_exactly_once(
    stack: Stack, bus: str, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given three rides committed; the relay delivered ride-1 up to version 2, ride-2 whole, ride-3 nothing
    consumer = ConsumerHarness(stack, monkeypatch)
    ride1, ride2, ride3 = lifecycle("ride-1"), lifecycle("ride-2", rider_id="rider-2"), lifecycle("ride-3")[:1]
    commit(stack, ride1 + ride2 + ride3)
    assert consumer.deliver(*(envelope(event) for event in ride1[:2] + ride2)) == []
    # When the reconciler runs on its schedule for the next hour and a half
    republished = operate(run, consumer, bus, T0, T0 + timedelta(minutes=90))
    # Then it republished each missing event exactly once, each ride's in version order, as the Pipe puts them
    assert sorted(versions(republished)) == [("ride-1", 3), ("ride-1", 4), ("ride-3", 1)]
    assert [v for ride, v in versions(republished) if ride == "ride-1"] == [3, 4]
    environment = stack.function_environment("ReconcilerFunction")
    assert {(body["source"], body["detail-type"]) for body in republished} == {
        (environment["RELAY_EVENT_SOURCE"], environment["RELAY_DETAIL_TYPE"])
    }
    assert {RideEvent.model_validate(body["detail"]) for body in republished} == {ride1[2], ride1[3], ride3[0]}
    # And the consumer applied them once: one charge per rider, every projection at its ride's last version
    assert consumer.charged("rider-1") == (Decimal("23.50"), 1)
    assert consumer.charged("rider-2") == (Decimal("23.50"), 1)
    assert [consumer.projection(ride) for ride in ("ride-1", "ride-2", "ride-3")] == [
        {"version": 4, "status": "COMPLETED"},
        {"version": 4, "status": "COMPLETED"},
        {"version": 1, "status": "REQUESTED"},
    ]


def test_a_retried_run_republishes_what_the_first_attempt_did_and_the_consumer_drops_it(
    stack: Stack, bus: str, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a ride whose last change never reached the consumer
    consumer = ConsumerHarness(stack, monkeypatch)
    events = lifecycle("ride-1")
    commit(stack, events)
    assert consumer.deliver(*(envelope(event) for event in events[:3])) == []
    at = events[3].metadata.occurred_at + GRACE + timedelta(seconds=1)
    # When the schedule's invocation is retried (same scheduled time), and the original delivery arrives late too
    first, retry = run(at), run(at)
    bodies = [json.dumps(body) for body in seen_on_bus(bus)] + [envelope(events[3])]
    # Then both attempts republish the same event, and the rider is still charged once
    assert (first["republished"], retry["republished"]) == (1, 1)
    assert consumer.deliver(*bodies) == []
    assert consumer.charged("rider-1") == (Decimal("23.50"), 1)
    assert run(at + PERIOD)["republished"] == 0


def test_nothing_is_judged_before_the_grace_period(stack: Stack, bus: str, run: Any) -> None:
    commit(stack, lifecycle("ride-1")[:1])
    assert run(T0 + GRACE - timedelta(seconds=1))["checked"] == 0
    assert run(T0 + GRACE + timedelta(seconds=1))["checked"] == 1
    assert versions(seen_on_bus(bus)) == [("ride-1", 1)]


def test_an_outbox_record_that_is_not_valid_is_counted_and_skipped(stack: Stack, bus: str, run: Any) -> None:
    # Given version 2 of a ride was written malformed (the enrichment quarantines it)
    events = lifecycle("ride-1")[:3]
    commit(stack, events)
    boto3.client("dynamodb").update_item(
        TableName=stack.name_of("OutboxTable"),
        Key={"rideId": {"S": "ride-1"}, "version": {"N": "2"}},
        UpdateExpression="SET #event = :broken",
        ExpressionAttributeNames={"#event": "event"},
        ExpressionAttributeValues={":broken": {"S": "not an event"}},
    )
    summary = run(events[2].metadata.occurred_at + GRACE + timedelta(seconds=1))
    assert (summary["checked"], summary["republished"], summary["unreadable"]) == (3, 2, 1)
    assert versions(seen_on_bus(bus)) == [("ride-1", 1), ("ride-1", 3)]


def test_a_run_reads_its_window_only_whatever_the_table_holds(stack: Stack, bus: str) -> None:
    # Given 30 completed rides, all applied, and 30 more committed a day earlier
    today = [event for n in range(30) for event in lifecycle(f"ride-{n}")]
    yesterday = [
        event.model_copy(
            update={"metadata": event.metadata.model_copy(update={"occurred_at": event.metadata.occurred_at - DAY})}
        )
        for n in range(30)
        for event in lifecycle(f"old-{n}")
    ]
    commit(stack, today + yesterday)
    client = boto3.client("dynamodb")
    for event in today[3::4]:
        client.put_item(TableName=stack.name_of("RideProjectionTable"), Item=to_item(event.data))
    # When a run whose window holds the rides' last changes checks it, with every request counted
    env = stack.function_environment("ReconcilerFunction")
    dynamodb, reads = counted_dynamodb_client()
    events = boto3.client("events")
    puts = RequestCounter.on(events)
    reconciler = Reconciler(
        OutboxReader(dynamodb, env["OUTBOX_TABLE_NAME"], env["OUTBOX_COMMIT_INDEX_NAME"]),
        ProjectionReader(dynamodb, env["RIDE_PROJECTION_TABLE_NAME"]),
        EventPublisher(events, env["EVENT_BUS_NAME"], env["RELAY_EVENT_SOURCE"], env["RELAY_DETAIL_TYPE"]),
        period=PERIOD,
        grace=GRACE,
    )
    report = reconciler.run(today[3].metadata.occurred_at + GRACE + timedelta(seconds=1))
    # Then it read the window's index partitions (one hour x four shards) and the projection (30 rides, up to
    # 100 per request), nothing of yesterday, and put nothing on the bus
    assert (report.checked, report.republished) == (30, 0)
    assert by_operation(reads.take()) == {"Query": 4, "BatchGetItem": 1}
    assert puts.take() == []


def test_republished_events_look_relayed_to_the_rules(stack: Stack) -> None:
    # Given the Pipe target's static Source and DetailType, and the reconciler's
    target = stack.properties("OutboxPipe")["TargetParameters"]["EventBridgeEventBusParameters"]
    environment = stack.function_environment("ReconcilerFunction")
    assert (environment["RELAY_EVENT_SOURCE"], environment["RELAY_DETAIL_TYPE"]) == (
        target["Source"],
        target["DetailType"],
    )
    # When a ride event goes out under them
    republished = json.loads(envelope(lifecycle("ride-1")[3]))
    republished |= {"source": target["Source"], "detail-type": target["DetailType"]}
    # Then the consumer's rule and the archive take it, and the quarantine does not
    patterns = {name: EventPattern(stack.properties(name)["EventPattern"]) for name in RULES}
    assert {name: pattern.matches(republished) for name, pattern in patterns.items()} == {
        "RideEventsRule": True,
        "RideEventArchive": True,
        "QuarantineRule": False,
    }
