"""Hypothesis on the SQS consumer: any bodies in a batch; only the messages that cannot be applied fail."""

import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import event as event_label
from hypothesis import strategies as st

from local.aws.context import FakeLambdaContext
from local.aws.template import Stack
from rideonce.handlers import consumer
from rideonce.logic.consumer import PoisonMessageError, parse_message
from tests.fuzz.strategies import JSON, broken
from tests.support.consumer import ConsumerHarness, envelope, lifecycle, sqs_event

pytestmark = pytest.mark.fuzz

_rides = itertools.count()
TEMPLATE = json.loads(envelope(lifecycle("template")[0]))
HOSTILE_BODIES = ['{"detail":{"metadata":{"aggregateId":"a","version":Infinity}}}', "[" * 5000, '{"detail":' * 3000, ""]
HOSTILE = st.sampled_from(HOSTILE_BODIES)
JUNK = (
    st.text(max_size=200)
    | JSON.map(json.dumps)
    | broken(TEMPLATE).map(json.dumps)
    | broken(TEMPLATE["detail"]).map(lambda detail: json.dumps({**TEMPLATE, "detail": detail}))
    | HOSTILE
)


@pytest.fixture
def harness(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> ConsumerHarness:
    """Built once for all examples: each example's good messages are first events of rides never seen."""
    return ConsumerHarness(stack, monkeypatch)


def readable(body: str) -> bool:
    try:
        parse_message(body)
    except PoisonMessageError:
        return False
    return True


@settings(max_examples=40, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
@example(layout=[True, False, False, False, False, True], junk=["", *HOSTILE_BODIES, *[""] * 5])
@given(layout=st.lists(st.booleans(), min_size=1, max_size=10), junk=st.lists(JUNK, min_size=10, max_size=10))
def test_a_batch_fails_only_the_messages_that_cannot_be_applied(
    harness: ConsumerHarness, layout: list[bool], junk: list[str]
) -> None:
    # Given a batch mixing first events of new rides (True) with anything else a queue can hold (False)
    good: dict[int, str] = {}
    bodies: list[str] = []
    for index, is_good in enumerate(layout):
        if is_good:
            ride_id = f"ride-{next(_rides)}"
            good[index] = ride_id
            bodies.append(envelope(lifecycle(ride_id)[0]))
        else:
            bodies.append(junk[index])
    event = sqs_event(*bodies)
    keys_before = set(harness.processed_keys())
    # When the consumer handles it
    response: dict[str, Any] = dict(consumer.handler(event, FakeLambdaContext(function_name="ConsumerFunction")))
    # Then every good message was applied, and every unreadable one failed on its own
    failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    event_label(f"{len(failed)} of {len(bodies)} failed")
    for index, record in enumerate(event["Records"]):
        if index in good:
            assert record["messageId"] not in failed
        elif not readable(record["body"]):
            assert record["messageId"] in failed
    # And the only keys written are those of readable events
    new_keys = set(harness.processed_keys()) - keys_before
    assert {f"ride#{ride_id}#v1" for ride_id in good.values()} <= new_keys
    readable_keys = {parse_message(body).metadata.idempotency_key for body in bodies if readable(body)}
    assert new_keys <= readable_keys
