"""The end-to-end promise, checked against the tables and queues after a run.

Ground truth is the ledger of what the API accepted; everything downstream must match it exactly. The
checks themselves are ops/checks.py's, the ones `python -m ops audit` runs on any stack, and so are the
reads (ops/aws.py); what this module adds is the ledger. `make chaos` uses the same functions.
"""

from collections import defaultdict
from decimal import Decimal
from typing import Any

import boto3

from local.aws.template import Stack
from local.workload.traffic import Ledger
from ops.aws import Queue, Tables
from ops.checks import (
    Check,
    applied_in_order,
    charges_match_fares,
    projection_matches_rides,
    queues_empty,
    records_applied,
)

__all__ = ["DEAD_LETTER_QUEUES", "Check", "check_all", "ledger_fares", "outbox_matches_ledger", "queue_depths", "scan"]

DEAD_LETTER_QUEUES = ("PipeDeadLetterQueue", "QuarantineQueue", "RuleDeadLetterQueue", "ConsumerDeadLetterQueue")


def scan(stack: Stack, logical_id: str) -> list[dict[str, Any]]:
    """Every item of one of the stack's tables, as plain dicts (ops' reader, on this process's endpoint)."""
    return Tables(boto3.client("dynamodb")).scan(stack.ref(logical_id))


def queue_depths(stack: Stack, names: tuple[str, ...] = DEAD_LETTER_QUEUES) -> dict[str, int]:
    """Messages in each queue, visible or in flight (ops' reader)."""
    sqs = boto3.client("sqs")
    return {name: Queue(sqs, stack.ref(name)).depth() for name in names}


def ledger_fares(ledger: Ledger) -> dict[str, list[Decimal]]:
    """{rider id: the fares of their completed rides}, as the API accepted them: what each rider owes."""
    fares: dict[str, list[Decimal]] = defaultdict(list)
    for ride in ledger.rides.values():
        if ride.status == "COMPLETED" and ride.fare is not None:
            fares[ride.rider_id].append(ride.fare)
    return fares


def outbox_matches_ledger(ledger: Ledger, outbox: set[tuple[str, int]], besides: str = "") -> Check:
    """Every change the API accepted wrote exactly one outbox record (rideId, version), and nothing else did.

    `besides`: what else the table holds on purpose, said in the detail (chaos's poison items).
    """
    expected = {(ride_id, version) for ride_id, ride in ledger.rides.items() for version in range(1, ride.version + 1)}
    return Check(
        "every accepted change wrote exactly one outbox record",
        outbox == expected and len(outbox) == ledger.accepted_changes,
        f"{ledger.accepted_changes} changes accepted, {len(outbox)} outbox records"
        + (f" ({besides})" if besides else ""),
    )


def check_all(stack: Stack, ledger: Ledger, unhandled_errors: int, poison_expected: bool = False) -> list[Check]:
    rides = {item["rideId"]: item for item in scan(stack, "RidesTable")}
    outbox = {(item["rideId"], int(item["version"])) for item in scan(stack, "OutboxTable")}
    keys = scan(stack, "ProcessedKeysTable")
    projection = {item["rideId"]: item for item in scan(stack, "RideProjectionTable")}
    accounts = {item["riderId"]: item for item in scan(stack, "RiderAccountsTable")}
    return [
        outbox_matches_ledger(ledger, outbox),
        records_applied(outbox, keys, keys_outlive_records=False),
        charges_match_fares(ledger_fares(ledger), accounts),
        projection_matches_rides(rides, projection),
        applied_in_order(keys),
        queues_empty(queue_depths(stack), poison_expected),
        Check("no unhandled exception", unhandled_errors == 0, f"{unhandled_errors} unhandled"),
    ]
