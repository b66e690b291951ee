"""The rides table and the outbox table, written together in one TransactWriteItems per change."""

from collections.abc import Mapping
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from rideonce.dal.dynamo import error_code, from_item, to_item, to_value
from rideonce.logic.rides import Change
from rideonce.models.events import OutboxRecord
from rideonce.models.ride import Ride

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef


class CommitConflictError(Exception):
    """The transaction was cancelled; `failed` names the items whose condition did not hold."""

    def __init__(self, failed: set[str]) -> None:
        super().__init__(f"transaction cancelled by: {', '.join(sorted(failed))}")
        self.failed = failed


class RideStore:
    def __init__(self, client: "DynamoDBClient", rides_table: str, outbox_table: str) -> None:
        self._client = client
        self._rides_table = rides_table
        self._outbox_table = outbox_table

    def get(self, ride_id: str) -> Ride | None:
        response = self._client.get_item(
            TableName=self._rides_table, Key={"rideId": {"S": ride_id}}, ConsistentRead=True
        )
        item = response.get("Item")
        return Ride.model_validate(from_item(item)) if item else None

    def commit(
        self,
        change: Change,
        record: OutboxRecord,
        also: Mapping[str, "TransactWriteItemTypeDef"] | None = None,
    ) -> None:
        """Write the ride and its outbox record (and any `also` items) atomically, or nothing.

        The ride is conditioned on the version the change was computed from, so a concurrent change
        cancels this one; the outbox record on `attribute_not_exists`, so (rideId, version) is written once.
        """
        if change.expected_version == 0:
            ride_condition: dict[str, object] = {"ConditionExpression": "attribute_not_exists(rideId)"}
        else:
            ride_condition = {
                "ConditionExpression": "#version = :expected",
                "ExpressionAttributeNames": {"#version": "version"},
                "ExpressionAttributeValues": {":expected": to_value(change.expected_version)},
            }
        named: dict[str, TransactWriteItemTypeDef] = {
            "ride": {"Put": {"TableName": self._rides_table, "Item": to_item(change.ride), **ride_condition}},  # type: ignore[typeddict-item]
            "outbox": {
                "Put": {
                    "TableName": self._outbox_table,
                    "Item": to_item(record),
                    "ConditionExpression": "attribute_not_exists(rideId)",
                }
            },
            **(also or {}),
        }
        try:
            self._client.transact_write_items(TransactItems=list(named.values()))
        except ClientError as error:
            if error_code(error) != "TransactionCanceledException":
                raise
            reasons = error.response.get("CancellationReasons", [])
            failed = {
                name for name, reason in zip(named, reasons, strict=False) if reason.get("Code") not in (None, "None")
            }
            raise CommitConflictError(failed or set(named)) from error
