"""`make latency`: early events through moto's queue and the SQS event source, on a simulated clock."""

import pytest

from local import latency


def test_the_traffic_reorders_the_share_asked_for() -> None:
    # Given the traffic of 400 rides with 30% of the deliveries held behind their successor
    deliveries = latency.traffic(rides=400, reordered_share=0.3, seed=1)
    # When the deliveries are counted in the order they enter the queue
    late = latency.reordered_count(deliveries)
    # Then about 30% of them arrive after a later version of their ride, and every event is there once
    assert len(deliveries) == 1600
    assert len({delivery.key for delivery in deliveries}) == 1600
    assert late / len(deliveries) == pytest.approx(0.3, abs=0.05)


@pytest.mark.usefixtures("restore_environment")
def test_early_events_wait_for_their_retry_on_the_simulated_clock_and_none_is_lost() -> None:
    # Given 30 rides with 30% of their deliveries reordered
    # When both ways of retrying an early event run on moto's queue
    honoured, ignored = latency.run(rides=30, reordered_share=0.3, seed=2)
    # Then every event is applied, none parked, in either mode
    for result in (honoured, ignored):
        assert (result.events, result.not_applied, result.parked) == (120, 0, 0)
        assert result.deferred > 0
    # And the consumer's own retries bring an early event back in seconds
    assert honoured.p99 < 10
    # While without them an early event waits out the queue's 120 s visibility timeout, in simulated time
    assert ignored.worst >= 120
