"""The consumer's queue: bringing an SQS message back sooner than its visibility timeout.

- ChangeMessageVisibility: the new timeout counts from the call, between 0 s and 12 h:
  https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibility.html
- a queue's URL from its name, account and Region (`https://sqs.<region>.amazonaws.com/<account>/<name>`):
  https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-queue-message-identifiers.html
- a Lambda SQS record carries its queue's ARN (`eventSourceARN`) and the message's receipt handle:
  https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

_DNS_SUFFIX = {"aws": "amazonaws.com", "aws-cn": "amazonaws.com.cn"}


def queue_url(queue_arn: str) -> str:
    """`arn:<partition>:sqs:<region>:<account>:<name>` as the queue's URL, with no request to SQS."""
    parts = queue_arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise ValueError(f"not an SQS queue ARN: {queue_arn!r}")
    _, partition, _, region, account, name = parts
    return f"https://sqs.{region}.{_DNS_SUFFIX.get(partition, 'amazonaws.com')}/{account}/{name}"


class MessageVisibility:
    def __init__(self, client: "SQSClient") -> None:
        self._client = client

    def retry_after(self, queue_arn: str, receipt_handle: str, seconds: int) -> None:
        """Make the received message visible again `seconds` from now (instead of the queue's timeout)."""
        self._client.change_message_visibility(
            QueueUrl=queue_url(queue_arn), ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
        )
