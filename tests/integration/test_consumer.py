"""The exactly-once consumer on moto: every test checks the charge and the projection's version."""

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest

from local.aws.template import Stack
from rideonce.dal.consumer import Applied, ApplyResult, EffectStore
from rideonce.dal.dynamo import to_item
from rideonce.handlers import consumer
from rideonce.logic import consumer as consumer_logic
from rideonce.models.consumer import ProcessedKey
from rideonce.models.events import RideEvent
from rideonce.models.ride import Money
from rideonce.services.consumer import RideEventConsumer
from rideonce.settings import ConsumerSettings
from tests.support.consumer import ConsumerHarness, envelope, lifecycle
from tests.support.metrics import metrics_emitted

FARE = Decimal("23.50")


@pytest.fixture
def harness(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> ConsumerHarness:
    return ConsumerHarness(stack, monkeypatch)


def assert_charged_once_and_complete(harness: ConsumerHarness, ride_id: str = "ride-1") -> None:
    assert harness.charged("rider-1") == (FARE, 1)
    assert harness.projection(ride_id) == {"version": 4, "status": "COMPLETED"}


def test_a_ride_lifecycle_in_order_charges_once_and_projects_the_last_version(harness: ConsumerHarness) -> None:
    # Given / When
    failed = harness.deliver(*(envelope(event) for event in lifecycle("ride-1")))
    # Then
    assert failed == []
    assert_charged_once_and_complete(harness)
    assert set(harness.processed_keys()) == {f"ride#ride-1#v{version}" for version in (1, 2, 3, 4)}


def test_each_applied_event_reports_its_lag_from_the_commit_and_a_duplicate_none(
    harness: ConsumerHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an event committed a known time ago
    event = lifecycle("ride-1")[0]
    committed_ago = (datetime.now(UTC) - event.metadata.occurred_at).total_seconds() * 1000
    # When it is applied, then delivered again
    harness.deliver(envelope(event))
    applied = metrics_emitted(capsys.readouterr().out)
    harness.deliver(envelope(event))
    duplicate = metrics_emitted(capsys.readouterr().out)
    # Then the applied delivery reported the lag from the API's commit, the duplicate reported none
    (lag,) = applied["ConsumerLagMilliseconds"]
    assert committed_ago <= lag <= committed_ago + 60_000
    assert "ConsumerLagMilliseconds" not in duplicate
    assert duplicate["DuplicatesDropped"] == [1.0]


def test_processed_keys_expire_after_the_template_ttl(harness: ConsumerHarness, stack: Stack) -> None:
    before = time.time()
    harness.deliver(envelope(lifecycle("ride-1")[0]))
    ttl = int(stack.function_environment("ConsumerFunction")["PROCESSED_KEY_TTL_SECONDS"])
    archive_days = int(stack.parameters["ArchiveRetentionDays"])
    assert ttl > archive_days * 86_400, "keys must outlive the archive, or a replay could meet no key"
    (expires_at,) = harness.processed_keys().values()
    assert before + ttl - 1 <= expires_at <= time.time() + ttl + 1


def test_a_duplicate_in_the_same_batch_is_dropped(harness: ConsumerHarness) -> None:
    events = lifecycle("ride-1")
    # Given PutEvents retried: same detail, a new EventBridge id
    failed = harness.deliver(*(envelope(event) for event in events), envelope(events[3]))
    assert failed == []
    assert_charged_once_and_complete(harness)


def test_a_duplicate_across_batches_is_dropped(harness: ConsumerHarness) -> None:
    events = lifecycle("ride-1")
    harness.deliver(*(envelope(event) for event in events))
    # When the same events arrive again (a rule firing twice, an SQS redelivery)
    failed = harness.deliver(*(envelope(event) for event in events))
    # Then
    assert failed == []
    assert_charged_once_and_complete(harness)


def test_an_archive_replay_is_dropped(harness: ConsumerHarness) -> None:
    events = lifecycle("ride-1")
    harness.deliver(*(envelope(event) for event in events))
    replayed = [envelope(event, replay_name="rides-replay-2026-11-25") for event in reversed(events)]
    assert harness.deliver(*replayed) == []
    assert_charged_once_and_complete(harness)


def test_after_the_key_ttl_a_redelivery_still_charges_once(
    harness: ConsumerHarness, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given every key of the ride expired but not deleted (moto, like DynamoDB for up to days, keeps it)
    events = lifecycle("ride-1")
    harness.deliver(*(envelope(event) for event in events))
    ttl = int(stack.function_environment("ConsumerFunction")["PROCESSED_KEY_TTL_SECONDS"])
    later = datetime.now(UTC) + timedelta(seconds=ttl + 60)
    monkeypatch.setattr(consumer.consumer(), "_clock", lambda: later)
    assert all(expires < later.timestamp() for expires in harness.processed_keys().values())
    # When the completion is redelivered
    assert harness.deliver(envelope(events[3])) == []
    # Then the projection's version still stops it
    assert_charged_once_and_complete(harness)


def test_an_expired_key_counts_as_absent(harness: ConsumerHarness, stack: Stack) -> None:
    # Given an expired, undeleted key for an event whose effect is not in the projection
    event = lifecycle("ride-1")[0]
    now = int(time.time())
    store = consumer.consumer()._store
    stale = ProcessedKey(
        idempotency_key=event.metadata.idempotency_key,
        ride_id="ride-1",
        version=1,
        event_type=event.metadata.event_type,
        processed_at=datetime.now(UTC) - timedelta(days=40),
        expires_at=now - 1,
    )
    harness.ddb.put_item(
        TableName=stack.name_of("ProcessedKeysTable"),
        Item=to_item(stale),
    )
    # When the event is applied
    fresh = stale.model_copy(update={"expires_at": now + 3_600, "processed_at": datetime.now(UTC)})
    # Then the expired key does not block it, and is replaced
    assert store.apply(event, fresh, None, now).result is ApplyResult.APPLIED
    assert harness.processed_keys() == {event.metadata.idempotency_key: now + 3_600}
    assert harness.projection("ride-1") == {"version": 1, "status": "REQUESTED"}


def test_out_of_order_arrival_waits_for_the_predecessor(harness: ConsumerHarness) -> None:
    events = lifecycle("ride-1")
    # Given the completion arrives first
    first = harness.deliver(envelope(events[3]))
    assert len(first) == 1, "an early event must be reported failed, to be retried"
    assert harness.projection("ride-1") is None
    assert harness.charged("rider-1") == (Decimal(0), 0)
    # When the others arrive (reversed, in one batch), then the completion again
    assert harness.deliver(*(envelope(event) for event in reversed(events[:3]))) == []
    assert harness.deliver(*first) == []
    # Then everything was applied once, in order
    assert_charged_once_and_complete(harness)


def test_a_gap_that_never_fills_keeps_failing_without_effects(harness: ConsumerHarness) -> None:
    events = lifecycle("ride-1")
    harness.deliver(envelope(events[0]))
    for _ in range(5):
        assert len(harness.deliver(envelope(events[2]))) == 1
    assert harness.projection("ride-1") == {"version": 1, "status": "REQUESTED"}


def test_a_poison_message_fails_alone(harness: ConsumerHarness) -> None:
    events = lifecycle("ride-1")
    poison = '{"detail-type": "OutboxEvent", "detail": {"metadata": {"version": "four"}}}'
    failed = harness.deliver(envelope(events[0]), poison, *(envelope(event) for event in events[1:]))
    assert failed == [poison]
    assert_charged_once_and_complete(harness)


class StoreThatWaitsForItsTwin(EffectStore):
    """An effect store whose write waits until a second consumer is about to write too: the race, forced."""

    def __init__(self, settings: ConsumerSettings, both_ready: threading.Barrier) -> None:
        super().__init__(
            boto3.client("dynamodb"),
            settings.processed_keys_table_name,
            settings.ride_projection_table_name,
            settings.rider_accounts_table_name,
        )
        self._both_ready = both_ready

    def apply(self, event: RideEvent, key: ProcessedKey, charge: Money | None, now: int) -> Applied:
        self._both_ready.wait(timeout=5)
        return super().apply(event, key, charge, now)


def test_two_consumers_with_the_same_message_at_once_charge_once(harness: ConsumerHarness) -> None:
    """Two execution environments with one message (SQS delivered it twice): each its own consumer."""
    # Given a ride ready to complete, and two consumers that both reach their write before either makes it
    events = lifecycle("ride-1")
    harness.deliver(*(envelope(event) for event in events[:3]))
    both_ready = threading.Barrier(2)
    settings = ConsumerSettings.from_env()
    consumers = [
        RideEventConsumer(StoreThatWaitsForItsTwin(settings, both_ready), settings.processed_key_ttl_seconds)
        for _ in range(2)
    ]
    verdicts: list[consumer_logic.Verdict] = []
    # When both process the same message
    threads = [threading.Thread(target=lambda c=c: verdicts.append(c.handle(events[3]))) for c in consumers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then one applied it, the other dropped it as a duplicate, and the rider is charged once
    assert sorted(verdicts) == [consumer_logic.Verdict.APPLY, consumer_logic.Verdict.DUPLICATE]
    assert_charged_once_and_complete(harness)


def test_an_early_event_is_told_from_a_duplicate_by_the_cancelled_transaction(harness: ConsumerHarness) -> None:
    # Given version 1 applied
    events = lifecycle("ride-1")
    harness.deliver(envelope(events[0]))
    store = consumer.consumer()._store
    now = int(time.time())

    def key_for(index: int) -> ProcessedKey:
        return consumer_logic.processed_key(events[index], datetime.now(UTC), 3_600)

    # When version 3 comes before version 2, then version 1 again with its key gone (expired and deleted)
    early = store.apply(events[2], key_for(2), None, now)
    harness.ddb.delete_item(
        TableName=harness.stack.name_of("ProcessedKeysTable"),
        Key={"idempotencyKey": {"S": events[0].metadata.idempotency_key}},
    )
    replayed = store.apply(events[0], key_for(0), None, now)
    # Then each cancellation carries the projection's version, which tells an early event from an applied one
    assert (early.result, early.projection_version) == (ApplyResult.PROJECTION_ELSEWHERE, 1)
    assert (replayed.result, replayed.projection_version) == (ApplyResult.PROJECTION_ELSEWHERE, 1)
    assert harness.projection("ride-1") == {"version": 1, "status": "REQUESTED"}


class Crash(BaseException):
    """Kills the invocation the way a timeout or an out-of-memory does: nothing catches it."""


def crash_after(target: Any, name: str, when: Callable[..., bool]) -> Callable[..., Any]:
    real = getattr(target, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if when(*args, **kwargs):
            raise Crash(f"crashed after {name}")
        return result

    return wrapper


def crash_before(target: Any, name: str, when: Callable[..., bool]) -> Callable[..., Any]:
    real = getattr(target, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if when(*args, **kwargs):
            raise Crash(f"crashed before {name}")
        return real(*args, **kwargs)

    return wrapper


def is_completion(*args: Any, **_: Any) -> bool:
    return any(getattr(getattr(arg, "metadata", None), "version", None) == 4 for arg in args) or any(
        isinstance(arg, str) and '"RideCompleted"' in arg for arg in args
    )


CRASH_POINTS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "after-parse": lambda mp: mp.setattr(
        consumer, "parse_message", crash_after(consumer_logic, "parse_message", is_completion)
    ),
    "before-commit": lambda mp: mp.setattr(EffectStore, "apply", crash_before(EffectStore, "apply", is_completion)),
    "after-commit": lambda mp: mp.setattr(EffectStore, "apply", crash_after(EffectStore, "apply", is_completion)),
    "after-handler": lambda mp: mp.setattr(
        consumer,
        "record_handler",
        crash_after(consumer, "record_handler", lambda record: "RideCompleted" in record.body),
    ),
}


@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_a_crash_at_any_step_then_redelivery_charges_once(
    harness: ConsumerHarness, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    # Given a ride ready to complete, and a consumer that dies at `point` while completing it
    events = lifecycle("ride-1")
    harness.deliver(*(envelope(event) for event in events[:3]))
    with monkeypatch.context() as patch:
        CRASH_POINTS[point](patch)
        with pytest.raises(Crash):
            harness.deliver(envelope(events[3]))
    # When SQS redelivers the message (nothing was deleted) to a healthy consumer
    assert harness.deliver(envelope(events[3])) == []
    # Then
    assert_charged_once_and_complete(harness)


def test_a_failed_visibility_change_never_fails_the_batch(
    harness: ConsumerHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given SQS refusing every ChangeMessageVisibility
    events = lifecycle("ride-1")

    class Refused:
        def retry_after(self, queue_arn: str, receipt_handle: str, seconds: int) -> None:
            raise RuntimeError("AccessDenied")

    monkeypatch.setattr(consumer, "visibility", Refused)
    # When a batch holds an early event beside events it can apply
    early = envelope(events[2])
    failed = harness.deliver(envelope(events[0]), early)
    # Then only the early event fails (it waits the queue's own timeout); the rest took effect
    assert failed == [early]
    assert harness.projection("ride-1") == {"version": 1, "status": "REQUESTED"}


def test_an_early_event_asks_for_its_retry_in_seconds(
    harness: ConsumerHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[str, str, int]] = []

    class Recorded:
        def retry_after(self, queue_arn: str, receipt_handle: str, seconds: int) -> None:
            asked.append((queue_arn, receipt_handle, seconds))

    monkeypatch.setattr(consumer, "visibility", Recorded)
    events = lifecycle("ride-1")
    assert len(harness.deliver(envelope(events[3]))) == 1
    ((queue_arn, receipt_handle, seconds),) = asked
    assert queue_arn.endswith(":rideonce-local-RideEventsQueue")
    assert (receipt_handle, seconds) == ("handle-0", 1)
