"""The local stack's moto transactions: all-or-nothing like DynamoDB, at a cost flat in table size."""

import time
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends

from local.template import Stack

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef


def outbox_put(stack: Stack, ride_id: str, version: int, condition: str | None = None) -> "TransactWriteItemTypeDef":
    put: dict[str, Any] = {
        "TableName": stack.name_of("OutboxTable"),
        "Item": {"rideId": {"S": ride_id}, "version": {"N": str(version)}},
    }
    if condition:
        put["ConditionExpression"] = condition
    return {"Put": put}  # type: ignore[typeddict-item]


def stream_records(stack: Stack) -> int:
    table = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_table(stack.name_of("OutboxTable"))
    assert table.stream_shard is not None
    return len(table.stream_shard.items)


def test_a_failed_condition_cancels_every_write(stack: Stack) -> None:
    # Given
    ddb = boto3.client("dynamodb")
    ddb.put_item(TableName=stack.name_of("OutboxTable"), Item={"rideId": {"S": "taken"}, "version": {"N": "1"}})
    before = stream_records(stack)
    # When the third item's condition fails
    with pytest.raises(ClientError) as raised:
        ddb.transact_write_items(
            TransactItems=[
                outbox_put(stack, "a", 1),
                outbox_put(stack, "b", 1),
                outbox_put(stack, "taken", 1, "attribute_not_exists(rideId)"),
            ]
        )
    # Then nothing was written, not even to the stream, and the reasons say which item failed
    reasons = [reason["Code"] for reason in raised.value.response["CancellationReasons"]]
    assert reasons == ["None", "None", "ConditionalCheckFailed"]
    assert len(ddb.scan(TableName=stack.name_of("OutboxTable"))["Items"]) == 1
    assert stream_records(stack) == before


def test_a_write_that_fails_midway_is_rolled_back(stack: Stack) -> None:
    # Given an item whose attribute is a string
    ddb = boto3.client("dynamodb")
    rides = stack.name_of("RidesTable")
    ddb.put_item(TableName=rides, Item={"rideId": {"S": "r"}, "status": {"S": "REQUESTED"}})
    before = stream_records(stack)
    # When a transaction writes one item, then fails adding a number to that string
    with pytest.raises(ClientError):
        ddb.transact_write_items(
            TransactItems=[
                outbox_put(stack, "new", 1),
                {
                    "Update": {
                        "TableName": rides,
                        "Key": {"rideId": {"S": "r"}},
                        "UpdateExpression": "ADD #status :one",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
            ]
        )
    # Then the first write was undone
    assert ddb.scan(TableName=stack.name_of("OutboxTable"))["Items"] == []
    assert stream_records(stack) == before
    assert ddb.get_item(TableName=rides, Key={"rideId": {"S": "r"}})["Item"]["status"] == {"S": "REQUESTED"}


def transactions_per_second(stack: Stack, prefix: str, count: int) -> float:
    ddb = boto3.client("dynamodb")
    started = time.perf_counter()
    for index in range(count):
        ddb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": stack.name_of("RidesTable"),
                        "Item": {"rideId": {"S": f"{prefix}-{index}"}, "version": {"N": "1"}},
                        "ConditionExpression": "attribute_not_exists(rideId)",
                    }
                },
                outbox_put(stack, f"{prefix}-{index}", 1, "attribute_not_exists(rideId)"),
            ]
        )
    return count / (time.perf_counter() - started)


def test_transaction_rate_stays_flat_as_tables_grow(stack: Stack) -> None:
    # Given the rate on empty tables
    empty_rate = transactions_per_second(stack, "empty", 150)
    # When both tables hold 10,000 more items
    backend = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    for index in range(10_000):
        backend.put_item(stack.name_of("RidesTable"), {"rideId": {"S": f"bulk-{index}"}, "version": {"N": "1"}})
        backend.put_item(stack.name_of("OutboxTable"), {"rideId": {"S": f"bulk-{index}"}, "version": {"N": "1"}})
    full_rate = transactions_per_second(stack, "full", 150)
    # Then the rate is at least 80% of the empty-table rate
    print(f"transactions/s: empty {empty_rate:.0f}, 10k items {full_rate:.0f}, ratio {full_rate / empty_rate:.2f}")
    assert full_rate >= 0.8 * empty_rate
