"""The simulated consumer queue keeps the SQS semantics the ConsumerFunction relies on, in simulated time.

https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/working-with-visibility-timeouts.html
https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues
"""

import pytest

from local.chaos.simqueue import SimClock, SimQueue, SimSqs, lambda_record

VISIBILITY = 120.0
MAX_RECEIVES = 3


def queues() -> tuple[SimClock, SimQueue, SimQueue]:
    clock = SimClock(1_000.0)
    dead_letter = SimQueue(clock, 0, 0, None)
    return clock, SimQueue(clock, VISIBILITY, MAX_RECEIVES, dead_letter), dead_letter


def test_a_received_message_is_hidden_for_the_visibility_timeout_then_received_again() -> None:
    clock, queue, _ = queues()
    queue.send("body", "subject", poison=False)
    # When it is received
    (first,) = queue.receive(10)
    # Then nobody else receives it until its visibility timeout has passed
    assert queue.receive(10) == []
    clock.advance(VISIBILITY - 1)
    assert queue.receive(10) == []
    clock.advance(1)
    (again,) = queue.receive(10)
    # And the second receive is counted, with a new receipt handle
    assert again is first
    assert again.receive_count == 2
    assert lambda_record(again, "arn:queue")["attributes"]["ApproximateReceiveCount"] == "2"


def test_messages_come_in_send_order_and_a_delayed_one_after_its_delay() -> None:
    clock, queue, _ = queues()
    queue.send("held", "a", poison=False, delay=30)
    queue.send("b", "b", poison=False)
    queue.send("c", "c", poison=False)
    assert [message.body for message in queue.receive(10)] == ["b", "c"]
    clock.advance(30)
    assert [message.body for message in queue.receive(10)] == ["held"]


def test_change_message_visibility_with_the_newest_receipt_handle_sets_when_it_returns() -> None:
    clock, queue, _ = queues()
    queue.send("early", "subject", poison=False)
    (message,) = queue.receive(10)
    handle = lambda_record(message, "arn:queue")["receiptHandle"]
    # When the consumer asks for the message back in 5 s, through the SQS call it makes
    SimSqs(queue).change_message_visibility(QueueUrl="url", ReceiptHandle=handle, VisibilityTimeout=5)
    # Then it is received again after 5 s, not after the queue's 120 s
    clock.advance(5)
    (again,) = queue.receive(10)
    # And the old receipt handle no longer counts
    with pytest.raises(ValueError, match="ReceiptHandleIsInvalid"):
        queue.change_visibility(handle, 0)
    assert again.receive_count == 2


def test_a_message_received_max_receive_count_times_moves_to_the_dead_letter_queue() -> None:
    clock, queue, dead_letter = queues()
    queue.send("refused", "subject", poison=True)
    # Given it was received maxReceiveCount times and never deleted
    for _ in range(MAX_RECEIVES):
        assert len(queue.receive(10)) == 1
        clock.advance(VISIBILITY)
    # When it is due once more
    received = queue.receive(10)
    # Then it is moved to the DLQ at that receive, as SQS and moto do, instead of being received
    assert received == []
    assert (len(queue), queue.moved_to_dead_letter) == (0, 1)
    (parked,) = dead_letter.take_all()
    assert (parked.body, parked.subject, parked.poison) == ("refused", "subject", True)


def test_a_deleted_message_is_never_received_again() -> None:
    clock, queue, _ = queues()
    queue.send("done", "subject", poison=False)
    (message,) = queue.receive(10)
    queue.delete(message)
    clock.advance(VISIBILITY)
    assert queue.receive(10) == []
    assert queue.next_visible_at() is None
