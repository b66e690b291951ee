"""The AWS calls the operations command makes beyond the reconciler's own: queues, table reads, the archive.

Each class is handed its client (from a `Target`), so the local stack, a deployed stack or a stub can
stand behind it.
"""

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from rideonce.dal.dynamo import from_item, to_value

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_sqs import SQSClient

RECEIVE_LIMIT = 10
"""ReceiveMessage returns at most 10 messages per call."""
MOVE_TASK_DONE = ("COMPLETED", "CANCELLED", "FAILED")
"""ListMessageMoveTasks statuses after which a task moves nothing more."""
REPLAY_DONE = ("COMPLETED", "CANCELLED", "FAILED")
"""DescribeReplay states after which a replay puts nothing more on the bus."""


class ReinsertError(RuntimeError):
    """An outbox item was deleted and could not be put back; the message carries the item to put by hand."""


@dataclass(frozen=True)
class Message:
    message_id: str
    receipt_handle: str
    body: str


class Queue:
    """One SQS queue, by URL."""

    def __init__(self, client: "SQSClient", url: str) -> None:
        self._client = client
        self.url = url
        self.name = url.rstrip("/").rsplit("/", 1)[-1]

    def depth(self) -> int:
        """Messages in the queue, visible or in flight (approximate, as SQS counts them)."""
        attributes = self._client.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def arn(self) -> str:
        return self._client.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]

    def take(self, hold_seconds: int) -> list[Message]:
        """Every visible message, each hidden from other readers for `hold_seconds` (its visibility timeout).

        Long polling (a wait of 1 s): a short poll samples only some of SQS's servers and can answer empty
        while messages remain; a long poll asks them all.
        https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-short-and-long-polling.html
        """
        taken: dict[str, Message] = {}
        while True:
            answer = self._client.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=RECEIVE_LIMIT, VisibilityTimeout=hold_seconds, WaitTimeSeconds=1
            )
            received = answer.get("Messages", [])
            if not received:
                return list(taken.values())
            for message in received:
                taken[message["MessageId"]] = Message(
                    message["MessageId"], message["ReceiptHandle"], message.get("Body", "")
                )

    def release(self, messages: list[Message]) -> None:
        """Make taken messages visible again at once (visibility timeout 0), untouched."""
        for message in messages:
            self._client.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=message.receipt_handle, VisibilityTimeout=0
            )

    def delete(self, message: Message) -> None:
        self._client.delete_message(QueueUrl=self.url, ReceiptHandle=message.receipt_handle)

    def send(self, body: str) -> None:
        self._client.send_message(QueueUrl=self.url, MessageBody=body)


class MessageMover:
    """SQS's own redrive of a dead-letter queue: a message move task.

    https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_StartMessageMoveTask.html
    (only one active task per source queue) and
    https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ListMessageMoveTasks.html
    """

    def __init__(self, client: "SQSClient", sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._sleep = sleep

    def running(self, source_arn: str) -> dict[str, Any] | None:
        """The source queue's active task, if there is one."""
        tasks = self._client.list_message_move_tasks(SourceArn=source_arn, MaxResults=1).get("Results", [])
        return dict(tasks[0]) if tasks and tasks[0].get("Status") == "RUNNING" else None

    def start(self, source_arn: str, destination_arn: str) -> str:
        return self._client.start_message_move_task(SourceArn=source_arn, DestinationArn=destination_arn)["TaskHandle"]

    def wait(self, source_arn: str, timeout_seconds: float, interval: float = 5.0) -> dict[str, Any]:
        """Poll the source queue's latest task until it is done or the timeout passes; its last status."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            (task,) = self._client.list_message_move_tasks(SourceArn=source_arn, MaxResults=1)["Results"]
            if task.get("Status") in MOVE_TASK_DONE or time.monotonic() >= deadline:
                return dict(task)
            self._sleep(interval)


class Tables:
    """Whole-table and per-key reads of the stack's tables (items as plain dicts)."""

    def __init__(self, client: "DynamoDBClient") -> None:
        self._client = client

    def scan(self, table: str) -> list[dict[str, Any]]:
        pages = self._client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
        return [from_item(item) for page in pages for item in page.get("Items", [])]

    def get(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        item = self._client.get_item(
            TableName=table, Key={name: to_value(value) for name, value in key.items()}, ConsistentRead=True
        ).get("Item")
        return from_item(item) if item else None

    def get_raw(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        """The item in DynamoDB's attribute-value form, to be put back exactly as it is."""
        item = self._client.get_item(
            TableName=table, Key={name: to_value(value) for name, value in key.items()}, ConsistentRead=True
        ).get("Item")
        return dict(item) if item else None

    def query_ride(self, table: str, ride_id: str) -> Iterator[dict[str, Any]]:
        """Every item of a table keyed (rideId, version), in version order."""
        pages = self._client.get_paginator("query").paginate(
            TableName=table,
            KeyConditionExpression="#ride = :ride",
            ExpressionAttributeNames={"#ride": "rideId"},
            ExpressionAttributeValues={":ride": to_value(ride_id)},
            ConsistentRead=True,
        )
        for page in pages:
            for item in page.get("Items", []):
                yield dict(item)

    def reinsert(self, table: str, key: dict[str, Any], item: dict[str, Any]) -> None:
        """Delete the item, then put it again: the stream records a REMOVE and a new INSERT.

        Put with `attribute_not_exists`, so a concurrent writer's item is never overwritten.
        """
        self._client.delete_item(TableName=table, Key={name: to_value(value) for name, value in key.items()})
        try:
            self._client.put_item(
                TableName=table,
                Item=item,
                ConditionExpression="attribute_not_exists(#ride)",
                ExpressionAttributeNames={"#ride": "rideId"},
            )
        except ClientError as error:
            # The item is deleted and not put back: give the operator everything needed to put it by hand.
            raise ReinsertError(
                f"{key} was deleted but not put back ({error}); put this item: {json.dumps(item)}"
            ) from error


class Archive:
    """The bus archive and its replays.

    https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_StartReplay.html,
    https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_DescribeReplay.html
    """

    def __init__(self, client: "EventBridgeClient", name: str, sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self.name = name
        self._sleep = sleep

    def describe(self) -> dict[str, Any]:
        return dict(self._client.describe_archive(ArchiveName=self.name))

    def replay(self, replay_name: str, since: datetime, until: datetime, bus_arn: str) -> None:
        self._client.start_replay(
            ReplayName=replay_name,
            EventSourceArn=self.describe()["ArchiveArn"],
            EventStartTime=since,
            EventEndTime=until,
            Destination={"Arn": bus_arn},
        )

    def replay_state(self, replay_name: str) -> dict[str, Any] | None:
        """DescribeReplay's answer, or None when no replay has this name."""
        try:
            return dict(self._client.describe_replay(ReplayName=replay_name))
        except self._client.exceptions.ResourceNotFoundException:
            return None

    def wait(self, replay_name: str, timeout_seconds: float, interval: float = 5.0) -> dict[str, Any]:
        """Poll DescribeReplay until the replay is done or the timeout passes; its last answer."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            state = self.replay_state(replay_name) or {}
            if state.get("State") in REPLAY_DONE or time.monotonic() >= deadline:
                return state
            self._sleep(interval)
