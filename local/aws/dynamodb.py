"""DynamoDB tables from the template: keys, indexes, billing, streams, encryption and TTL, created on moto.

Not applied: PointInTimeRecoverySpecification (no backup is taken locally). Not here: deleting expired
items, which moto never does (local/emulators/ttl.py), and reading the stream (local/emulators/pipes/).
"""

from typing import TYPE_CHECKING, Any

from local.aws.template import Stack

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_CREATE_TABLE_KEYS = (
    "AttributeDefinitions",
    "KeySchema",
    "BillingMode",
    "StreamSpecification",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "SSESpecification",
)


def create_tables(client: "DynamoDBClient", stack: Stack) -> dict[str, str]:
    """Create every AWS::DynamoDB::Table of the stack; return {logical id: table name}.

    moto ignores TimeToLiveSpecification at create time, so TTL is switched on with its own call, as
    the template asks. Stream ARNs are recorded so `!GetAtt Table.StreamArn` resolves.
    """
    names: dict[str, str] = {}
    for logical_id in stack.of_type("AWS::DynamoDB::Table"):
        props = stack.properties(logical_id)
        name = props.get("TableName") or stack.name_of(logical_id)
        kwargs: dict[str, Any] = {key: props[key] for key in _CREATE_TABLE_KEYS if key in props}
        if "StreamSpecification" in kwargs:
            kwargs["StreamSpecification"] = {"StreamEnabled": True, **kwargs["StreamSpecification"]}
        if "SSESpecification" in kwargs:
            kwargs["SSESpecification"] = {"Enabled": kwargs["SSESpecification"].get("SSEEnabled", False)}
        description = client.create_table(TableName=name, **kwargs)["TableDescription"]
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            client.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )
        stack.set_attribute(logical_id, "Ref", name)
        stack.set_attribute(logical_id, "Arn", description["TableArn"])
        if "LatestStreamArn" in description:
            stack.set_attribute(logical_id, "StreamArn", description["LatestStreamArn"])
        names[logical_id] = name
    return names


def create_table_like(client: "DynamoDBClient", source: str, name: str, with_stream: bool = False) -> str:
    """A fresh on-demand table with `source`'s keys and indexes (and stream, if asked).

    Scratch space shaped like the template's table.
    """
    described = client.describe_table(TableName=source)["Table"]
    extra: dict[str, Any] = {}
    if with_stream and "StreamSpecification" in described:
        extra["StreamSpecification"] = described["StreamSpecification"]
    if described.get("GlobalSecondaryIndexes"):
        # The attribute definitions name the index keys too, so the indexes come along.
        extra["GlobalSecondaryIndexes"] = [
            {key: index[key] for key in ("IndexName", "KeySchema", "Projection")}
            for index in described["GlobalSecondaryIndexes"]
        ]
    client.create_table(
        TableName=name,
        KeySchema=described["KeySchema"],
        AttributeDefinitions=described["AttributeDefinitions"],
        BillingMode="PAY_PER_REQUEST",
        **extra,
    )
    return name
