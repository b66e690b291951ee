"""The outbox relay on moto: API commits -> outbox stream -> enrichment -> the bus's rules and queues."""

import json
from datetime import datetime
from typing import Any

import boto3
import pytest

from local.aws.context import FakeLambdaContext
from local.aws.messaging import Messaging, create_messaging
from local.aws.template import ROOT, Stack
from rideonce.handlers import enrichment
from tests.support.api import NEW_RIDE, ApiClient

FARE = {"amount": "23.50", "currency": "EUR"}


@pytest.fixture
def client(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> ApiClient:
    return ApiClient(stack, monkeypatch)


@pytest.fixture
def messaging(stack: Stack) -> Messaging:
    return create_messaging(boto3.client("events"), boto3.client("sqs"), stack)


def enrich(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return enrichment.handler(records, FakeLambdaContext(function_name="EnrichmentFunction"))  # type: ignore[arg-type]


def pipe_batch_size(stack: Stack) -> int:
    return int(stack.properties("OutboxPipe")["SourceParameters"]["DynamoDBStreamParameters"]["BatchSize"])


def stream_records(stack: Stack) -> list[dict[str, Any]]:
    """Every record of the outbox table's stream, shaped as the Pipe hands them to the enrichment.

    moto answers through boto3 (datetimes, no eventSourceARN); the Pipe sends JSON with epoch seconds and
    the stream ARN, so the records are turned into that.
    """
    dynamodb = boto3.client("dynamodb")
    streams = boto3.client("dynamodbstreams")
    table = stack.ref("OutboxTable")
    stream_arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        ).get("ShardIterator")
        while iterator:
            page = streams.get_records(ShardIterator=iterator)
            if not page["Records"]:
                break
            records.extend(page["Records"])  # type: ignore[arg-type]
            iterator = page.get("NextShardIterator")
    as_json = json.dumps(records, default=lambda value: value.timestamp() if isinstance(value, datetime) else value)
    return [record | {"eventSourceARN": stream_arn} for record in json.loads(as_json)]


def put_as_the_pipe_does(stack: Stack, messaging: Messaging, items: list[dict[str, Any]]) -> None:
    """PutEvents with the Pipe target's static Source and DetailType, read from the template."""
    events = boto3.client("events")
    bus = messaging.buses["RideEventBus"]
    target = stack.properties("OutboxPipe")["TargetParameters"]["EventBridgeEventBusParameters"]
    for start in range(0, len(items), 10):
        entries = [
            {
                "EventBusName": bus,
                "Source": target["Source"],
                "DetailType": target["DetailType"],
                "Detail": json.dumps(item),
            }
            for item in items[start : start + 10]
        ]
        assert events.put_events(Entries=entries)["FailedEntryCount"] == 0  # type: ignore[arg-type]


def drain(queue_url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    bodies: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        bodies.extend(json.loads(message["Body"]) for message in batch)
        for message in batch:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def test_a_rejected_record_reaches_the_quarantine_queue_and_nothing_else_does(
    stack: Stack, messaging: Messaging
) -> None:
    # Given the sample Pipe batch (one malformed record among ride events), enriched
    batch = json.loads((ROOT / "events" / "pipe-enrichment.json").read_text())
    items = enrich(batch)
    rejections = [item for item in items if item["metadata"]["eventType"] == "OutboxRecordRejected"]
    assert len(rejections) == 1
    # When the Pipe puts every enriched item on the bus, routed by the template's rules
    put_as_the_pipe_does(stack, messaging, items)
    # Then the quarantine queue holds the rejection, with the raw record to redrive, and nothing else
    quarantined = drain(messaging.queues["QuarantineQueue"])
    assert [body["detail"]["metadata"]["eventType"] for body in quarantined] == ["OutboxRecordRejected"]
    assert quarantined[0]["detail"] == rejections[0]
    assert quarantined[0]["detail"]["data"]["record"] == batch[2]
    # And the ride events go to the consumer queue only, never to quarantine or a dead-letter queue
    consumed = drain(messaging.queues["RideEventsQueue"])
    assert sorted(body["detail"]["metadata"]["idempotencyKey"] for body in consumed) == sorted(
        item["metadata"]["idempotencyKey"] for item in items if item["metadata"]["source"] == "rideonce.rides"
    )
    assert drain(messaging.queues["RuleDeadLetterQueue"]) == []


def test_ride_changes_through_the_api_come_out_of_the_enrichment_as_their_events(
    stack: Stack, client: ApiClient
) -> None:
    # Given a ride driven through its whole lifecycle, and a second ride cancelled, through the API handler
    answered: dict[tuple[str, int], Any] = {}

    def send(method: str, path: str, body: Any, key: str) -> str:
        response = client.request(method, path, body, key=key)
        assert response.status in (200, 201), response.body
        answered[(response.json["rideId"], response.json["version"])] = response.json
        return str(response.json["rideId"])

    ride_id = send("POST", "/rides", NEW_RIDE, "create-1")
    other_id = send("POST", "/rides", NEW_RIDE | {"riderId": "rider-2"}, "create-2")
    send("POST", f"/rides/{ride_id}/accept", {"driverId": "driver-7"}, "accept-1")
    send("POST", f"/rides/{ride_id}/start", None, "start-1")
    send("POST", f"/rides/{ride_id}/complete", {"fare": FARE}, "complete-1")
    send("POST", f"/rides/{other_id}/cancel", {"reason": "no driver"}, "cancel-2")
    final = {rid: client.request("GET", f"/rides/{rid}").json for rid in (ride_id, other_id)}
    # When the Pipe reads the outbox stream and hands it to the enrichment in batches of its BatchSize
    records = stream_records(stack)
    size = pipe_batch_size(stack)
    events = [event for start in range(0, len(records), size) for event in enrich(records[start : start + size])]
    # Then there is one event per change, none rejected, in version order per ride
    assert {record["eventName"] for record in records} == {"INSERT"}
    assert len(events) == len(records) == 6
    assert [event["metadata"]["source"] for event in events] == ["rideonce.rides"] * 6
    by_ride = {rid: [event for event in events if event["metadata"]["aggregateId"] == rid] for rid in final}
    assert [event["metadata"]["version"] for event in by_ride[ride_id]] == [1, 2, 3, 4]
    assert [event["metadata"]["eventType"] for event in by_ride[ride_id]] == [
        "RideRequested",
        "RideAccepted",
        "RideStarted",
        "RideCompleted",
    ]
    assert [event["metadata"]["eventType"] for event in by_ride[other_id]] == ["RideRequested", "RideCancelled"]
    # And each event carries the whole ride as the API answered that change; the last ones as GET answers
    for rid, ride_events in by_ride.items():
        assert ride_events[-1]["data"] == final[rid]
        for event in ride_events:
            metadata = event["metadata"]
            assert event["data"] == answered[(rid, metadata["version"])]
            assert metadata["idempotencyKey"] == f"ride#{rid}#v{metadata['version']}"
            assert metadata["occurredAt"] == event["data"]["updatedAt"]
    assert by_ride[ride_id][3]["data"]["fare"] == FARE
    # And a Pipe retry of the same batches gives byte-identical events
    again = [event for start in range(0, len(records), size) for event in enrich(records[start : start + size])]
    assert json.dumps(again) == json.dumps(events)
