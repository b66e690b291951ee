"""The end-to-end promise, checked against the tables and queues after a run.

Ground truth is the ledger of what the API accepted; everything downstream must match it exactly. The
checks themselves are ops/checks.py's, the ones `python -m ops audit` runs on any stack.
"""

from collections import defaultdict
from decimal import Decimal
from typing import Any

import boto3

from local.aws.template import Stack
from local.workload.traffic import Ledger
from ops.checks import (
    Check,
    applied_in_order,
    charges_match_fares,
    projection_matches_rides,
    queues_empty,
    records_applied,
)
from rideonce.dal.dynamo import from_item

__all__ = ["DEAD_LETTER_QUEUES", "Check", "check_all", "queue_depths", "scan"]

DEAD_LETTER_QUEUES = ("PipeDeadLetterQueue", "QuarantineQueue", "RuleDeadLetterQueue", "ConsumerDeadLetterQueue")


def scan(stack: Stack, logical_id: str) -> list[dict[str, Any]]:
    pages = boto3.client("dynamodb").get_paginator("scan").paginate(TableName=stack.ref(logical_id))
    return [from_item(item) for page in pages for item in page.get("Items", [])]


def queue_depths(stack: Stack, names: tuple[str, ...] = DEAD_LETTER_QUEUES) -> dict[str, int]:
    sqs = boto3.client("sqs")
    depths = {}
    for name in names:
        attributes = sqs.get_queue_attributes(
            QueueUrl=stack.ref(name),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        depths[name] = int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )
    return depths


def check_all(stack: Stack, ledger: Ledger, unhandled_errors: int, poison_expected: bool = False) -> list[Check]:
    rides = {item["rideId"]: item for item in scan(stack, "RidesTable")}
    outbox = {(item["rideId"], int(item["version"])) for item in scan(stack, "OutboxTable")}
    keys = scan(stack, "ProcessedKeysTable")
    projection = {item["rideId"]: item for item in scan(stack, "RideProjectionTable")}
    accounts = {item["riderId"]: item for item in scan(stack, "RiderAccountsTable")}
    expected_changes = {
        (ride_id, version) for ride_id, ride in ledger.rides.items() for version in range(1, ride.version + 1)
    }
    fares: dict[str, list[Decimal]] = defaultdict(list)
    for ride in ledger.rides.values():
        if ride.status == "COMPLETED" and ride.fare is not None:
            fares[ride.rider_id].append(ride.fare)
    return [
        Check(
            "every accepted change wrote exactly one outbox record",
            outbox == expected_changes and len(outbox) == ledger.accepted_changes,
            f"{ledger.accepted_changes} changes accepted, {len(outbox)} outbox records",
        ),
        records_applied(outbox, keys, keys_outlive_records=False),
        charges_match_fares(fares, accounts),
        projection_matches_rides(rides, projection),
        applied_in_order(keys),
        queues_empty(queue_depths(stack), poison_expected),
        Check("no unhandled exception", unhandled_errors == 0, f"{unhandled_errors} unhandled"),
    ]
