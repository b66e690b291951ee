"""The SQS -> Lambda event source mapping, which moto does not run, emulated with AWS's semantics.

- a batch is up to BatchSize messages, gathered for at most MaximumBatchingWindowInSeconds;
- the handler gets the SQS event exactly as Lambda builds it;
- with ReportBatchItemFailures, the messages it names stay on the queue and the rest are deleted;
  without it, or when the handler raises or answers something unparseable, the whole batch stays;
- messages that stay become visible again after the queue's visibility timeout, or sooner when the
  function shortened it with ChangeMessageVisibility, and SQS moves one to its DLQ once it has been
  received maxReceiveCount times (moto implements that redrive at receive time, as SQS does).

moto keeps the queue and its timers; they run on the clock moto was given (moto_patches.clock_installed),
which must be the clock the poller is given: its batching window and `next_batch_at` read that clock.
Two hooks are the seams for faults at this hop: `around_invoke` wraps each invocation (it may crash it,
time it, or hand the batch to a second consumer), and `settles` decides whether a message the function
reported processed is deleted (a lost delete leaves it to come back after its visibility timeout).
Receive order is moto's: visible messages in the order they were sent, a retried one keeping its place;
a standard queue promises only a best-effort order, so any order is one SQS may deliver.
Documents: https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-parameters.html (BatchSize,
MaximumBatchingWindowInSeconds), https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html
(partial batch responses), https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/working-with-visibility-timeouts.html,
https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues.html
(maxReceiveCount) and https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/standard-queues.html
(best-effort order).

Not here: FIFO queues (message groups) and the mapping's FilterCriteria, which template.yaml does not
use; its ScalingConfig (MaximumConcurrency) is read by no one here, as one poller runs one batch at a
time; unlike the Pipe's reader (pipes/config.py), a mapping property not emulated is ignored, not refused.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from moto.sqs.models import sqs_backends

from local.aws.moto_patches import REQUEST_LOCK
from local.aws.template import Stack
from local.emulators.clock import Clock, WallClock

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


def visibility_moments(queue_arn: str) -> list[float]:
    """For each message on the queue (moto's, in this process): the moment it is, or was, visible from.

    That is its send, or the end of its delay, or the end of its visibility timeout, whichever is latest,
    read from moto's backend in the clock moto was given. moto shows a message once the time is past
    its visibility timeout (hence the millisecond added) and from the end of its delay.
    """
    queue = _queue(queue_arn)
    with REQUEST_LOCK:
        return [
            max(
                (message.sent_timestamp or 0) / 1000,
                message.delayed_until / 1000,
                message.visible_at / 1000 + 0.001 if message.visible_at else 0.0,
            )
            for message in queue._messages
        ]


def receive_again(queue_arn: str, message_id: str) -> str:
    """A message already received is received once more, as a second consumer may receive it; its new receipt handle.

    SQS may hand one message to two receivers, or to another once its visibility timeout ran out under the
    first; the second receive counts towards maxReceiveCount, starts a new visibility timeout and gives a
    new receipt handle, with which alone SQS promises to delete the message
    (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/working-with-visibility-timeouts.html,
    https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_DeleteMessage.html).
    Done in moto's backend, as its ReceiveMessage marks a message received, on the clock moto was given.
    """
    queue = _queue(queue_arn)
    with REQUEST_LOCK:
        message = next((message for message in queue._messages if message.id == message_id), None)
        if message is None:
            raise KeyError(f"no message {message_id} on {queue_arn}")
        message.mark_received(visibility_timeout=queue.visibility_timeout)
        queue.pending_messages.add(message)
        return str(message.receipt_handle)


def _queue(queue_arn: str) -> Any:
    _, _, _, region, account, name = queue_arn.split(":")
    return sqs_backends[account][region].get_queue(name)


Invoke = Callable[[dict[str, Any]], Any]
AroundInvoke = Callable[[dict[str, Any], Invoke], Any]
"""Called for each batch with the event and the invocation: returns the function's response (calling the
invocation, or not), or raises as a function error does; the whole batch then stays on the queue."""
Settles = Callable[[dict[str, Any]], bool]
"""Called for each record the function reported processed: True to delete its message, False to leave it."""


@dataclass
class BatchOutcome:
    received: int
    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    not_deleted: list[str] = field(default_factory=list)
    """Succeeded, but `settles` kept their delete from happening: they come back after the visibility timeout."""
    raised: BaseException | None = None


@dataclass
class SqsPoller:
    """Polls one queue for one function, batch by batch, on `clock` (the clock moto's SQS reads)."""

    sqs: "SQSClient"
    queue_url: str
    mapping: SqsMapping
    invoke: Invoke
    region: str = "us-east-1"
    clock: Clock = field(default_factory=WallClock)
    around_invoke: AroundInvoke | None = None
    settles: Settles | None = None
    visibility_timeout: int = field(init=False, default=30)

    def __post_init__(self) -> None:
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["VisibilityTimeout"])
        self.visibility_timeout = int(attributes["Attributes"]["VisibilityTimeout"])

    def poll(self, wait: bool = False) -> BatchOutcome | None:
        """Gather one batch and invoke the function with it; None when the queue had nothing visible."""
        messages = self._gather(wait)
        if not messages:
            return None
        records = [self._record(message) for message in messages]
        event = {"Records": records}
        ids = [message["MessageId"] for message in messages]
        outcome = BatchOutcome(received=len(messages))
        try:
            response = self.invoke(event) if self.around_invoke is None else self.around_invoke(event, self.invoke)
            failed = self._failed_ids(response, ids)
        except Exception as error:  # a function error: the whole batch stays on the queue
            failed, outcome.raised = set(ids), error
        handles = {message["MessageId"]: message["ReceiptHandle"] for message in messages}
        outcome.failed = [message_id for message_id in ids if message_id in failed]
        outcome.succeeded = [message_id for message_id in ids if message_id not in failed]
        if self.settles is not None:
            kept = [record for record in records if record["messageId"] not in failed and not self.settles(record)]
            outcome.not_deleted = [record["messageId"] for record in kept]
        deleted = [message_id for message_id in outcome.succeeded if message_id not in outcome.not_deleted]
        for start in range(0, len(deleted), SQS_RECEIVE_LIMIT):
            chunk = deleted[start : start + SQS_RECEIVE_LIMIT]
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(index), "ReceiptHandle": handles[mid]} for index, mid in enumerate(chunk)],
            )
        return outcome

    def next_batch_at(self, whole_window: bool = True) -> float | None:
        """When this event source would next invoke, on its clock; None when the queue holds no message.

        At once when a full batch is visible; otherwise when the batching window that opens with the
        earliest message to be visible closes (`whole_window` False: as soon as that message is visible).
        """
        moments = visibility_moments(self.mapping.queue_arn)
        if not moments:
            return None
        now = self.clock.now()
        if (
            len(moments) >= self.mapping.batch_size
            and sum(moment <= now for moment in moments) >= self.mapping.batch_size
        ):
            return now
        return min(moments) + (self.mapping.batching_window_seconds if whole_window else 0)

    def next_visible_at(self) -> float | None:
        """The earliest moment a message on the queue is, or will be, visible; None when it holds none."""
        return min(visibility_moments(self.mapping.queue_arn), default=None)

    def _gather(self, wait: bool) -> list["MessageTypeDef"]:
        deadline = self.clock.now() + (self.mapping.batching_window_seconds if wait else 0)
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
            if not received and self.clock.now() >= deadline:
                break
            if not received:
                self.clock.sleep(0.05)
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
