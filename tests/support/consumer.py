"""Ride events as the consumer receives them: EventBridge envelopes inside SQS records."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest

from local.aws.context import FakeLambdaContext
from local.aws.functions import functions
from local.aws.messaging import create_queues
from local.aws.template import ACCOUNT_ID, REGION, Stack
from local.emulators.clock import Clock
from local.emulators.event_source import SqsPoller, sqs_mappings
from rideonce.handlers import consumer
from rideonce.logic import events, rides
from rideonce.models.events import RideEvent
from rideonce.models.requests import CreateRideRequest
from rideonce.models.ride import Location, Money

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def lifecycle(ride_id: str, rider_id: str = "rider-1", fare: str = "23.50") -> list[RideEvent]:
    """The four events of a completed ride, versions 1..4."""
    request = CreateRideRequest(rider_id=rider_id, pickup=Location(lat=1, lng=2), dropoff=Location(lat=3, lng=4))
    changes = [rides.request_ride(ride_id, request, T0)]
    changes.append(rides.accept(changes[-1].ride, "driver-1", T0 + timedelta(minutes=1)))
    changes.append(rides.start(changes[-1].ride, T0 + timedelta(minutes=5)))
    changes.append(
        rides.complete(changes[-1].ride, Money(amount=Decimal(fare), currency="EUR"), T0 + timedelta(minutes=30))
    )
    return [events.build_event(change, change.ride.updated_at, TRACE) for change in changes]


def envelope(event: RideEvent, replay_name: str | None = None) -> str:
    """An EventBridge event as the rule delivers it to SQS; every delivery gets a new EventBridge id.

    Source and detail type are the Pipe target's static values (template.yaml); rules route on the detail.
    """
    body: dict[str, Any] = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "OutboxEvent",
        "source": "rideonce.outbox",
        "account": ACCOUNT_ID,
        "time": "2026-11-22T09:30:00Z",
        "region": REGION,
        "resources": [],
        "detail": event.model_dump(mode="json"),
    }
    if replay_name:
        body["replay-name"] = replay_name
    return json.dumps(body)


def sqs_event(*bodies: str, receive_count: int = 1) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": f"handle-{index}",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": str(receive_count),
                    "SentTimestamp": "1795338000000",
                    "SenderId": "AIDAEVENTBRIDGE",
                    "ApproximateFirstReceiveTimestamp": "1795338000001",
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:rideonce-local-RideEventsQueue",
                "awsRegion": REGION,
            }
            for index, body in enumerate(bodies)
        ]
    }


class ConsumerHarness:
    """The consumer handler with the template's environment, and readers for its effects."""

    def __init__(self, stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
        for name, value in stack.function_environment("ConsumerFunction").items():
            monkeypatch.setenv(name, value)
        for built in (consumer.settings, consumer.consumer, consumer.retries, consumer.visibility):
            built.cache_clear()
        self.stack = stack
        self.ddb = boto3.client("dynamodb")

    def deliver(self, *bodies: str) -> list[str]:
        """Invoke the handler with one batch; return the bodies it reported as failed."""
        event = sqs_event(*bodies)
        response = consumer.handler(event, FakeLambdaContext(function_name="ConsumerFunction"))
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        return [record["body"] for record in event["Records"] if record["messageId"] in failed]

    def charged(self, rider_id: str) -> tuple[Decimal, int]:
        item = self.ddb.get_item(
            TableName=self.stack.name_of("RiderAccountsTable"), Key={"riderId": {"S": rider_id}}
        ).get("Item", {})
        return Decimal(item.get("chargedEUR", {}).get("N", "0")), int(item.get("chargeCount", {}).get("N", "0"))

    def projection(self, ride_id: str) -> dict[str, Any] | None:
        item = self.ddb.get_item(TableName=self.stack.name_of("RideProjectionTable"), Key={"rideId": {"S": ride_id}})
        found = item.get("Item")
        return {"version": int(found["version"]["N"]), "status": found["status"]["S"]} if found else None

    def processed_keys(self) -> dict[str, int]:
        items = self.ddb.scan(TableName=self.stack.name_of("ProcessedKeysTable"))["Items"]
        return {item["idempotencyKey"]["S"]: int(item["expiresAt"]["N"]) for item in items}


def consumer_poller(stack: Stack, monkeypatch: pytest.MonkeyPatch, clock: Clock) -> SqsPoller:
    """The template's SQS event source in front of the consumer, on `clock` (moto's SQS must read it too)."""
    ConsumerHarness(stack, monkeypatch)  # the consumer's environment
    sqs = boto3.client("sqs")
    urls = create_queues(sqs, stack)
    (mapping,) = sqs_mappings(stack)
    consumer = functions(stack)[mapping.function_logical_id]
    return SqsPoller(sqs, urls[mapping.queue_logical_id], mapping, consumer.invoke, clock=clock)
