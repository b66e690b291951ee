"""The end-to-end promise, checked against the tables and queues after a run.

Ground truth is the ledger of what the API accepted; everything downstream must match it exactly.
"""

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import boto3

from local.template import Stack
from local.traffic import Ledger
from rideonce.dal.dynamo import from_item

DEAD_LETTER_QUEUES = ("PipeDeadLetterQueue", "QuarantineQueue", "RuleDeadLetterQueue", "ConsumerDeadLetterQueue")


@dataclass(frozen=True)
class Check:
    name: str
    held: bool
    detail: str


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
    checks = [
        Check(
            "every accepted change wrote exactly one outbox record",
            outbox == expected_changes and len(outbox) == ledger.accepted_changes,
            f"{ledger.accepted_changes} changes accepted, {len(outbox)} outbox records",
        )
    ]
    applied = {(item["rideId"], int(item["version"])) for item in keys}
    checks.append(
        Check(
            "every outbox record was applied exactly once",
            applied == outbox and len(keys) == len(outbox),
            f"{len(keys)} processed keys for {len(outbox)} records; missing {len(outbox - applied)}, "
            f"unexpected {len(applied - outbox)}",
        )
    )
    fares: dict[str, list[Decimal]] = defaultdict(list)
    for ride in ledger.rides.values():
        if ride.status == "COMPLETED" and ride.fare is not None:
            fares[ride.rider_id].append(ride.fare)
    wrong = [
        rider
        for rider in set(fares) | set(accounts)
        if Decimal(str(accounts.get(rider, {}).get("chargedEUR", 0))) != sum(fares[rider], Decimal(0))
        or int(accounts.get(rider, {}).get("chargeCount", 0)) != len(fares[rider])
    ]
    charged = sum((Decimal(str(account.get("chargedEUR", 0))) for account in accounts.values()), Decimal(0))
    checks.append(
        Check(
            "no rider charged twice or missed: charges equal the fares of completed rides",
            not wrong,
            f"charged {charged} EUR for {sum(len(f) for f in fares.values())} completed rides; "
            f"{len(wrong)} riders wrong",
        )
    )
    mismatched = [
        ride_id for ride_id in rides.keys() | projection.keys() if rides.get(ride_id) != projection.get(ride_id)
    ]
    checks.append(
        Check(
            "the projection equals the rides table",
            not mismatched,
            f"{len(projection)} projected, {len(rides)} rides, {len(mismatched)} differ",
        )
    )
    by_ride: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for item in keys:
        by_ride[item["rideId"]].append((int(item["version"]), str(item["processedAt"])))
    disorder = [
        ride_id
        for ride_id, entries in by_ride.items()
        if [at for _, at in sorted(entries)] != sorted(at for _, at in entries)
    ]
    checks.append(
        Check(
            "each ride's versions were applied in increasing order", not disorder, f"{len(disorder)} rides out of order"
        )
    )
    depths = queue_depths(stack)
    parked = sum(depths.values())
    checks.append(
        Check(
            "dead-letter queues are empty" if not poison_expected else "only poison is parked",
            parked == 0 or poison_expected,
            ", ".join(f"{name} {depth}" for name, depth in depths.items()),
        )
    )
    checks.append(Check("no unhandled exception", unhandled_errors == 0, f"{unhandled_errors} unhandled"))
    return checks
