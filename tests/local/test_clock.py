"""moto's SQS on the local stack's clock: visibility, ChangeMessageVisibility, delays and the DLQ, without waiting.

The queue tests run on a `SimulatedClock` installed in moto: waiting out the queue's 120 s visibility
timeout for real would take minutes, so the longest of them also check that this machine's time hardly
moved. Then the event source's hooks on that queue, and the whole pipeline on a simulated clock.
"""

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.aws.messaging import create_queues
from local.aws.moto_patches import clock_installed
from local.aws.stack import LocalStack
from local.aws.template import Stack
from local.emulators.clock import SimulatedClock, WallClock
from local.emulators.event_source import SqsPoller, receive_again, visibility_moments
from local.emulators.pipeline import Pipeline
from tests.support.consumer import ConsumerHarness, consumer_poller, envelope, lifecycle

START = 1_800_000_000.0


@pytest.fixture
def clock() -> Iterator[SimulatedClock]:
    simulated = SimulatedClock(START)
    with clock_installed(simulated):
        yield simulated


@pytest.fixture
def queues(stack: Stack, clock: SimulatedClock) -> dict[str, str]:
    return create_queues(boto3.client("sqs"), stack)


def receive(url: str) -> list[dict[str, Any]]:
    messages = boto3.client("sqs").receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageSystemAttributeNames=["All"]
    )
    return messages.get("Messages", [])  # type: ignore[return-value]


def test_a_received_message_stays_invisible_until_the_clock_passes_its_visibility_timeout(
    stack: Stack, clock: SimulatedClock, queues: dict[str, str]
) -> None:
    # Given a message received and not deleted from the queue with the template's 120 s visibility timeout
    started = time.monotonic()
    url = queues["RideEventsQueue"]
    timeout = int(stack.properties("RideEventsQueue")["VisibilityTimeout"])
    boto3.client("sqs").send_message(QueueUrl=url, MessageBody="ride")
    assert len(receive(url)) == 1
    # When the clock moves to just before the timeout, then past it
    clock.advance(timeout - 1)
    before = receive(url)
    clock.advance(1.01)
    after = receive(url)
    # Then the message was invisible until then, and is received a second time after it
    assert before == []
    assert [m["Body"] for m in after] == ["ride"]
    assert after[0]["Attributes"]["ApproximateReceiveCount"] == "2"
    assert int(after[0]["Attributes"]["SentTimestamp"]) == START * 1000
    assert time.monotonic() - started < 5


def test_change_message_visibility_shortens_the_wait_in_the_clocks_time(
    clock: SimulatedClock, queues: dict[str, str]
) -> None:
    # Given a received message
    url = queues["RideEventsQueue"]
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=url, MessageBody="early")
    (message,) = receive(url)
    # When the receiver makes it visible again in 2 s instead of 120 s
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=2)
    clock.advance(1.9)
    too_soon = receive(url)
    clock.advance(0.2)
    # Then it is back after 2 s of the clock
    assert too_soon == []
    assert [m["Body"] for m in receive(url)] == ["early"]


def test_a_delayed_message_appears_when_the_clock_reaches_its_delay(
    clock: SimulatedClock, queues: dict[str, str]
) -> None:
    # Given a message sent with a 15 minute delay
    url = queues["RideEventsQueue"]
    boto3.client("sqs").send_message(QueueUrl=url, MessageBody="later", DelaySeconds=900)
    # When the clock moves past the delay
    hidden = receive(url)
    clock.advance(900.01)
    # Then it can be received, and not before
    assert hidden == []
    assert [m["Body"] for m in receive(url)] == ["later"]


def test_the_dlq_receives_a_message_after_max_receive_count_receives(
    stack: Stack, clock: SimulatedClock, queues: dict[str, str]
) -> None:
    # Given a message received maxReceiveCount times, never deleted
    started = time.monotonic()
    url, dlq = queues["RideEventsQueue"], queues["ConsumerDeadLetterQueue"]
    props = stack.properties("RideEventsQueue")
    max_receives, timeout = int(props["RedrivePolicy"]["maxReceiveCount"]), int(props["VisibilityTimeout"])
    boto3.client("sqs").send_message(QueueUrl=url, MessageBody="poison")
    counts = []
    for _ in range(max_receives):
        counts += [m["Attributes"]["ApproximateReceiveCount"] for m in receive(url)]
        clock.advance(timeout + 0.01)
    # When it is visible again and a receive comes
    last = receive(url)
    # Then SQS moved it to the dead-letter queue instead of handing it out once more
    assert counts == [str(count) for count in range(1, max_receives + 1)]
    assert last == []
    assert [m["Body"] for m in receive(dlq)] == ["poison"]
    assert time.monotonic() - started < 5


def test_each_message_s_visibility_moment_is_when_moto_first_shows_it(
    stack: Stack, clock: SimulatedClock, queues: dict[str, str]
) -> None:
    # Given a message received and given 10 s more, then one sent 1 s later, and one delayed by 30 s
    sqs, url, arn = boto3.client("sqs"), queues["RideEventsQueue"], stack.get_att("RideEventsQueue", "Arn")
    sqs.send_message(QueueUrl=url, MessageBody="received")
    (received,) = receive(url)
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=received["ReceiptHandle"], VisibilityTimeout=10)
    clock.advance(1)
    sqs.send_message(QueueUrl=url, MessageBody="plain")
    sqs.send_message(QueueUrl=url, MessageBody="delayed", DelaySeconds=30)
    # When the moments are read
    moments = visibility_moments(arn)
    # Then each is the latest of its send, its delay's end and its visibility timeout's end (+1 ms)
    assert moments == pytest.approx([START + 10.001, START + 1, START + 31], abs=1e-6)
    # And moto shows each message from its moment on (the plain one's is now), and not a moment before
    shown = []
    for moment in sorted(moments):
        if moment > clock.now():
            clock.advance_to(moment - 0.002)
            assert receive(url) == []
            clock.advance_to(moment)
        shown += [message["Body"] for message in receive(url)]
    assert shown == ["plain", "received", "delayed"]
    with pytest.raises(KeyError, match="no message unknown"):
        receive_again(arn, "unknown")


def test_a_second_receive_counts_towards_the_dlq_and_restarts_the_visibility_timeout(
    stack: Stack, clock: SimulatedClock, queues: dict[str, str]
) -> None:
    # Given a message received once, and received again (by a second consumer) 60 s later
    url = queues["RideEventsQueue"]
    props = stack.properties("RideEventsQueue")
    max_receives, timeout = int(props["RedrivePolicy"]["maxReceiveCount"]), int(props["VisibilityTimeout"])
    sent = boto3.client("sqs").send_message(QueueUrl=url, MessageBody="twice")
    (first,) = receive(url)
    clock.advance(60)
    handle = receive_again(stack.get_att("RideEventsQueue", "Arn"), sent["MessageId"])
    # Then it has a new receipt handle, stays hidden for a whole timeout from the second receive
    assert handle != first["ReceiptHandle"]
    clock.advance(timeout - 30)
    assert receive(url) == []
    clock.advance(30.01)
    counts = [m["Attributes"]["ApproximateReceiveCount"] for m in receive(url)]
    # And each receive after counts from 2: maxReceiveCount receives in all, the second one's included
    for _ in range(max_receives - 3):
        clock.advance(timeout + 0.01)
        counts += [m["Attributes"]["ApproximateReceiveCount"] for m in receive(url)]
    clock.advance(timeout + 0.01)
    assert counts == [str(count) for count in range(3, max_receives + 1)]
    assert receive(url) == []
    assert [m["MessageId"] for m in receive(queues["ConsumerDeadLetterQueue"])] == [sent["MessageId"]]


def test_a_long_poll_on_a_simulated_clock_is_refused_not_hung(clock: SimulatedClock, queues: dict[str, str]) -> None:
    # Given an empty queue on a clock only its driver moves
    # When a receive asks to wait for messages, Then it fails at once instead of waiting forever
    with pytest.raises(Exception, match="WaitTimeSeconds=0"):
        boto3.client("sqs").receive_message(QueueUrl=queues["RideEventsQueue"], WaitTimeSeconds=5)


def test_leaving_the_block_gives_moto_its_own_clock_back(stack: Stack) -> None:
    # Given a queue on a simulated clock set a day behind this machine's
    sqs = boto3.client("sqs")
    with clock_installed(SimulatedClock(time.time() - 86_400)):
        url = create_queues(sqs, stack)["RideEventsQueue"]
        sqs.send_message(QueueUrl=url, MessageBody="yesterday")
    # When a message is sent after the block
    sqs.send_message(QueueUrl=url, MessageBody="today")
    # Then it carries this machine's time again
    stamps = {m["Body"]: int(m["Attributes"]["SentTimestamp"]) / 1000 for m in receive(url)}
    assert stamps["yesterday"] < time.time() - 86_000
    assert abs(stamps["today"] - time.time()) < 60


def test_a_scaled_wall_clock_runs_faster_and_sleeps_shorter() -> None:
    # Given a clock at a hundredth of this machine's waits
    clock = WallClock(0.01)
    before, started = clock.now(), time.monotonic()
    # When it sleeps ten of its seconds
    clock.sleep(10)
    # Then ten of its seconds passed in about a tenth of a second here
    assert clock.now() - before >= 10
    assert time.monotonic() - started < 1


# ---------------------------------------------------------------- the event source's hooks, on moto's queue


@pytest.fixture
def poller(stack: Stack, monkeypatch: pytest.MonkeyPatch, clock: SimulatedClock) -> SqsPoller:
    return consumer_poller(stack, monkeypatch, clock)


def test_around_invoke_sees_each_batch_and_a_crash_there_leaves_the_batch_on_the_queue(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, clock: SimulatedClock, poller: SqsPoller
) -> None:
    # Given a ride's first event and an invocation hook that crashes the first invocation after the function ran
    harness = ConsumerHarness(stack, monkeypatch)
    boto3.client("sqs").send_message(QueueUrl=poller.queue_url, MessageBody=envelope(lifecycle("ride-1")[0]))
    seen: list[list[str]] = []

    def crash_once(event: dict[str, Any], invoke: Any) -> Any:
        seen.append([record["attributes"]["ApproximateReceiveCount"] for record in event["Records"]])
        response = invoke(event)
        if len(seen) == 1:
            raise RuntimeError("the function's environment died after its work, before answering")
        return response

    poller.around_invoke = crash_once
    # When the event source polls, and again after the visibility timeout
    crashed = poller.poll()
    assert poller.poll() is None
    clock.advance(poller.visibility_timeout + 0.01)
    retried = poller.poll()
    # Then the crashed batch came back once, and the consumer's dedup kept the effect single
    assert crashed is not None
    assert crashed.raised is not None
    assert retried is not None
    assert (len(retried.succeeded), retried.raised) == (1, None)
    assert seen == [["1"], ["2"]]
    assert harness.projection("ride-1") == {"version": 1, "status": "REQUESTED"}
    assert poller.next_visible_at() is None


def test_a_message_not_settled_is_not_deleted_and_returns_after_the_visibility_timeout(
    clock: SimulatedClock, poller: SqsPoller
) -> None:
    # Given a hook that loses the delete of every message on its first receive
    boto3.client("sqs").send_message(QueueUrl=poller.queue_url, MessageBody=envelope(lifecycle("ride-1")[0]))
    poller.settles = lambda record: record["attributes"]["ApproximateReceiveCount"] != "1"
    # When the function processes it
    first = poller.poll()
    # Then it succeeded but stayed on the queue, invisible until the timeout, and was deleted on its return
    assert first is not None
    assert len(first.succeeded) == 1
    assert first.not_deleted == first.succeeded
    assert poller.next_batch_at(whole_window=False) == pytest.approx(clock.now() + poller.visibility_timeout, abs=0.01)
    clock.advance(poller.visibility_timeout + 0.01)
    second = poller.poll()
    assert second is not None
    assert (len(second.succeeded), second.not_deleted) == (1, [])
    assert poller.next_visible_at() is None


# ---------------------------------------------------------------- the whole pipeline on a simulated clock


@pytest.mark.e2e
def test_a_pipeline_on_a_simulated_clock_retries_a_message_to_the_dlq_without_waiting(
    restore_environment: None, tmp_path: Path
) -> None:
    # Given the local stack's pipeline on a simulated clock, and a message the consumer can never apply
    local = LocalStack.start(outputs_file=tmp_path / "outputs.json")
    try:
        clock = SimulatedClock(time.time())
        with Pipeline(local, clock) as pipeline:
            sqs = boto3.client("sqs")
            sqs.send_message(QueueUrl=local.stack.ref("RideEventsQueue"), MessageBody="not an event")
            props = local.stack.properties("RideEventsQueue")
            timeout, receives = int(props["VisibilityTimeout"]), int(props["RedrivePolicy"]["maxReceiveCount"])
            started, began = clock.now(), time.monotonic()
            # When it runs until quiet
            pipeline.run_until_quiet(timeout_seconds=60)
            # Then the message was received maxReceiveCount times, a visibility timeout apart on the clock, then parked
            stats = pipeline.consumer_stats["ConsumerFunction"]
            assert (stats.deliveries, stats.failed, stats.succeeded) == (receives, receives, 0)
            assert clock.now() - started >= (receives - 1) * timeout
            dead = sqs.receive_message(QueueUrl=local.stack.ref("ConsumerDeadLetterQueue")).get("Messages", [])
            assert [message["Body"] for message in dead] == ["not an event"]
            assert time.monotonic() - began < 30
    finally:
        local.stop()
