"""Count the AWS requests a boto3 client makes, by operation name, to compare designs by cost.

Counting hooks botocore's `before-call` event, which fires once per API call before any retry, so a
throttled request retried three times still counts one: the figure is the design's request count, not
the network's. The hook is registered on one client's own event emitter, so only that client is counted.
"""

from collections import Counter
from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.model import OperationModel
from mypy_boto3_dynamodb import DynamoDBClient


class RequestCounter:
    """API calls by operation name, in the order they were made, since the last `take()`."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @classmethod
    def on(cls, client: BaseClient) -> "RequestCounter":
        """Start counting every API call `client` makes from now on."""
        counter = cls()
        client.meta.events.register("before-call", counter._count)
        return counter

    def _count(self, model: OperationModel, **_: Any) -> None:
        self.calls.append(model.name)

    def take(self) -> list[str]:
        """The calls made since the previous take, in order, and start again from none (one step at a time)."""
        taken, self.calls = self.calls, []
        return taken


def counted_dynamodb_client() -> tuple[DynamoDBClient, RequestCounter]:
    """A DynamoDB client of its own, with a counter on it, so one design's requests are never mixed with another's."""
    client = boto3.client("dynamodb")
    return client, RequestCounter.on(client)


def by_operation(calls: list[str]) -> Counter[str]:
    """The calls as {operation: count}, for assertions that do not depend on order."""
    return Counter(calls)


def describe(calls: list[str]) -> str:
    """`GetItem + TransactWriteItems = 2`: the calls in the order they were made, then how many."""
    return f"{' + '.join(calls) or 'nothing'} = {len(calls)}"
