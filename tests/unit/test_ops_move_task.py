"""`redrive consumer-dlq` on AWS: SQS's message move task, started once, polled until done.

moto has no StartMessageMoveTask, so these calls are stubbed with botocore's Stubber, in the shapes the
SQS API reference gives:
https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_StartMessageMoveTask.html
"""

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from ops.commands import redrive_consumer_dlq
from ops.target import Target

DLQ_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/rideonce-dev-ConsumerDeadLetterQueue-X"
QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/rideonce-dev-RideEventsQueue-X"
DLQ_ARN = "arn:aws:sqs:eu-west-1:123456789012:rideonce-dev-ConsumerDeadLetterQueue-X"
QUEUE_ARN = "arn:aws:sqs:eu-west-1:123456789012:rideonce-dev-RideEventsQueue-X"
DEPTH = {
    "QueueUrl": DLQ_URL,
    "AttributeNames": ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
}


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch) -> tuple[Target, Stubber]:
    """A deployed stack's target whose SQS client is stubbed (no account here)."""
    session = boto3.session.Session(region_name="eu-west-1")
    sqs = session.client("sqs")
    stubber = Stubber(sqs)
    monkeypatch.setattr(session, "client", lambda service, **_: sqs)
    outputs = {"ConsumerDeadLetterQueueUrl": DLQ_URL, "RideEventsQueueUrl": QUEUE_URL}
    return Target(name="stack rideonce-dev", api_url="", outputs=outputs, session=session), stubber


def parked(stubber: Stubber, count: int) -> None:
    stubber.add_response(
        "get_queue_attributes",
        {"Attributes": {"ApproximateNumberOfMessages": str(count), "ApproximateNumberOfMessagesNotVisible": "0"}},
        DEPTH,
    )
    stubber.add_response(
        "get_queue_attributes",
        {"Attributes": {"QueueArn": DLQ_ARN}},
        {"QueueUrl": DLQ_URL, "AttributeNames": ["QueueArn"]},
    )


def tasks(stubber: Stubber, *results: dict[str, Any]) -> None:
    stubber.add_response("list_message_move_tasks", {"Results": list(results)}, {"SourceArn": DLQ_ARN, "MaxResults": 1})


def test_apply_starts_one_move_task_to_the_consumer_queue_and_waits_for_it(deployed: tuple[Target, Stubber]) -> None:
    target, stubber = deployed
    # Given three messages parked and no task running
    parked(stubber, 3)
    tasks(stubber)
    # Then a task is started from the DLQ to RideEventsQueue, and polled until it completes
    stubber.add_response(
        "get_queue_attributes",
        {"Attributes": {"QueueArn": QUEUE_ARN}},
        {"QueueUrl": QUEUE_URL, "AttributeNames": ["QueueArn"]},
    )
    stubber.add_response(
        "start_message_move_task", {"TaskHandle": "handle-1"}, {"SourceArn": DLQ_ARN, "DestinationArn": QUEUE_ARN}
    )
    tasks(stubber, {"TaskHandle": "handle-1", "Status": "COMPLETED", "ApproximateNumberOfMessagesMoved": 3})
    # When the redrive runs with --apply
    with stubber:
        report = redrive_consumer_dlq(target, apply=True)
        stubber.assert_no_pending_responses()
    assert report.counts == {"parked": 3, "moved": 3}
    assert ["started message move task", "handle-1"] in report.rows
    assert report.ok


def test_a_second_run_while_the_task_runs_starts_none(deployed: tuple[Target, Stubber]) -> None:
    target, stubber = deployed
    # Given a task already moving the queue's messages
    parked(stubber, 2)
    tasks(stubber, {"TaskHandle": "handle-1", "Status": "RUNNING"})
    # When the redrive runs again with --apply (no start_message_move_task is stubbed: a call would fail)
    with stubber:
        report = redrive_consumer_dlq(target, apply=True)
        stubber.assert_no_pending_responses()
    # Then it reports the running task and starts nothing
    assert report.counts["moved"] == 0
    assert ["a move task is already running", "handle-1"] in report.rows


def test_a_dry_run_starts_nothing(deployed: tuple[Target, Stubber]) -> None:
    target, stubber = deployed
    parked(stubber, 4)
    tasks(stubber)
    with stubber:
        report = redrive_consumer_dlq(target, apply=False)
        stubber.assert_no_pending_responses()
    assert report.counts == {"parked": 4, "moved": 0}
    assert ["would start a message move task for", "4 messages"] in report.rows
