"""The consumer's tables: processed keys (TTL), the ride projection and rider accounts.

The processed-key record, the projection write and the charge are one TransactWriteItems, so an
event's effects and the proof that it was applied commit together or not at all. That one request is
also the consumer's only one: when it is cancelled, its reasons say why (a live key, or the projection
at another version, returned with `ReturnValuesOnConditionCheckFailure=ALL_OLD`), so nothing is read first.

- TransactWriteItems, CancellationReasons in item order, ReturnValuesOnConditionCheckFailure:
  https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html
- the Put action's ReturnValuesOnConditionCheckFailure (NONE | ALL_OLD):
  https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_Put.html
- a transaction that meets another one on an item is cancelled with TransactionConflict:
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-conflict-handling
"""

from dataclasses import dataclass
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
    PROJECTION_ELSEWHERE = "projection-elsewhere"
    """The projection is not at the predecessor's version; `Applied.projection_version` says where it is."""
    CONFLICT = "conflict"
    """Another transaction was writing one of the items at the same moment; nothing was written."""


@dataclass(frozen=True)
class Applied:
    """What one transaction did, and when it was cancelled, what it found instead."""

    result: ApplyResult
    projection_version: int | None = None
    """With PROJECTION_ELSEWHERE: the projection's version when the transaction was evaluated (0: no item)."""


class EffectStore:
    def __init__(
        self, client: "DynamoDBClient", processed_keys_table: str, projection_table: str, accounts_table: str
    ) -> None:
        self._client = client
        self._keys = processed_keys_table
        self._projection = projection_table
        self._accounts = accounts_table

    def apply(self, event: RideEvent, key: ProcessedKey, charge: Money | None, now: int) -> Applied:
        """Record the key, advance the projection by exactly one version and charge, atomically: one request.

        Cancelled, it says why: the key is live (a duplicate), or the projection stands at another version,
        read from the cancellation reason's old item, as strongly consistent as the condition that failed.
        """
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
            {
                "Put": {
                    "TableName": self._projection,
                    "Item": to_item(event.data),
                    **projection_condition,  # type: ignore[typeddict-item]
                    # The item as it stood when the condition failed: its version classifies the event.
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
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
            reasons = error.response.get("CancellationReasons", [])
            codes = [reason.get("Code", "None") for reason in reasons]
            if codes and codes[0] == "ConditionalCheckFailed":
                return Applied(ApplyResult.KEY_EXISTS)
            if len(codes) > 1 and codes[1] == "ConditionalCheckFailed":
                old = reasons[1].get("Item", {})
                version_value = old.get("version", {}).get("N")  # type: ignore[attr-defined]
                return Applied(ApplyResult.PROJECTION_ELSEWHERE, int(version_value) if version_value else 0)
            if "TransactionConflict" in codes:
                return Applied(ApplyResult.CONFLICT)
            raise
        return Applied(ApplyResult.APPLIED)
