"""The Idempotency-Key table: claim a key, complete it inside the change's transaction, or release it."""

from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from rideonce.dal.dynamo import error_code, from_item, to_item, to_value
from rideonce.models.idempotency import IdempotencyRecord, KeyStatus, StoredResponse

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef


def _names(*attributes: str) -> dict[str, str]:
    """Expression attribute names; DynamoDB rejects any that the expressions do not use."""
    return {f"#{name}": name for name in attributes}


class IdempotencyStore:
    def __init__(self, client: "DynamoDBClient", table_name: str) -> None:
        self._client = client
        self._table = table_name

    def claim(self, record: IdempotencyRecord, now: int) -> IdempotencyRecord | None:
        """Take the key for this request; return the live record that holds it instead, if any.

        A record past its TTL counts as absent even while DynamoDB has not deleted it yet, and an
        IN_PROGRESS record whose lock has expired (its request died) may be taken over.
        """
        try:
            self._client.put_item(
                TableName=self._table,
                Item=to_item(record),
                ConditionExpression=(
                    "attribute_not_exists(#scope) OR #expiresAt <= :now"
                    " OR (#status = :inProgress AND #lockExpiresAt <= :now)"
                ),
                ExpressionAttributeNames=_names("scope", "status", "expiresAt", "lockExpiresAt"),
                ExpressionAttributeValues={
                    ":now": to_value(now),
                    ":inProgress": to_value(KeyStatus.IN_PROGRESS),
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise
            return IdempotencyRecord.model_validate(from_item(error.response["Item"]))  # type: ignore[typeddict-item]
        return None

    def completion(
        self, scope: str, token: str, response: StoredResponse, expires_at: int
    ) -> "TransactWriteItemTypeDef":
        """The transaction item that marks the key COMPLETED with its response, only if we still hold it."""
        return {
            "Update": {
                "TableName": self._table,
                "Key": {"scope": to_value(scope)},
                "UpdateExpression": "SET #status = :completed, #response = :response, #expiresAt = :expiresAt",
                "ConditionExpression": "#token = :token AND #status = :inProgress",
                "ExpressionAttributeNames": _names("status", "response", "expiresAt", "token"),
                "ExpressionAttributeValues": {
                    ":completed": to_value(KeyStatus.COMPLETED),
                    ":inProgress": to_value(KeyStatus.IN_PROGRESS),
                    ":token": to_value(token),
                    ":response": {"M": to_item(response)},
                    ":expiresAt": to_value(expires_at),
                },
            }
        }

    def release(self, scope: str, token: str) -> None:
        """Give the key back after a request that changed nothing, so a retry is evaluated afresh."""
        try:
            self._client.delete_item(
                TableName=self._table,
                Key={"scope": to_value(scope)},
                ConditionExpression="#token = :token AND #status = :inProgress",
                ExpressionAttributeNames=_names("token", "status"),
                ExpressionAttributeValues={
                    ":token": to_value(token),
                    ":inProgress": to_value(KeyStatus.IN_PROGRESS),
                },
            )
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise
