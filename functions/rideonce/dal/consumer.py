"""The consumer's tables: processed keys (TTL), the ride projection and rider accounts.

The processed-key record, the projection write and the charge are one TransactWriteItems, so an
event's effects and the proof that it was applied commit together or not at all.
"""

from enum import StrEnum
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from rideonce.dal.dynamo import error_code, to_item, to_value
from rideonce.models.consumer import ProcessedKey
from rideonce.models.events import RideEvent
from rideonce.models.ride import Money

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef


class ApplyResult(StrEnum):
    APPLIED = "applied"
    KEY_EXISTS = "key-exists"
    """A live processed-key record exists: this event already took effect."""
    PROJECTION_MOVED = "projection-moved"
    """The projection is no longer at the predecessor's version: another consumer got there first."""


class EffectStore:
    def __init__(
        self, client: "DynamoDBClient", processed_keys_table: str, projection_table: str, accounts_table: str
    ) -> None:
        self._client = client
        self._keys = processed_keys_table
        self._projection = projection_table
        self._accounts = accounts_table

    def applied_version(self, ride_id: str) -> int:
        """The last version of the ride applied to the projection (0: none yet). Strongly consistent."""
        item = self._client.get_item(
            TableName=self._projection,
            Key={"rideId": {"S": ride_id}},
            ProjectionExpression="#version",
            ExpressionAttributeNames={"#version": "version"},
            ConsistentRead=True,
        ).get("Item")
        return int(item["version"]["N"]) if item else 0

    def apply(self, event: RideEvent, key: ProcessedKey, charge: Money | None, now: int) -> ApplyResult:
        """Record the key, advance the projection by exactly one version and charge, atomically."""
        version = event.data.version
        projection_condition: dict[str, object] = (
            {"ConditionExpression": "attribute_not_exists(rideId)"}
            if version == 1
            else {
                "ConditionExpression": "#version = :previous",
                "ExpressionAttributeNames": {"#version": "version"},
                "ExpressionAttributeValues": {":previous": to_value(version - 1)},
            }
        )
        items: list[TransactWriteItemTypeDef] = [
            {
                "Put": {
                    "TableName": self._keys,
                    "Item": to_item(key),
                    # An expired key counts as absent even before DynamoDB's TTL deletes it.
                    "ConditionExpression": "attribute_not_exists(idempotencyKey) OR expiresAt <= :now",
                    "ExpressionAttributeValues": {":now": to_value(now)},
                }
            },
            {"Put": {"TableName": self._projection, "Item": to_item(event.data), **projection_condition}},  # type: ignore[typeddict-item]
        ]
        if charge is not None:
            items.append(
                {
                    "Update": {
                        "TableName": self._accounts,
                        "Key": {"riderId": {"S": event.data.rider_id}},
                        # ADD is a plain increment: applied twice, it charges twice. Only the
                        # transaction's conditions above stand between it and a double charge.
                        "UpdateExpression": "ADD #charged :amount, #charges :one",
                        "ExpressionAttributeNames": {
                            "#charged": f"charged{charge.currency}",
                            "#charges": "chargeCount",
                        },
                        "ExpressionAttributeValues": {":amount": to_value(charge.amount), ":one": to_value(1)},
                    }
                }
            )
        try:
            self._client.transact_write_items(TransactItems=items)
        except ClientError as error:
            if error_code(error) != "TransactionCanceledException":
                raise
            reasons = [reason.get("Code", "None") for reason in error.response.get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                return ApplyResult.KEY_EXISTS
            if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                return ApplyResult.PROJECTION_MOVED
            raise
        return ApplyResult.APPLIED
