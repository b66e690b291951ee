"""The SQS -> Lambda event source mapping, which moto does not run, emulated with AWS's semantics.

- a batch is up to BatchSize messages, gathered for at most MaximumBatchingWindowInSeconds;
- the handler gets the SQS event exactly as Lambda builds it;
- with ReportBatchItemFailures, the messages it names stay on the queue and the rest are deleted;
  without it, or when the handler raises or answers something unparseable, the whole batch stays;
- messages that stay become visible again after the queue's visibility timeout, or sooner when the
  function shortened it with ChangeMessageVisibility (both scaled by `time_scale`, so a simulation
  can compress time), and SQS moves one to its DLQ once it has been received maxReceiveCount times
  (moto implements that redrive at receive time, as SQS does).
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from moto.core.utils import unix_time_millis
from moto.sqs.models import sqs_backends

from local.aws.moto_patches import REQUEST_LOCK
from local.aws.template import Stack

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

SQS_RECEIVE_LIMIT = 10


@dataclass(frozen=True)
class SqsMapping:
    """One AWS::Lambda::EventSourceMapping from an SQS queue, as the template configures it."""

    function_logical_id: str
    queue_logical_id: str
    queue_arn: str
    batch_size: int
    batching_window_seconds: int
    report_batch_item_failures: bool


def sqs_mappings(stack: Stack) -> list[SqsMapping]:
    """The SQS event source mappings of the translated template (SAM turns `Events: Type: SQS` into these)."""
    queue_by_arn = {stack.get_att(lid, "Arn"): lid for lid in stack.of_type("AWS::SQS::Queue")}
    function_by_name = {stack.ref(lid): lid for lid in stack.of_type("AWS::Lambda::Function")}
    mappings = []
    for logical_id in stack.of_type("AWS::Lambda::EventSourceMapping"):
        props = stack.properties(logical_id)
        if props["EventSourceArn"] not in queue_by_arn:
            continue
        mappings.append(
            SqsMapping(
                function_logical_id=function_by_name[props["FunctionName"]],
                queue_logical_id=queue_by_arn[props["EventSourceArn"]],
                queue_arn=props["EventSourceArn"],
                batch_size=int(props.get("BatchSize", 10)),
                batching_window_seconds=int(props.get("MaximumBatchingWindowInSeconds", 0)),
                report_batch_item_failures="ReportBatchItemFailures" in props.get("FunctionResponseTypes", []),
            )
        )
    return mappings


def failed_ids(response: Any, ids: list[str], report_batch_item_failures: bool) -> set[str]:
    """Lambda's reading of a partial batch response: anything it cannot parse fails the whole batch."""
    if not report_batch_item_failures or response is None:
        return set()
    try:
        named = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    except (TypeError, KeyError):
        return set(ids)
    return set(ids) if named - set(ids) or any(not name for name in named) else named


def compress_visibility(queue_arn: str, receipt_handles: set[str], time_scale: float) -> None:
    """Scale what is left of each message's visibility timeout by `time_scale`, whoever set it.

    That is the queue's timeout for a message that failed, or a shorter one the function itself set with
    ChangeMessageVisibility (an early event retried in seconds). It is done in moto's backend, in this
    process, because the API takes whole seconds and 1 s scaled by 0.01 is 10 ms.
    """
    _, _, _, region, account, name = queue_arn.split(":")
    queue = sqs_backends[account][region].get_queue(name)
    with REQUEST_LOCK:
        now = unix_time_millis()
        for message in queue._messages:
            if message.receipt_handle in receipt_handles:
                message.visible_at = now + max(0.0, message.visible_at - now) * time_scale


@dataclass
class BatchOutcome:
    received: int
    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    raised: BaseException | None = None


@dataclass
class SqsPoller:
    """Polls one queue for one function, batch by batch."""

    sqs: "SQSClient"
    queue_url: str
    mapping: SqsMapping
    invoke: Callable[[dict[str, Any]], Any]
    region: str = "us-east-1"
    time_scale: float = 1.0
    visibility_timeout: int = field(init=False, default=30)

    def __post_init__(self) -> None:
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["VisibilityTimeout"])
        self.visibility_timeout = int(attributes["Attributes"]["VisibilityTimeout"])

    def poll(self, wait: bool = False) -> BatchOutcome | None:
        """Gather one batch and invoke the function with it; None when the queue had nothing visible."""
        messages = self._gather(wait)
        if not messages:
            return None
        event = {"Records": [self._record(message) for message in messages]}
        ids = [message["MessageId"] for message in messages]
        outcome = BatchOutcome(received=len(messages))
        try:
            failed = self._failed_ids(self.invoke(event), ids)
        except Exception as error:  # a function error: the whole batch stays on the queue
            failed, outcome.raised = set(ids), error
        handles = {message["MessageId"]: message["ReceiptHandle"] for message in messages}
        outcome.failed = [message_id for message_id in ids if message_id in failed]
        outcome.succeeded = [message_id for message_id in ids if message_id not in failed]
        for start in range(0, len(outcome.succeeded), SQS_RECEIVE_LIMIT):
            chunk = outcome.succeeded[start : start + SQS_RECEIVE_LIMIT]
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(index), "ReceiptHandle": handles[mid]} for index, mid in enumerate(chunk)],
            )
        if self.time_scale != 1.0:
            compress_visibility(self.mapping.queue_arn, {handles[mid] for mid in outcome.failed}, self.time_scale)
        return outcome

    def _gather(self, wait: bool) -> list["MessageTypeDef"]:
        deadline = time.monotonic() + (self.mapping.batching_window_seconds * self.time_scale if wait else 0)
        messages: list[MessageTypeDef] = []
        while len(messages) < self.mapping.batch_size:
            received = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(SQS_RECEIVE_LIMIT, self.mapping.batch_size - len(messages)),
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
                WaitTimeSeconds=0,
            ).get("Messages", [])
            messages.extend(received)
            if not received and time.monotonic() >= deadline:
                break
            if not received:
                time.sleep(0.05)
        return messages

    def _failed_ids(self, response: Any, ids: list[str]) -> set[str]:
        return failed_ids(response, ids, self.mapping.report_batch_item_failures)

    def _record(self, message: "MessageTypeDef") -> dict[str, Any]:
        attributes = message.get("Attributes", {})
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": {
                name: attributes[name]
                for name in (
                    "ApproximateReceiveCount",
                    "SentTimestamp",
                    "SenderId",
                    "ApproximateFirstReceiveTimestamp",
                    "MessageGroupId",
                    "MessageDeduplicationId",
                    "SequenceNumber",
                )
                if name in attributes
            },
            "messageAttributes": {
                name: {
                    "stringValue": value.get("StringValue"),
                    "binaryValue": value.get("BinaryValue"),
                    "stringListValues": [],
                    "binaryListValues": [],
                    "dataType": value["DataType"],
                }
                for name, value in message.get("MessageAttributes", {}).items()
            },
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.mapping.queue_arn,
            "awsRegion": self.region,
        }
