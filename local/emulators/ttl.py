"""DynamoDB TTL deletion, which moto never performs, emulated: late, as in AWS.

DynamoDB deletes an expired item some time after its TTL (typically within days), so readers must
treat an expired item as absent on their own; this sweeper deletes only items expired for longer
than `lateness_seconds` on the sweeper's clock, which keeps that window open in every local run
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ttl-expired-items.html).

Not modelled: a deletion here is an ordinary DeleteItem, so its stream record lacks the `userIdentity`
(type "Service", principalId "dynamodb.amazonaws.com") AWS gives a TTL deletion
(https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_streams_Record.html); the outbox
Pipe's filter passes no REMOVE record either way. Nor is TTL's own pace: a sweep deletes every item
past the lateness at once.
"""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from local.aws.template import Stack
from local.emulators.clock import Clock

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

DEFAULT_LATENESS_SECONDS = 2 * 86_400


def ttl_attributes(stack: Stack) -> dict[str, str]:
    """{table name: TTL attribute} for every table whose template enables TTL."""
    found = {}
    for logical_id in stack.of_type("AWS::DynamoDB::Table"):
        spec = stack.properties(logical_id).get("TimeToLiveSpecification")
        if spec and spec.get("Enabled"):
            found[stack.ref(logical_id)] = str(spec["AttributeName"])
    return found


@dataclass
class TtlSweeper:
    client: "DynamoDBClient"
    tables: dict[str, str]
    clock: Clock
    lateness_seconds: float = DEFAULT_LATENESS_SECONDS
    deleted: dict[str, int] = field(default_factory=dict)

    def sweep(self) -> int:
        """Delete the items expired for longer than the lateness; return how many were deleted."""
        cutoff = int(self.clock.now() - self.lateness_seconds)
        total = 0
        for table, attribute in self.tables.items():
            key_names = [
                key["AttributeName"] for key in self.client.describe_table(TableName=table)["Table"]["KeySchema"]
            ]
            pages = self.client.get_paginator("scan").paginate(
                TableName=table,
                FilterExpression="#ttl < :cutoff",
                ExpressionAttributeNames={"#ttl": attribute},
                ExpressionAttributeValues={":cutoff": {"N": str(cutoff)}},
            )
            for page in pages:
                for item in page.get("Items", []):
                    self.client.delete_item(TableName=table, Key={name: item[name] for name in key_names})
                    total += 1
                    self.deleted[table] = self.deleted.get(table, 0) + 1
        return total
