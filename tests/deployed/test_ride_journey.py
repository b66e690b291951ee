"""One ride, end to end, against whatever `target` is: the local stack in `make test`, a deployed stack in
`make test-deployed`. Everything goes through the API (SigV4-signed) and the stack's outputs; the
pipeline between them is AWS's (or its local emulation), never called directly.

Polls wait for each effect with a timeout; none of them is an assertion by itself.
"""

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from mypy_boto3_dynamodb import DynamoDBClient
from mypy_boto3_sqs import SQSClient

from ops.target import Target, poll

pytestmark = pytest.mark.e2e

# Stream -> Pipe (batching window 1 s) -> bus -> queue -> consumer (batching window 2 s), with cold starts.
PROPAGATION_TIMEOUT = 120.0
REPLAY_TIMEOUT = 900.0
FARE = {"amount": "12.34", "currency": "EUR"}
FINISHED_REPLAY_STATES = {"COMPLETED", "FAILED", "CANCELLED"}


def projection(ddb: DynamoDBClient, target: Target, ride_id: str) -> tuple[int, str] | None:
    item = ddb.get_item(
        TableName=target.outputs["RideProjectionTableName"], Key={"rideId": {"S": ride_id}}, ConsistentRead=True
    ).get("Item")
    return (int(item["version"]["N"]), item["status"]["S"]) if item else None


def charges(ddb: DynamoDBClient, target: Target, rider_id: str) -> tuple[Decimal, int]:
    item = ddb.get_item(
        TableName=target.outputs["RiderAccountsTableName"], Key={"riderId": {"S": rider_id}}, ConsistentRead=True
    ).get("Item", {})
    return Decimal(item.get("chargedEUR", {}).get("N", "0")), int(item.get("chargeCount", {}).get("N", "0"))


def messages_on(sqs: SQSClient, queue_url: str) -> int:
    """Visible plus in-flight messages (both approximate, as SQS reports them)."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_a_ride_takes_effect_downstream_exactly_once(target: Target) -> None:
    ddb, events, sqs = target.dynamodb(), target.events(), target.sqs()
    run = uuid.uuid4().hex[:12]
    rider_id = f"e2e-rider-{run}"
    window_start = datetime.now(UTC) - timedelta(minutes=1)

    def reaches(ride_id: str, version: int, status: str) -> None:
        poll(
            lambda: projection(ddb, target, ride_id),
            lambda seen: seen == (version, status),
            PROPAGATION_TIMEOUT,
            f"the projection of {ride_id} reaching version {version} ({status}) on {target.name}",
        )

    # Given a ride requested through the API
    request: dict[str, Any] = {
        "riderId": rider_id,
        "pickup": {"lat": 52.52, "lng": 13.405},
        "dropoff": {"lat": 52.5163, "lng": 13.3777},
    }
    created = target.request("POST", "/rides", request, {"Idempotency-Key": f"{run}-create"})
    assert created.status == 201, created.body
    ride_id = created.json["rideId"]

    # When the client retries it (it never saw the answer)
    retried = target.request("POST", "/rides", request, {"Idempotency-Key": f"{run}-create"})
    # Then the retry replays the stored answer instead of creating a second ride
    assert retried.status == 201, retried.body
    assert retried.headers.get("idempotent-replayed") == "true"
    assert retried.json == created.json
    reaches(ride_id, 1, "REQUESTED")

    # When the ride is accepted, started and completed
    for version, (action, body, status) in enumerate(
        [
            ("accept", {"driverId": f"e2e-driver-{run}"}, "ACCEPTED"),
            ("start", None, "STARTED"),
            ("complete", {"fare": FARE}, "COMPLETED"),
        ],
        start=2,
    ):
        headers = {"Idempotency-Key": f"{run}-{action}", "If-Match": f'"{version - 1}"'}
        answer = target.request("POST", f"/rides/{ride_id}/{action}", body, headers)
        assert answer.status == 200, f"{action}: {answer.body}"
        # Then the projection reaches each version in turn
        reaches(ride_id, version, status)

    # And the rider was charged the fare exactly once
    assert charges(ddb, target, rider_id) == (Decimal(FARE["amount"]), 1)

    # When the bus archive is replayed onto the bus (after the delay AWS documents for archiving)
    time.sleep(target.archive_delay_seconds)
    archive = events.describe_archive(ArchiveName=target.outputs["RideEventArchiveName"])
    replay = f"e2e-{run}"
    events.start_replay(
        ReplayName=replay,
        EventSourceArn=archive["ArchiveArn"],
        EventStartTime=window_start,
        EventEndTime=datetime.now(UTC),
        Destination={"Arn": target.outputs["RideEventBusArn"]},
    )
    state = poll(
        lambda: events.describe_replay(ReplayName=replay),
        lambda described: described["State"] in FINISHED_REPLAY_STATES,
        REPLAY_TIMEOUT,
        f"replay {replay} finishing",
    )
    assert state["State"] == "COMPLETED", state.get("StateReason")
    poll(
        lambda: messages_on(sqs, target.outputs["RideEventsQueueUrl"]),
        lambda count: count == 0,
        PROPAGATION_TIMEOUT,
        "the consumer queue draining after the replay",
    )

    # Then nothing changed: the projection is still at version 4 and the rider still charged once
    assert projection(ddb, target, ride_id) == (4, "COMPLETED")
    assert charges(ddb, target, rider_id) == (Decimal(FARE["amount"]), 1)
    print(f"\nrequests sent to {target.name}: {json.dumps(dict(sorted(target.requests.items())))}")
