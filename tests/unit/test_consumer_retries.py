"""How soon an early event is tried again, and where its queue is: pure rules, no AWS."""

from datetime import timedelta

import pytest

from rideonce.dal.queue import queue_url
from rideonce.logic.consumer import SQS_MAX_VISIBILITY_SECONDS, EarlyRetries, early_retries

TEMPLATE_DEFAULTS = early_retries(10, reconcile_period=timedelta(minutes=5), reconcile_grace=timedelta(minutes=15))


def test_an_early_event_is_tried_again_within_seconds_doubling() -> None:
    assert [TEMPLATE_DEFAULTS.delay(count) for count in range(1, 9)] == [1, 2, 4, 8, 16, 32, 64, 128]


def test_the_last_try_comes_after_the_reconciler_could_republish_a_lost_predecessor() -> None:
    # Given the template's defaults: the reconciler runs every 5 minutes, 15 minutes behind the commits
    # When an early event has been deferred on every receive but the last
    waits = [TEMPLATE_DEFAULTS.delay(count) for count in range(1, 10)]
    # Then its tenth and last receive comes 25 minutes (grace + 2 periods) plus one visibility timeout
    # after its first: by then the second run that judges the lost change has republished it
    assert sum(waits) == 25 * 60 + 120
    assert TEMPLATE_DEFAULTS.patience_seconds == 25 * 60 + 120


def test_a_predecessor_late_by_four_minutes_costs_its_successor_at_most_twice_that() -> None:
    tries, waited = [], 0
    for count in range(1, 9):
        waited += TEMPLATE_DEFAULTS.delay(count)
        tries.append(waited)
    first_try_after = next(moment for moment in tries if moment >= 240)
    assert first_try_after <= 2 * 240


def test_no_wait_exceeds_what_sqs_allows() -> None:
    longest = early_retries(3, reconcile_period=timedelta(minutes=60), reconcile_grace=timedelta(minutes=600))
    assert max(longest.delay(count) for count in range(1, 4)) == SQS_MAX_VISIBILITY_SECONDS
    many = EarlyRetries(max_receive_count=20, patience_seconds=60)
    assert max(many.delay(count) for count in range(1, 21)) == SQS_MAX_VISIBILITY_SECONDS


def test_a_patience_shorter_than_the_doubling_keeps_the_doubling() -> None:
    short = EarlyRetries(max_receive_count=5, patience_seconds=3)
    assert [short.delay(count) for count in range(1, 5)] == [1, 2, 4, 8]


def test_a_missing_receive_count_is_treated_as_the_first() -> None:
    assert TEMPLATE_DEFAULTS.delay(0) == TEMPLATE_DEFAULTS.delay(1) == 1


def test_the_queue_url_comes_from_the_records_queue_arn() -> None:
    arn = "arn:aws:sqs:eu-west-1:123456789012:rideonce-RideEventsQueue-Ab12"
    assert queue_url(arn) == "https://sqs.eu-west-1.amazonaws.com/123456789012/rideonce-RideEventsQueue-Ab12"
    assert queue_url("arn:aws-cn:sqs:cn-north-1:1:q") == "https://sqs.cn-north-1.amazonaws.com.cn/1/q"


@pytest.mark.parametrize("arn", ["", "arn:aws:sns:us-east-1:1:topic", "not:an:arn"])
def test_anything_but_a_queue_arn_is_refused(arn: str) -> None:
    with pytest.raises(ValueError, match="not an SQS queue ARN"):
        queue_url(arn)
