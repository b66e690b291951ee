"""The baseline for the local stack's speed: the bare moto requests one ride change makes.

A change costs the API a conditional PutItem (claim the Idempotency-Key), a GetItem (read the ride;
not for a new ride) and one TransactWriteItems (ride, outbox record, key completion). Timing those same
requests through the same server, on scratch tables shaped like the template's, interleaved with the
real traffic of the same run, gives the denominator: what the handler, validation and logging add on
top of storage, with the machine's load falling on both alike.
"""

import time
import uuid
from typing import TYPE_CHECKING

import boto3

from local.aws.dynamodb import create_table_like
from local.aws.stack import LocalStack

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_SHAPES = ("RidesTable", "OutboxTable", "IdempotencyTable")
_RIDE_SIZED = {"S": "x" * 600}  # about the size of a ride item


class BareBaseline:
    """Scratch copies of the API's tables, and the time the bare requests of each change take on them."""

    def __init__(self, local: LocalStack) -> None:
        self._ddb: DynamoDBClient = boto3.client("dynamodb")
        prefix = f"bare-{uuid.uuid4().hex[:8]}"
        self._tables = {
            shape: create_table_like(self._ddb, local.stack.ref(shape), f"{prefix}-{shape}") for shape in _SHAPES
        }
        self.seconds = 0.0
        self.changes = 0

    @property
    def seconds_per_change(self) -> float:
        return self.seconds / max(1, self.changes)

    def sample(self, rides: int = 1) -> None:
        """Time the bare requests of `rides` lifecycles of 4 changes (1 create, 3 transitions)."""
        for _ in range(rides):
            ride_id = str(uuid.uuid4())
            for version in range(1, 5):
                started = time.perf_counter()
                self._change(ride_id, version)
                self.seconds += time.perf_counter() - started
                self.changes += 1

    def close(self) -> None:
        for table in self._tables.values():
            self._ddb.delete_table(TableName=table)

    def _change(self, ride_id: str, version: int) -> None:
        scope = {"S": f"caller|{uuid.uuid4()}"}
        self._ddb.put_item(
            TableName=self._tables["IdempotencyTable"],
            Item={"scope": scope, "status": {"S": "IN_PROGRESS"}},
            ConditionExpression="attribute_not_exists(#s)",
            ExpressionAttributeNames={"#s": "scope"},
        )
        if version > 1:
            self._ddb.get_item(
                TableName=self._tables["RidesTable"], Key={"rideId": {"S": ride_id}}, ConsistentRead=True
            )
        item = {"rideId": {"S": ride_id}, "version": {"N": str(version)}}
        self._ddb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": self._tables["RidesTable"], "Item": {**item, "ride": _RIDE_SIZED}}},
                {
                    "Put": {
                        "TableName": self._tables["OutboxTable"],
                        "Item": {**item, "event": _RIDE_SIZED},
                        "ConditionExpression": "attribute_not_exists(rideId)",
                    }
                },
                {
                    "Update": {
                        "TableName": self._tables["IdempotencyTable"],
                        "Key": {"scope": scope},
                        "UpdateExpression": "SET #st = :done, #r = :response",
                        "ExpressionAttributeNames": {"#st": "status", "#r": "response"},
                        "ExpressionAttributeValues": {":done": {"S": "COMPLETED"}, ":response": _RIDE_SIZED},
                    }
                },
            ]
        )
