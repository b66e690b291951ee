"""Our consumer against the two usual designs (local/designs/): one fault schedule, and request counts.

The schedule: a ride's first three events, then its RideCompleted with a crash after the charge and before
the proof of it (ours: after its one transaction; check-then-write: before the key's PutItem; Powertools:
before the COMPLETED update), then SQS redelivers the message. Run with -s to see the tables.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

import boto3
import pytest
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from mypy_boto3_dynamodb import DynamoDBClient

from local.aws.context import FakeLambdaContext
from local.aws.dynamodb import create_table_like
from local.aws.template import Stack
from local.designs import REGISTRY, ConsumerTables, Kit
from local.designs.check_then_write import CheckThenWriteConsumer
from local.designs.powertools import POWERTOOLS_KEY_ATTRIBUTE, PowertoolsIdempotencyConsumer
from local.designs.rideonce import SteppedEffectStore
from local.designs.steps import NO_STEPS, CrashPoint
from rideonce.handlers.consumer import RecordConsumer
from rideonce.logic.consumer import OutOfOrderError, Verdict
from rideonce.models.events import RideEvent
from rideonce.services.clock import utc_now
from rideonce.services.consumer import RideEventConsumer
from tests.support.consumer import lifecycle
from tests.support.counting import counted_dynamodb_client, describe

FARE = Decimal("23.50")
IDEMPOTENCY_TABLE = "rideonce-local-PowertoolsIdempotencyTable"
LOCK_SECONDS = 1
"""The Powertools baseline's Lambda timeout in the crash test: its in-progress lock outlives the crash by this."""


class Crash(BaseException):
    """Kills the invocation the way a timeout or an out-of-memory does: nothing catches it."""


class CrashAfterEffect:
    """A design's steps that kill the invocation after its last effect write and before the proof, once armed."""

    def __init__(self) -> None:
        self.armed = False

    def check[T](self, run: Callable[[], T]) -> T:
        return run()

    def write[T](self, run: Callable[[], T]) -> T:
        return run()

    def reached(self, point: CrashPoint) -> None:
        if self.armed and point is CrashPoint.AFTER_EFFECT:
            raise Crash(f"crashed at {point}")

    def projected(self, event: RideEvent) -> None:
        return None

    def charged(self, event: RideEvent, amount: Decimal) -> None:
        return None


@dataclass
class Design:
    name: str
    consumer: RecordConsumer
    crash_after_effect: CrashAfterEffect
    """Armed, the design dies right after the effect's last write and before the proof that it was applied."""
    before_redelivery: Callable[[], None] = field(default=lambda: None)


def create_idempotency_table(client: DynamoDBClient) -> None:
    """Powertools' default schema: partition key `id` (S), nothing else."""
    client.create_table(
        TableName=IDEMPOTENCY_TABLE,
        AttributeDefinitions=[{"AttributeName": POWERTOOLS_KEY_ATTRIBUTE, "AttributeType": "S"}],
        KeySchema=[{"AttributeName": POWERTOOLS_KEY_ATTRIBUTE, "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )


def key_ttl(stack: Stack) -> int:
    return int(stack.function_environment("ConsumerFunction")["PROCESSED_KEY_TTL_SECONDS"])


def ours(stack: Stack, client: DynamoDBClient) -> Design:
    steps = CrashAfterEffect()
    store = SteppedEffectStore(
        client,
        stack.name_of("ProcessedKeysTable"),
        stack.name_of("RideProjectionTable"),
        stack.name_of("RiderAccountsTable"),
        steps,
    )
    return Design("ours", RideEventConsumer(store, key_ttl(stack)), steps)


def check_then_write(stack: Stack, client: DynamoDBClient) -> Design:
    steps = CrashAfterEffect()
    consumer = CheckThenWriteConsumer(
        client,
        stack.name_of("ProcessedKeysTable"),
        stack.name_of("RideProjectionTable"),
        stack.name_of("RiderAccountsTable"),
        key_ttl(stack),
        steps=steps,
    )
    return Design("check-then-write", consumer, steps)


def powertools(stack: Stack, client: DynamoDBClient, lock_seconds: int = 20) -> Design:
    steps = CrashAfterEffect()
    consumer = PowertoolsIdempotencyConsumer(
        client,
        IDEMPOTENCY_TABLE,
        stack.name_of("RideProjectionTable"),
        stack.name_of("RiderAccountsTable"),
        key_ttl(stack),
        new_context=lambda: FakeLambdaContext(function_name="ConsumerFunction", timeout_seconds=lock_seconds),
        steps=steps,
    )
    return Design("powertools", consumer, steps, lambda: wait_for_in_progress_locks_to_expire(client))


def wait_for_in_progress_locks_to_expire(client: DynamoDBClient) -> None:
    """Sleep past every INPROGRESS record's expiry, as the 120 s visibility timeout does in AWS.

    Powertools compares the stored expiry with the wall clock (`datetime.now()`) inside its conditional
    PutItem, so real time has to pass; waiting on the stored value makes the wait exact, not a guess.
    """
    items = client.scan(TableName=IDEMPOTENCY_TABLE)["Items"]
    locks = [int(item["in_progress_expiration"]["N"]) for item in items if item["status"]["S"] == "INPROGRESS"]
    assert locks, "the crash must leave an INPROGRESS record behind"
    time.sleep(max(0.0, max(locks) / 1000 - time.time()) + 0.05)


def charged(client: DynamoDBClient, stack: Stack, rider_id: str) -> tuple[Decimal, int]:
    item = client.get_item(TableName=stack.name_of("RiderAccountsTable"), Key={"riderId": {"S": rider_id}}).get(
        "Item", {}
    )
    return Decimal(item.get("chargedEUR", {}).get("N", "0")), int(item.get("chargeCount", {}).get("N", "0"))


def print_table(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    line = "  ".join(f"{{:<{width}}}" for width in widths)
    print(f"\n{title}\n" + line.format(*header).rstrip() + "\n" + line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row).rstrip())


def test_one_fault_schedule_double_charges_both_baselines_and_not_ours(stack: Stack) -> None:
    client = boto3.client("dynamodb")
    create_idempotency_table(client)
    designs = [ours(stack, client), check_then_write(stack, client), powertools(stack, client, LOCK_SECONDS)]
    rows: list[tuple[str, ...]] = []
    double_charges: dict[str, int] = {}
    for design in designs:
        # Each design gets its own ride and rider, so they share the tables without touching each other's items.
        rider = f"rider-{design.name}"
        events = lifecycle(f"ride-{design.name}", rider_id=rider)
        assert [design.consumer.handle(event) for event in events[:3]] == [Verdict.APPLY] * 3
        # Given the completion crashes after the charge and before its proof
        design.crash_after_effect.armed = True
        with pytest.raises(Crash):
            design.consumer.handle(events[3])
        design.crash_after_effect.armed = False
        assert charged(client, stack, rider) == (FARE, 1), f"{design.name}: the crash must come after the charge"
        # When SQS redelivers the message (for Powertools, after its in-progress lock expired)
        design.before_redelivery()
        verdict = design.consumer.handle(events[3])
        # Then count the double charges
        amount, count = charged(client, stack, rider)
        double_charges[design.name] = int(count > 1 or amount > FARE)
        rows.append((design.name, verdict.value, str(count), str(amount), str(double_charges[design.name])))
    print_table(
        "Crash after the charge, before the proof, then redelivery (one ride per design)",
        ("design", "redelivery", "charges", "charged EUR", "double charges"),
        rows,
    )
    assert double_charges == {"ours": 0, "check-then-write": 1, "powertools": 1}


def test_powertools_refuses_a_redelivery_while_its_lock_is_held(stack: Stack) -> None:
    # The lock is not the gap: it holds until the invocation's time is up. The gap is what comes after.
    client = boto3.client("dynamodb")
    create_idempotency_table(client)
    design = powertools(stack, client)
    events = lifecycle("ride-1")
    for event in events[:3]:
        design.consumer.handle(event)
    design.crash_after_effect.armed = True
    with pytest.raises(Crash):
        design.consumer.handle(events[3])
    design.crash_after_effect.armed = False
    with pytest.raises(IdempotencyAlreadyInProgressError):
        design.consumer.handle(events[3])
    assert charged(client, stack, "rider-1") == (FARE, 1)


def test_dynamodb_requests_per_new_event_and_per_duplicate(stack: Stack) -> None:
    create_idempotency_table(boto3.client("dynamodb"))
    # Each design talks through its own client, so its counter sees its requests only.
    builders = (ours, check_then_write, powertools)
    measured: dict[str, dict[str, list[str]]] = {}
    for build in builders:
        client, counter = counted_dynamodb_client()
        design = build(stack, client)
        events = lifecycle(f"ride-{design.name}", rider_id=f"rider-{design.name}")
        steps: dict[str, list[str]] = {}
        for event in events:
            assert design.consumer.handle(event) is Verdict.APPLY
            steps[f"new v{event.data.version}"] = counter.take()
        for event in (events[3], events[0]):
            assert design.consumer.handle(event) is Verdict.DUPLICATE
            steps[f"duplicate v{event.data.version}"] = counter.take()
        assert steps["new v1"] == steps["new v2"] == steps["new v3"], f"{design.name}: no-charge events differ"
        assert steps["duplicate v4"] == steps["duplicate v1"], f"{design.name}: duplicates differ"
        measured[design.name] = steps
    print_table(
        "DynamoDB requests per record (botocore before-call events on moto, one per API call)",
        ("design", "new event, no charge (v1..v3)", "new RideCompleted (v4)", "duplicate (v4 or v1 again)"),
        [
            (name, describe(steps["new v1"]), describe(steps["new v4"]), describe(steps["duplicate v4"]))
            for name, steps in measured.items()
        ],
    )
    # Ours: one transaction, whatever the event; a duplicate is that transaction, cancelled.
    assert measured["ours"]["new v1"] == ["TransactWriteItems"]
    assert measured["ours"]["new v4"] == ["TransactWriteItems"]
    assert measured["ours"]["duplicate v4"] == ["TransactWriteItems"]
    assert measured["ours"]["duplicate v1"] == ["TransactWriteItems"]
    # The baselines, as observed: their extra requests are the separate writes that leave the gap.
    assert measured["check-then-write"]["new v4"] == ["GetItem", "PutItem", "UpdateItem", "PutItem"]
    assert measured["check-then-write"]["duplicate v4"] == ["GetItem"]
    assert measured["powertools"]["new v4"] == ["PutItem", "PutItem", "UpdateItem", "UpdateItem"]
    assert measured["powertools"]["duplicate v4"] == ["PutItem"]


def test_request_counter_counts_only_its_own_client(stack: Stack) -> None:
    client, counter = counted_dynamodb_client()
    other = boto3.client("dynamodb")
    client.list_tables()
    other.list_tables()
    client.describe_table(TableName=stack.name_of("RiderAccountsTable"))
    assert counter.take() == ["ListTables", "DescribeTable"]
    assert counter.take() == []


def test_an_early_event_costs_ours_one_request_too(stack: Stack) -> None:
    # Given a ride none of whose events was applied yet, and a counted client
    client, counter = counted_dynamodb_client()
    design = ours(stack, client)
    events = lifecycle("ride-early", rider_id="rider-early")
    # When its third event arrives first
    with pytest.raises(OutOfOrderError):
        design.consumer.handle(events[2])
    # Then the cancelled transaction alone told it was early
    assert counter.take() == ["TransactWriteItems"]


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_registered_design_applies_a_lifecycle_once_on_its_own_tables(stack: Stack, name: str) -> None:
    # Given the design built from its registry row, on copies of the consumer tables of its own
    client = boto3.client("dynamodb")
    tables = ConsumerTables(
        *(
            create_table_like(client, stack.name_of(logical_id), f"{stack.name_of(logical_id)}-{name}")
            for logical_id in ("ProcessedKeysTable", "RideProjectionTable", "RiderAccountsTable")
        )
    )
    kit = Kit(lambda: boto3.client("dynamodb"), tables, key_ttl(stack), utc_now, NO_STEPS, stack.stack_name)
    consumer = REGISTRY[name].build(kit)
    events = lifecycle(f"ride-{name}")
    # When a ride's four events arrive, then its completion again
    verdicts = [consumer.handle(event) for event in [*events, events[3]]]
    # Then each took effect once, the repeat was a duplicate, and the rider was charged the fare once
    assert verdicts == [Verdict.APPLY] * 4 + [Verdict.DUPLICATE]
    account = client.get_item(TableName=tables.accounts, Key={"riderId": {"S": "rider-1"}})["Item"]
    assert (Decimal(account["chargedEUR"]["N"]), account["chargeCount"]["N"]) == (FARE, "1")
