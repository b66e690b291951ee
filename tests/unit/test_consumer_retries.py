"""How soon an early event is tried again, and where its queue is: pure rules, no AWS."""

import pytest

from rideonce.dal.queue import queue_url
from rideonce.logic.consumer import RETRY_CAP_SECONDS, retry_delay


def test_an_early_event_backs_off_from_seconds_to_the_queue_timeout() -> None:
    delays = [retry_delay(count) for count in range(1, 7)]
    assert delays == [1, 2, 4, 120, 120, 120]
    assert max(delays) == RETRY_CAP_SECONDS


def test_a_predecessor_late_by_two_minutes_still_beats_its_successors_last_try() -> None:
    # maxReceiveCount 5: the successor's fifth receive comes after the first four delays
    assert sum(retry_delay(count) for count in range(1, 5)) >= 120


def test_a_missing_receive_count_is_treated_as_the_first() -> None:
    assert retry_delay(0) == retry_delay(1) == 1


def test_the_queue_url_comes_from_the_records_queue_arn() -> None:
    arn = "arn:aws:sqs:eu-west-1:123456789012:rideonce-RideEventsQueue-Ab12"
    assert queue_url(arn) == "https://sqs.eu-west-1.amazonaws.com/123456789012/rideonce-RideEventsQueue-Ab12"
    assert queue_url("arn:aws-cn:sqs:cn-north-1:1:q") == "https://sqs.cn-north-1.amazonaws.com.cn/1/q"


@pytest.mark.parametrize("arn", ["", "arn:aws:sns:us-east-1:1:topic", "not:an:arn"])
def test_anything_but_a_queue_arn_is_refused(arn: str) -> None:
    with pytest.raises(ValueError, match="not an SQS queue ARN"):
        queue_url(arn)
