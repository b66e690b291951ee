"""Model <-> DynamoDB attribute-value conversion, shared by every store."""

import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from pydantic import BaseModel

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_item(model: BaseModel) -> dict[str, "AttributeValueTypeDef"]:
    """The model as a DynamoDB item: JSON mode (camelCase, strings for instants), numbers as Decimal."""
    plain = json.loads(model.model_dump_json(exclude_none=True), parse_float=Decimal)
    return {name: _serializer.serialize(value) for name, value in plain.items()}


def to_value(value: Any) -> "AttributeValueTypeDef":
    return _serializer.serialize(value)


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _deserializer.deserialize(value) for name, value in item.items()}


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
