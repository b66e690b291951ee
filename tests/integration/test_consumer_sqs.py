"""The consumer behind its queue: partial batch responses, retries and the DLQ, as the template sets them."""

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from local.aws.functions import functions
from local.aws.moto_patches import clock_installed
from local.aws.template import Stack
from local.emulators.clock import SimulatedClock, WallClock
from local.emulators.event_source import SqsPoller
from tests.support.consumer import ConsumerHarness, consumer_poller, envelope, lifecycle


@pytest.fixture
def clock() -> Iterator[SimulatedClock]:
    """Simulated time for the queue and its event source: a visibility timeout passes when `drain` says so."""
    simulated = SimulatedClock(time.time())
    with clock_installed(simulated):
        yield simulated


@pytest.fixture
def poller(stack: Stack, monkeypatch: pytest.MonkeyPatch, clock: SimulatedClock) -> SqsPoller:
    return consumer_poller(stack, monkeypatch, clock)


def redrive_policy(stack: Stack) -> dict[str, Any]:
    props = stack.properties("RideEventsQueue")
    return props["RedrivePolicy"]  # type: ignore[no-any-return]


def dlq_bodies(stack: Stack) -> list[str]:
    sqs = boto3.client("sqs")
    url = stack.ref("ConsumerDeadLetterQueue")
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [message["Body"] for message in messages]


def drain(poller: SqsPoller, clock: SimulatedClock, limit: int = 50) -> int:
    """Poll until the queue is empty, moving the clock to each failed message's return; return the batches run."""
    batches = 0
    while batches < limit:
        if poller.poll() is not None:
            batches += 1
            continue
        visible_at = poller.next_visible_at()
        if visible_at is None:
            return batches
        clock.advance_to(visible_at)
    raise AssertionError("the queue never drained: an endless retry loop")


def test_the_template_wires_the_consumer_to_its_queue(poller: SqsPoller, stack: Stack) -> None:
    mapping = poller.mapping
    assert mapping.function_logical_id == "ConsumerFunction"
    assert mapping.report_batch_item_failures
    assert 1 <= mapping.batch_size <= 10
    consumer_timeout = functions(stack)["ConsumerFunction"].timeout_seconds
    assert poller.visibility_timeout >= 6 * consumer_timeout
    assert int(redrive_policy(stack)["maxReceiveCount"]) >= 2


def test_a_poison_message_reaches_the_dlq_while_its_batch_succeeds(
    poller: SqsPoller, clock: SimulatedClock, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a ride's events with a poison message among them, all in one batch
    harness = ConsumerHarness(stack, monkeypatch)
    events = lifecycle("ride-1")
    poison = json.dumps({"detail-type": "OutboxEvent", "source": "rideonce.outbox", "detail": {"oops": True}})
    sqs = boto3.client("sqs")
    for body in [envelope(events[0]), poison, *(envelope(event) for event in events[1:])]:
        sqs.send_message(QueueUrl=poller.queue_url, MessageBody=body)
    # When the event source mapping runs until the queue is empty
    first = poller.poll()
    assert first is not None
    assert (first.received, len(first.succeeded), len(first.failed)) == (5, 4, 1)
    drain(poller, clock)
    # Then the ride took effect once and the poison message is parked in the DLQ, whole
    assert harness.charged("rider-1")[1] == 1
    assert harness.projection("ride-1") == {"version": 4, "status": "COMPLETED"}
    assert dlq_bodies(stack) == [poison]


def test_a_gap_that_never_fills_ends_in_the_dlq(
    poller: SqsPoller, clock: SimulatedClock, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given version 3 of a ride whose version 2 never arrives
    harness = ConsumerHarness(stack, monkeypatch)
    events = lifecycle("ride-1")
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=poller.queue_url, MessageBody=envelope(events[0]))
    orphan = envelope(events[2])
    sqs.send_message(QueueUrl=poller.queue_url, MessageBody=orphan)
    # When the mapping runs: the orphan is retried maxReceiveCount times, then parked
    started = clock.now()
    batches = drain(poller, clock)
    # Then, after its retries backed off in simulated time
    assert batches == int(redrive_policy(stack)["maxReceiveCount"])
    assert clock.now() > started
    assert dlq_bodies(stack) == [orphan]
    assert harness.projection("ride-1") == {"version": 1, "status": "REQUESTED"}


def test_an_early_event_comes_back_in_seconds_not_after_the_visibility_timeout(
    poller: SqsPoller, clock: SimulatedClock, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given version 2 of a ride whose version 1 has not arrived
    sqs = boto3.client("sqs")
    events = lifecycle("ride-1")
    sqs.send_message(QueueUrl=poller.queue_url, MessageBody=envelope(events[1]))
    first = poller.poll()
    assert first is not None
    assert len(first.failed) == 1
    # When version 1 arrives meanwhile
    sqs.send_message(QueueUrl=poller.queue_url, MessageBody=envelope(events[0]))
    assert poller.poll() is not None
    # Then version 2 is visible again after its first retry delay (1 s), long before the queue's 120 s
    assert poller.poll() is None, "the early event must stay invisible for a moment"
    clock.advance(0.9)
    assert poller.poll() is None, "its first retry delay is 1 s"
    clock.advance(0.2)
    again = poller.poll()
    assert again is not None
    assert (len(again.succeeded), len(again.failed)) == (1, 0)
    assert ConsumerHarness(stack, monkeypatch).projection("ride-1") == {"version": 2, "status": "ACCEPTED"}


@pytest.fixture
def scaled_clock() -> Iterator[WallClock]:
    """This machine's time, 20 times as fast, for the queue and its event source."""
    scaled = WallClock(0.05)
    with clock_installed(scaled):
        yield scaled


def test_scaled_time_keeps_the_shortened_visibility_shorter_than_the_queue_timeout(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, scaled_clock: WallClock
) -> None:
    # Given a clock scaled by 0.05: the queue's 120 s become 6 s, an early event's first retry (1 s) 50 ms
    poller = consumer_poller(stack, monkeypatch, scaled_clock)
    sqs = boto3.client("sqs")
    poison = json.dumps({"detail-type": "RideCompleted", "source": "rideonce.rides", "detail": {"oops": True}})
    early = envelope(lifecycle("ride-1")[2])
    for body in (poison, early):
        sqs.send_message(QueueUrl=poller.queue_url, MessageBody=body)
    first = poller.poll()
    assert first is not None
    assert len(first.failed) == 2
    # When a moment passes
    time.sleep(0.6)
    # Then only the early event is back; the poison message still waits the (scaled) queue timeout
    messages = sqs.receive_message(QueueUrl=poller.queue_url, MaxNumberOfMessages=10).get("Messages", [])
    assert [message["Body"] for message in messages] == [early]
