"""The baseline for the local stack's speed: the bare moto requests one ride change makes.

A change costs the API a conditional PutItem (claim the Idempotency-Key), a GetItem (read the ride;
not for a new ride) and one TransactWriteItems (ride, outbox record, key completion). Timing those
same requests, through the same server, on scratch tables shaped like the template's, in the same
run, gives the denominator: what the handler, validation and logging add on top of storage.
"""

import time
import uuid
from typing import Any

import boto3

from local.stack import LocalStack

_SHAPES = ("RidesTable", "OutboxTable", "IdempotencyTable")


def bare_seconds_per_change(local: LocalStack, rides: int = 50) -> float:
    """Seconds per change of the bare requests, over `rides` lifecycles of 4 changes (1 create, 3 steps)."""
    ddb = boto3.client("dynamodb")
    tables = {
        shape: _scratch_copy(ddb, local.stack.ref(shape), f"bare-{uuid.uuid4().hex[:8]}-{shape}") for shape in _SHAPES
    }
    ride_body = {"S": "x" * 600}  # about the size of a ride item
    started = time.perf_counter()
    changes = 0
    for _ in range(rides):
        ride_id = str(uuid.uuid4())
        for version in range(1, 5):
            scope = {"S": f"caller|{uuid.uuid4()}"}
            ddb.put_item(
                TableName=tables["IdempotencyTable"],
                Item={"scope": scope, "status": {"S": "IN_PROGRESS"}},
                ConditionExpression="attribute_not_exists(#s)",
                ExpressionAttributeNames={"#s": "scope"},
            )
            if version > 1:
                ddb.get_item(TableName=tables["RidesTable"], Key={"rideId": {"S": ride_id}}, ConsistentRead=True)
            ddb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": tables["RidesTable"],
                            "Item": {"rideId": {"S": ride_id}, "version": {"N": str(version)}, "ride": ride_body},
                        }
                    },
                    {
                        "Put": {
                            "TableName": tables["OutboxTable"],
                            "Item": {"rideId": {"S": ride_id}, "version": {"N": str(version)}, "event": ride_body},
                            "ConditionExpression": "attribute_not_exists(rideId)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": tables["IdempotencyTable"],
                            "Key": {"scope": scope},
                            "UpdateExpression": "SET #st = :done, #r = :response",
                            "ExpressionAttributeNames": {"#st": "status", "#r": "response"},
                            "ExpressionAttributeValues": {":done": {"S": "COMPLETED"}, ":response": ride_body},
                        }
                    },
                ]
            )
            changes += 1
    elapsed = time.perf_counter() - started
    for table in tables.values():
        ddb.delete_table(TableName=table)
    return elapsed / changes


def _scratch_copy(ddb: Any, source: str, name: str) -> str:
    described = ddb.describe_table(TableName=source)["Table"]
    ddb.create_table(
        TableName=name,
        KeySchema=described["KeySchema"],
        AttributeDefinitions=described["AttributeDefinitions"],
        BillingMode="PAY_PER_REQUEST",
    )
    return name
