"""local.emulators.pipes: the outbox Pipe of template.yaml on moto, with AWS's batching, filtering, failures."""

import copy
import dataclasses
import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from local.aws.functions import functions
from local.aws.messaging import Messaging, create_messaging
from local.aws.template import Stack
from local.emulators.clock import SimulatedClock
from local.emulators.patterns import EventPattern
from local.emulators.pipes.config import PipeConfig, pipe_configs
from local.emulators.pipes.paths import evaluate_json_path
from local.emulators.pipes.runner import PipeRunner, describe_forwarded
from local.emulators.pipes.target import TargetFailed
from rideonce.handlers import enrichment
from tests.support.api import NEW_RIDE, ApiClient

FARE = {"amount": "23.50", "currency": "EUR"}


@pytest.fixture
def messaging(stack: Stack) -> Messaging:
    return create_messaging(boto3.client("events"), boto3.client("sqs"), stack)


@pytest.fixture
def config(stack: Stack, messaging: Messaging) -> PipeConfig:
    (pipe,) = pipe_configs(stack)
    return pipe


@pytest.fixture
def client(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> ApiClient:
    return ApiClient(stack, monkeypatch)


@pytest.fixture
def enrichment_batches(monkeypatch: pytest.MonkeyPatch) -> list[list[dict[str, Any]]]:
    """Every batch the enrichment function is invoked with, in order (the real handler still runs)."""
    batches: list[list[dict[str, Any]]] = []
    real = enrichment.handler

    def recording(event: list[dict[str, Any]], context: Any) -> list[dict[str, Any]]:
        batches.append(event)
        return real(event, context)

    monkeypatch.setattr(enrichment, "handler", recording)
    return batches


def make_runner(stack: Stack, config: PipeConfig, **options: Any) -> PipeRunner:
    """The Pipe with the template's enrichment function run in-process; time compressed to nothing by default."""
    options.setdefault("time_scale", 0)
    return PipeRunner(config, functions(stack)["EnrichmentFunction"].invoke, **options)


def drain(queue_url: str) -> list[dict[str, Any]]:
    """Every message body on the queue, in the order SQS hands them out, deleting them."""
    sqs = boto3.client("sqs")
    bodies: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        bodies.extend(json.loads(message["Body"]) for message in batch)
        for message in batch:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def keys(bodies: list[dict[str, Any]]) -> list[str]:
    return [body["detail"]["metadata"]["idempotencyKey"] for body in bodies]


def create_rides(client: ApiClient, count: int, prefix: str = "ride") -> list[str]:
    """`count` new rides through the API handler; one outbox record each, in this order."""
    ids = []
    for index in range(count):
        response = client.request("POST", "/rides", NEW_RIDE | {"riderId": f"rider-{index}"}, key=f"{prefix}-{index}")
        assert response.status == 201, response.body
        ids.append(str(response.json["rideId"]))
    return ids


def record_ride_id(record: dict[str, Any]) -> str:
    return str(record["dynamodb"]["NewImage"]["rideId"]["S"])


def sequence_numbers(stack: Stack) -> dict[str, str]:
    """rideId -> SequenceNumber of its INSERT record, read from the outbox stream as a person redriving would."""
    streams = boto3.client("dynamodbstreams")
    arn = stack.get_att("OutboxTable", "StreamArn")
    found: dict[str, str] = {}
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        ).get("ShardIterator")
        while iterator and (page := streams.get_records(ShardIterator=iterator))["Records"]:
            for record in page["Records"]:
                if record["eventName"] == "INSERT":
                    found[record["dynamodb"]["NewImage"]["rideId"]["S"]] = record["dynamodb"]["SequenceNumber"]
            iterator = page.get("NextShardIterator")
    return found


DEAD_LETTER_KEYS = {"context", "version", "timestamp", "DDBStreamBatchInfo"}
BATCH_INFO_KEYS = {
    "shardId",
    "startSequenceNumber",
    "endSequenceNumber",
    "approximateArrivalOfFirstRecord",
    "approximateArrivalOfLastRecord",
    "batchSize",
    "streamArn",
}


def poison(monkeypatch: pytest.MonkeyPatch, ride_id: str, after_failure: Callable[[], None] = lambda: None) -> None:
    """Make the enrichment raise for any batch holding `ride_id`: a bug a re-run cannot cure."""
    real = enrichment.handler

    def poisoned(event: list[dict[str, Any]], context: Any) -> list[dict[str, Any]]:
        if any(record_ride_id(record) == ride_id for record in event):
            after_failure()
            raise RuntimeError(f"cannot enrich {ride_id}")
        return real(event, context)

    monkeypatch.setattr(enrichment, "handler", poisoned)


# ---------------------------------------------------------------- configuration


def test_the_pipe_is_configured_from_the_template(stack: Stack, messaging: Messaging, config: PipeConfig) -> None:
    # Given the translated template with its tables, queues and bus created
    template = stack.properties("OutboxPipe")
    stream = template["SourceParameters"]["DynamoDBStreamParameters"]
    # When its Pipe is read (the fixture) / Then it is the template's, resolved to the local resources
    assert config.logical_id == "OutboxPipe"
    assert config.source_arn == stack.get_att("OutboxTable", "StreamArn")
    assert config.batch_size == stream["BatchSize"] <= 10
    assert [json.loads(pattern) for pattern in config.filters] == [
        {"dynamodb": {"NewImage": {"rideId": {"S": [{"exists": True}]}}}}
    ]
    assert config.starting_position == "TRIM_HORIZON"
    assert config.bisect
    assert config.on_partial_batch_item_failure == "AUTOMATIC_BISECT"
    assert config.maximum_retry_attempts == stream["MaximumRetryAttempts"]
    assert config.maximum_record_age_seconds == stream["MaximumRecordAgeInSeconds"]
    assert config.batching_window_seconds == stream["MaximumBatchingWindowInSeconds"]
    assert config.dead_letter_arn == stack.get_att("PipeDeadLetterQueue", "Arn")
    assert config.enrichment_function == "EnrichmentFunction"
    assert config.event_bus_name == messaging.buses["RideEventBus"]
    assert (config.detail_type, config.source) == ("OutboxEvent", "rideonce.outbox")


def with_pipe(stack: Stack, change: Callable[[dict[str, Any]], None]) -> Stack:
    """A copy of the stack whose OutboxPipe properties `change` has edited in place."""
    changed = dataclasses.replace(stack, cfn=copy.deepcopy(stack.cfn), attributes=dict(stack.attributes))
    change(changed.resources["OutboxPipe"]["Properties"])
    return changed


def test_a_property_the_emulator_cannot_honour_is_refused(stack: Stack, messaging: Messaging) -> None:
    # Given a copy of the stack whose Pipe has an input template on its target, which the emulator does not apply
    def add_template(props: dict[str, Any]) -> None:
        props["TargetParameters"] = {**props["TargetParameters"], "InputTemplate": '{"x": <$.y>}'}

    # When / Then reading it fails loudly instead of ignoring the template
    with pytest.raises(ValueError, match="InputTemplate"):
        pipe_configs(with_pipe(stack, add_template))


@pytest.mark.parametrize(
    "pattern",
    [
        pytest.param({"eventName": ["INSERT"]}, id="eventName"),
        pytest.param({"eventSource": ["aws:dynamodb"]}, id="eventSource"),
        pytest.param({"awsRegion": ["us-east-1"]}, id="awsRegion"),
        pytest.param({"dynamodb": {"Keys": {"rideId": {"S": [{"exists": True}]}}}, "eventID": ["1"]}, id="mixed"),
        pytest.param(
            {"$or": [{"dynamodb": {"SizeBytes": [{"numeric": [">", 0]}]}}, {"eventName": ["INSERT"]}]}, id="or"
        ),
        pytest.param({"dynamodb": {"NewImage": {"ip": {"S": [{"cidr": "10.0.0.0/8"}]}}}}, id="unemulated-operator"),
        pytest.param({"dynamodb": {"Keys": {"rideId": {"S": [{"anything-but": {"prefix": "x"}}]}}}}, id="but-prefix"),
        pytest.param({"dynamodb": {"Keys": {"rideId": {"S": [{"wildcard": "r*"}]}}}}, id="wildcard"),
    ],
)
def test_a_filter_aws_does_not_accept_for_a_dynamodb_stream_is_refused(
    stack: Stack, messaging: Messaging, pattern: dict[str, Any]
) -> None:
    # Given the Pipe filtering on a field outside the record's `dynamodb` key (the Pipes filtering page
    # excludes the fields a poller adds; Lambda's DynamoDB page filters on `dynamodb` only), or with an
    # operator the emulator does not implement
    def refilter(props: dict[str, Any]) -> None:
        props["SourceParameters"]["FilterCriteria"] = {"Filters": [{"Pattern": json.dumps(pattern)}]}

    # When / Then configuring it fails loudly, instead of filtering in a way AWS might not
    with pytest.raises(ValueError, match=r"filter (field|operator)|not supported"):
        pipe_configs(with_pipe(stack, refilter))


@pytest.mark.parametrize("parameter", ["DetailType", "Source", "Resources"])
def test_a_dynamic_target_path_after_an_enrichment_is_refused(
    stack: Stack, messaging: Messaging, parameter: str
) -> None:
    # Given the Pipe's bus target reading a JSON path while an enrichment is configured: no document says
    # whether the path reads the enrichment's output or the source record
    def dynamic(props: dict[str, Any]) -> None:
        value = "$.metadata.eventType"
        props["TargetParameters"]["EventBridgeEventBusParameters"][parameter] = (
            [value] if parameter == "Resources" else value
        )

    # When / Then configuring it fails loudly
    with pytest.raises(ValueError, match="dynamic path after an enrichment"):
        pipe_configs(with_pipe(stack, dynamic))


def test_without_an_enrichment_a_dynamic_target_path_reads_the_record(stack: Stack, messaging: Messaging) -> None:
    # Given the Pipe without its enrichment, its detail type read from the stream record
    def bare(props: dict[str, Any]) -> None:
        del props["Enrichment"]
        props["TargetParameters"]["EventBridgeEventBusParameters"]["DetailType"] = "$.eventName"

    # When it is configured / Then the path is kept (documented: it reads the event payload itself)
    (pipe,) = pipe_configs(with_pipe(stack, bare))
    assert (pipe.enrichment_function, pipe.detail_type) == (None, "$.eventName")


# ---------------------------------------------------------------- the happy path


def test_every_outbox_record_becomes_one_event_in_stream_order(
    stack: Stack,
    messaging: Messaging,
    client: ApiClient,
    config: PipeConfig,
    enrichment_batches: list[list[dict[str, Any]]],
) -> None:
    # Given one ride driven through its whole lifecycle between other rides, through the API handler
    expected: list[str] = []

    def send(method: str, path: str, body: Any, key: str) -> str:
        response = client.request(method, path, body, key=key)
        assert response.status in (200, 201), response.body
        expected.append(f"ride#{response.json['rideId']}#v{response.json['version']}")
        return str(response.json["rideId"])

    ride_id = send("POST", "/rides", NEW_RIDE, "create")
    for index in range(4):
        send("POST", "/rides", NEW_RIDE | {"riderId": f"rider-{index}"}, f"other-{index}")
    send("POST", f"/rides/{ride_id}/accept", {"driverId": "driver-7"}, "accept")
    other = send("POST", "/rides", NEW_RIDE | {"riderId": "rider-x"}, "other-x")
    send("POST", f"/rides/{ride_id}/start", None, "start")
    send("POST", f"/rides/{other}/cancel", {"reason": "no driver"}, "cancel")
    for index in range(4):
        send("POST", "/rides", NEW_RIDE | {"riderId": f"rider-late-{index}"}, f"late-{index}")
    send("POST", f"/rides/{ride_id}/complete", {"fare": FARE}, "complete")
    forwarded: list[dict[str, Any]] = []
    runner = make_runner(stack, config, on_event=forwarded.append)
    # When the Pipe runs until the stream is read and nothing waits
    stats = runner.run_until_quiet()
    # Then each outbox record is one event on the consumer queue, once, in stream order (moto's standard
    # queue hands messages out in the order they were sent, so this is the order the Pipe put them in)
    bodies = drain(messaging.queues["RideEventsQueue"])
    assert keys(bodies) == expected
    assert len(expected) == 14
    # And source and detail type are the target's static values; the detail is the enriched item
    for body in bodies:
        assert (body["source"], body["detail-type"]) == ("rideonce.outbox", "OutboxEvent")
        assert body["detail"]["metadata"]["source"] == "rideonce.rides"
    ride_events = [body for body in bodies if body["detail"]["metadata"]["aggregateId"] == ride_id]
    assert [body["detail"]["metadata"]["version"] for body in ride_events] == [1, 2, 3, 4]
    assert [body["detail"]["metadata"]["eventType"] for body in ride_events] == [
        "RideRequested",
        "RideAccepted",
        "RideStarted",
        "RideCompleted",
    ]
    assert ride_events[-1]["detail"]["data"]["fare"] == FARE
    # And the enrichment got bare arrays of at most BatchSize records, with the stream ARN on each
    sizes = [len(batch) for batch in enrichment_batches]
    assert max(sizes) == config.batch_size
    assert sum(sizes) == 14
    assert all(record["eventSourceARN"] == config.source_arn for batch in enrichment_batches for record in batch)
    assert all(isinstance(record["dynamodb"]["ApproximateCreationDateTime"], int) for record in enrichment_batches[0])
    # And nothing failed, nothing was dead-lettered, and the callback saw every event once
    assert (stats.records_read, stats.filtered_out, stats.events_put) == (14, 0, 14)
    assert stats.batches == stats.enrichment_invocations == len(sizes) == 2
    assert (stats.put_failures, stats.retries, stats.bisections, stats.records_to_dlq) == (0, 0, 0, 0)
    assert [event["detail"]["metadata"]["idempotencyKey"] for event in forwarded] == expected
    assert "RideCompleted" in describe_forwarded(forwarded[-1])
    assert drain(messaging.queues["PipeDeadLetterQueue"]) == []
    assert drain(messaging.queues["QuarantineQueue"]) == []


def test_a_ttl_deletion_is_filtered_out_and_a_modify_is_left_to_the_enrichment(
    stack: Stack,
    messaging: Messaging,
    client: ApiClient,
    config: PipeConfig,
    enrichment_batches: list[list[dict[str, Any]]],
) -> None:
    # Given one ride created through the API, then its outbox item updated and deleted behind the API's back
    (ride_id,) = create_rides(client, 1)
    dynamodb = boto3.client("dynamodb")
    key = {"rideId": {"S": ride_id}, "version": {"N": "1"}}
    table = stack.ref("OutboxTable")
    dynamodb.update_item(
        TableName=table, Key=key, UpdateExpression="SET note = :note", ExpressionAttributeValues={":note": {"S": "x"}}
    )
    dynamodb.delete_item(TableName=table, Key=key)
    # When the Pipe runs
    stats = make_runner(stack, config).run_until_quiet()
    # Then the REMOVE record (no NewImage under NEW_IMAGE) was consumed by the filter; the INSERT and the
    # MODIFY both carry a new image with a rideId, which is all a documented filter can see
    seen = [record["eventName"] for batch in enrichment_batches for record in batch]
    assert seen == ["INSERT", "MODIFY"]
    assert (stats.records_read, stats.filtered_out) == (3, 1)


def test_a_partial_batch_waits_for_the_batching_window(
    stack: Stack,
    messaging: Messaging,
    client: ApiClient,
    config: PipeConfig,
    enrichment_batches: list[list[dict[str, Any]]],
) -> None:
    # Given three records, fewer than BatchSize, and the Pipe on a simulated clock
    create_rides(client, 3)
    clock = SimulatedClock(time.time())
    runner = make_runner(stack, config, clock=clock, time_scale=1)
    # When the Pipe polls at once
    runner.poll()
    # Then the records wait for more to come, until the window (1 s) closes
    assert enrichment_batches == []
    assert runner.busy()
    assert runner.next_due() == clock.now() + config.batching_window_seconds
    clock.advance(config.batching_window_seconds - 0.1)
    runner.poll()
    assert enrichment_batches == []
    # And once the window has passed they go as one batch
    clock.advance(0.1)
    runner.poll()
    assert [len(batch) for batch in enrichment_batches] == [3]
    assert not runner.busy()
    assert len(drain(messaging.queues["RideEventsQueue"])) == 3


def test_latest_starts_after_the_records_already_in_the_stream(
    stack: Stack, messaging: Messaging, client: ApiClient, config: PipeConfig
) -> None:
    # Given a ride written before a Pipe that starts at LATEST is created, and one written after
    create_rides(client, 1, prefix="before")
    runner = make_runner(stack, dataclasses.replace(config, starting_position="LATEST"))
    (after,) = create_rides(client, 1, prefix="after")
    # When the Pipe runs
    stats = runner.run_until_quiet()
    # Then only the later one is forwarded
    assert stats.records_read == 1
    assert keys(drain(messaging.queues["RideEventsQueue"])) == [f"ride#{after}#v1"]


# ---------------------------------------------------------------- failures


def test_a_poison_record_is_bisected_out_retried_and_dead_lettered_alone(
    stack: Stack, messaging: Messaging, client: ApiClient, config: PipeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a full batch of ten new rides, the fourth of which the enrichment cannot handle
    ride_ids = create_rides(client, 10)
    poison(monkeypatch, ride_ids[3])
    # When the Pipe runs until quiet
    stats = make_runner(stack, config).run_until_quiet()
    # Then the batch was halved down to the poison record (10 -> 5 -> 3+2 -> 1+1), which alone used up
    # MaximumRetryAttempts and went to the Pipe's dead-letter queue
    assert stats.bisections == 3
    assert stats.retries == config.maximum_retry_attempts
    assert stats.enrichment_invocations == 6 + 1 + config.maximum_retry_attempts
    assert (stats.dlq_messages, stats.records_to_dlq) == (1, 1)
    # And the message is a pointer into the stream in the documented shape, nothing more: no records, no
    # reason, no retry count (a person redrives from the outbox table)
    (dead,) = drain(messaging.queues["PipeDeadLetterQueue"])
    assert set(dead) == DEAD_LETTER_KEYS
    info = dead["DDBStreamBatchInfo"]
    assert set(info) == BATCH_INFO_KEYS
    assert info["batchSize"] == 1
    assert info["startSequenceNumber"] == info["endSequenceNumber"] == sequence_numbers(stack)[ride_ids[3]]
    assert info["streamArn"] == config.source_arn
    assert info["shardId"].startswith("shardId-")
    assert dead["context"] == {"partnerResourceArn": config.arn, "condition": "RetryAttemptsExhausted"}
    assert dead["version"] == "1.0"
    # And every other record's event was delivered exactly once, still in stream order
    assert keys(drain(messaging.queues["RideEventsQueue"])) == [
        f"ride#{ride_id}#v1" for ride_id in ride_ids if ride_id != ride_ids[3]
    ]


def test_without_bisect_the_whole_batch_is_retried_then_dead_lettered_and_the_shard_moves_on(
    stack: Stack, messaging: Messaging, client: ApiClient, config: PipeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given batches of three, two retries, no bisecting, and a poison record in the first batch of five rides
    ride_ids = create_rides(client, 5)
    poison(monkeypatch, ride_ids[1])
    plain = dataclasses.replace(config, batch_size=3, maximum_retry_attempts=2, on_partial_batch_item_failure=None)
    # When the Pipe runs until quiet
    stats = make_runner(stack, plain).run_until_quiet()
    # Then the first batch was tried three times and dead-lettered whole, with its first and last sequence numbers
    assert (stats.batches, stats.retries, stats.bisections, stats.records_to_dlq) == (2, 2, 0, 3)
    (dead,) = drain(messaging.queues["PipeDeadLetterQueue"])
    info = dead["DDBStreamBatchInfo"]
    numbers = sequence_numbers(stack)
    assert info["batchSize"] == 3
    assert (info["startSequenceNumber"], info["endSequenceNumber"]) == (numbers[ride_ids[0]], numbers[ride_ids[2]])
    # And only then did the next batch go through
    assert keys(drain(messaging.queues["RideEventsQueue"])) == [f"ride#{ride_id}#v1" for ride_id in ride_ids[3:]]


def test_around_delivery_fails_or_repeats_attempts_as_a_target_would(
    stack: Stack, messaging: Messaging, client: ApiClient, config: PipeConfig
) -> None:
    # Given three rides, a hook that fails every attempt holding the second and delivers the others twice
    ride_ids = create_rides(client, 3)
    attempts: list[list[str]] = []

    def around(records: list[dict[str, Any]], deliver: Callable[[], None]) -> None:
        attempts.append([record_ride_id(record) for record in records])
        if ride_ids[1] in attempts[-1]:
            raise TargetFailed("refused")
        deliver()
        deliver()

    # When the Pipe runs until quiet with it
    stats = make_runner(stack, config, around_delivery=around).run_until_quiet()
    # Then the failing record was bisected out, retried MaximumRetryAttempts times and given up to the DLQ
    assert attempts[0] == ride_ids
    assert attempts.count([ride_ids[1]]) == 1 + config.maximum_retry_attempts
    (dead,) = drain(messaging.queues["PipeDeadLetterQueue"])
    assert dead["DDBStreamBatchInfo"]["startSequenceNumber"] == sequence_numbers(stack)[ride_ids[1]]
    assert (stats.retries, stats.records_to_dlq) == (config.maximum_retry_attempts, 1)
    # And the other records' events reached the bus twice each, in stream order, and the failing one's never
    assert keys(drain(messaging.queues["RideEventsQueue"])) == [
        f"ride#{ride_id}#v1" for ride_id in (ride_ids[0], ride_ids[0], ride_ids[2], ride_ids[2])
    ]


def test_records_older_than_the_maximum_age_are_not_retried(
    stack: Stack, messaging: Messaging, client: ApiClient, config: PipeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a simulated clock that jumps past MaximumRecordAgeInSeconds while a batch is failing
    clock = SimulatedClock(time.time())
    ride_ids = create_rides(client, 2)

    def jump() -> None:
        clock.advance(config.maximum_record_age_seconds + 60)

    poison(monkeypatch, ride_ids[0], after_failure=jump)
    plain = dataclasses.replace(config, on_partial_batch_item_failure=None)
    # When the Pipe runs
    stats = make_runner(stack, plain, clock=clock).run_until_quiet()
    # Then the failed batch was not sent to the enrichment again: its records were too old, so dead-lettered
    assert stats.enrichment_invocations == 1
    assert (stats.records_expired, stats.records_to_dlq, stats.events_put) == (2, 2, 0)
    # And AWS documents no condition name for that case, so the message carries none
    (dead,) = drain(messaging.queues["PipeDeadLetterQueue"])
    assert set(dead) == DEAD_LETTER_KEYS
    assert dead["context"] == {"partnerResourceArn": config.arn}
    numbers = sequence_numbers(stack)
    info = dead["DDBStreamBatchInfo"]
    assert (info["batchSize"], info["startSequenceNumber"], info["endSequenceNumber"]) == (
        2,
        numbers[ride_ids[0]],
        numbers[ride_ids[1]],
    )


def fail_second_entry_once(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[list[dict[str, Any]]]]:
    """An events client whose first PutEvents reports its second entry failed (and does not put it)."""
    events = boto3.client("events")
    real_put = events.put_events
    calls: list[list[dict[str, Any]]] = []

    def flaky_put(**kwargs: Any) -> Any:
        calls.append(kwargs["Entries"])
        if len(calls) > 1:
            return real_put(**kwargs)
        failing = kwargs["Entries"][1]
        response = real_put(Entries=[entry for entry in kwargs["Entries"] if entry is not failing])
        results = list(response["Entries"])
        results.insert(1, {"ErrorCode": "InternalFailure", "ErrorMessage": "injected"})
        return {"FailedEntryCount": 1, "Entries": results}

    monkeypatch.setattr(events, "put_events", flaky_put)
    return events, calls


@pytest.mark.parametrize("bisect", [True, False], ids=["bisect", "no-bisect"])
def test_a_partial_put_events_failure_retries_only_the_remainder_through_the_enrichment(
    stack: Stack,
    messaging: Messaging,
    client: ApiClient,
    config: PipeConfig,
    monkeypatch: pytest.MonkeyPatch,
    bisect: bool,
) -> None:
    # Given four new rides (one batch), an enrichment whose items carry their record's eventID (as AWS's
    # partial batch failure page asks), and a bus that fails the second entry of the first PutEvents once
    ride_ids = create_rides(client, 4)
    real = enrichment.handler
    enriched: list[list[str]] = []

    def carrying_event_ids(event: list[dict[str, Any]], context: Any) -> list[dict[str, Any]]:
        enriched.append([record_ride_id(record) for record in event])
        return [item | {"eventID": record["eventID"]} for record, item in zip(event, real(event, context), strict=True)]

    monkeypatch.setattr(enrichment, "handler", carrying_event_ids)
    events, calls = fail_second_entry_once(monkeypatch)
    pipe = config if bisect else dataclasses.replace(config, on_partial_batch_item_failure=None)
    # When the Pipe runs
    stats = make_runner(stack, pipe, events=events).run_until_quiet()
    # Then only the failed entry's record went through the enrichment again and was put again
    assert enriched == [ride_ids, [ride_ids[1]]]
    assert [len(entries) for entries in calls] == [4, 1]
    # And every event is on the queue exactly once: the three that had succeeded were not put again
    assert Counter(keys(drain(messaging.queues["RideEventsQueue"]))) == {f"ride#{r}#v1": 1 for r in ride_ids}
    assert (stats.put_failures, stats.events_put, stats.retries, stats.bisections) == (1, 4, 1, 0)
    assert drain(messaging.queues["PipeDeadLetterQueue"]) == []


@pytest.mark.parametrize(
    ("bisect", "bisections", "retries"),
    [pytest.param(True, 1, 0, id="bisect"), pytest.param(False, 0, 1, id="whole-batch-retry")],
)
def test_a_failed_entry_that_cannot_be_tied_to_a_record_retries_the_whole_batch(
    stack: Stack,
    messaging: Messaging,
    client: ApiClient,
    config: PipeConfig,
    monkeypatch: pytest.MonkeyPatch,
    bisect: bool,
    bisections: int,
    retries: int,
) -> None:
    # Given four new rides (one batch), the template's enrichment (its items carry no eventID), and a bus
    # that fails the second entry of the first PutEvents once
    ride_ids = create_rides(client, 4)
    events, _ = fail_second_entry_once(monkeypatch)
    pipe = config if bisect else dataclasses.replace(config, on_partial_batch_item_failure=None)
    # When the Pipe runs
    stats = make_runner(stack, pipe, events=events).run_until_quiet()
    # Then the whole batch was the remainder, re-run through enrichment and put again, so the three events
    # that had made it are on the queue twice: the at-least-once delivery consumers deduplicate on
    bodies = drain(messaging.queues["RideEventsQueue"])
    counts = Counter(keys(bodies))
    assert counts == {f"ride#{ride_id}#v1": 1 if index == 1 else 2 for index, ride_id in enumerate(ride_ids)}
    assert (stats.put_failures, stats.events_put) == (1, 7)
    assert (stats.bisections, stats.retries, stats.records_to_dlq) == (bisections, retries, 0)
    # And the duplicates carry byte-identical details under different EventBridge ids
    first = [body for body in bodies if body["detail"]["metadata"]["idempotencyKey"] == f"ride#{ride_ids[0]}#v1"]
    assert json.dumps(first[0]["detail"]) == json.dumps(first[1]["detail"])
    assert first[0]["id"] != first[1]["id"]
    assert drain(messaging.queues["PipeDeadLetterQueue"]) == []


@pytest.mark.parametrize("answer", ["", {}, []], ids=["empty-string", "empty-object", "empty-array"])
def test_an_empty_enrichment_answer_invokes_no_target_and_the_batch_succeeds(
    stack: Stack,
    messaging: Messaging,
    client: ApiClient,
    config: PipeConfig,
    monkeypatch: pytest.MonkeyPatch,
    answer: Any,
) -> None:
    # Given three new rides and an enrichment that answers "", {} or [] (AWS: "invoke no target")
    create_rides(client, 3)
    monkeypatch.setattr(enrichment, "handler", lambda event, context: answer)
    events = boto3.client("events")
    calls: list[Any] = []
    real_put = events.put_events

    def counted_put(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return real_put(**kwargs)

    monkeypatch.setattr(events, "put_events", counted_put)
    # When the Pipe runs
    stats = make_runner(stack, config, events=events).run_until_quiet()
    # Then PutEvents was never called, nothing is on any queue, and the batch counted as a success
    assert calls == []
    assert (stats.enrichment_invocations, stats.empty_enrichments, stats.events_put) == (1, 1, 0)
    assert (stats.retries, stats.bisections, stats.dlq_messages) == (0, 0, 0)
    assert drain(messaging.queues["RideEventsQueue"]) == []
    assert drain(messaging.queues["PipeDeadLetterQueue"]) == []


@pytest.mark.parametrize("answer", [None, "an event", [{"ok": 1}, 7]], ids=["null", "string", "not-an-object"])
def test_an_undocumented_enrichment_answer_fails_the_batch(
    stack: Stack,
    messaging: Messaging,
    client: ApiClient,
    config: PipeConfig,
    monkeypatch: pytest.MonkeyPatch,
    answer: Any,
) -> None:
    # Given one new ride and an enrichment answering something no document says what a Pipe makes of
    create_rides(client, 1)
    monkeypatch.setattr(enrichment, "handler", lambda event, context: answer)
    pipe = dataclasses.replace(config, maximum_retry_attempts=0)
    # When the Pipe runs
    stats = make_runner(stack, pipe).run_until_quiet()
    # Then nothing was put and the batch failed into the dead-letter queue, instead of a guess
    assert (stats.events_put, stats.records_to_dlq) == (0, 1)
    assert drain(messaging.queues["RideEventsQueue"]) == []


# ---------------------------------------------------------------- event patterns and paths


@pytest.mark.parametrize(
    ("pattern", "event", "matches"),
    [
        ({"eventName": ["INSERT"]}, {"eventName": "INSERT"}, True),
        ({"eventName": ["INSERT"]}, {"eventName": "MODIFY"}, False),
        ({"eventName": ["INSERT"]}, {}, False),
        ({"eventName": ["INSERT", "MODIFY"]}, {"eventName": "MODIFY"}, True),
        (
            {"dynamodb": {"NewImage": {"status": {"S": ["DONE"]}}}},
            {"dynamodb": {"NewImage": {"status": {"S": "DONE"}}}},
            True,
        ),
        ({"dynamodb": {"NewImage": {"status": {"S": ["DONE"]}}}}, {"dynamodb": {"Keys": {}}}, False),
        ({"tags": ["b"]}, {"tags": ["a", "b"]}, True),
        ({"items": {"sku": ["x"]}}, {"items": [{"sku": "y"}, {"sku": "x"}]}, True),
        ({"n": [5]}, {"n": 5.0}, True),
        ({"n": [5]}, {"n": "5"}, False),
        ({"flag": [True]}, {"flag": True}, True),
        ({"flag": [True]}, {"flag": 1}, False),
        ({"gone": [None]}, {"gone": None}, True),
        ({"id": [{"prefix": "ride#"}]}, {"id": "ride#1"}, True),
        ({"id": [{"prefix": {"equals-ignore-case": "RIDE#"}}]}, {"id": "ride#1"}, True),
        ({"id": [{"suffix": "#v1"}]}, {"id": "ride#1#v2"}, False),
        ({"id": [{"equals-ignore-case": "ABC"}]}, {"id": "abc"}, True),
        ({"id": [{"wildcard": "ride#*#v1"}]}, {"id": "ride#9#v1"}, True),
        ({"id": [{"wildcard": "a\\*b"}]}, {"id": "axb"}, False),
        ({"eventName": [{"anything-but": ["REMOVE"]}]}, {"eventName": "INSERT"}, True),
        ({"eventName": [{"anything-but": "REMOVE"}]}, {"eventName": "REMOVE"}, False),
        ({"eventName": [{"anything-but": "REMOVE"}]}, {}, False),
        ({"eventName": [{"anything-but": {"prefix": "RE"}}]}, {"eventName": "REMOVE"}, False),
        ({"v": [{"numeric": [">", 1, "<=", 4]}]}, {"v": 4}, True),
        ({"v": [{"numeric": [">", 1, "<=", 4]}]}, {"v": 5}, False),
        ({"v": [{"exists": True}]}, {"v": 0}, True),
        ({"v": [{"exists": False}]}, {"w": 0}, True),
        ({"v": [{"exists": False}]}, {"v": 0}, False),
        ({"$or": [{"a": ["1"]}, {"b": ["2"]}]}, {"b": "2"}, True),
        ({"$or": [{"a": ["1"]}, {"b": ["2"]}]}, {"a": "2"}, False),
    ],
)
def test_event_patterns_match_as_eventbridge_does(pattern: dict[str, Any], event: Any, matches: bool) -> None:
    assert EventPattern(json.dumps(pattern)).matches(event) is matches


@pytest.mark.parametrize(
    "pattern",
    [
        {"ip": [{"cidr": "10.0.0.0/24"}]},
        {"a": "INSERT"},
        {"a": []},
        {"a": [{"numeric": [">"]}]},
        {"$or": [{"a": ["1"]}]},
    ],
)
def test_patterns_the_emulator_cannot_honour_are_refused(pattern: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies with the pattern
        EventPattern(pattern)


def test_json_paths_reach_into_the_enriched_item() -> None:
    item = {"metadata": {"eventType": "RideStarted", "tags": ["a", "b"]}}
    assert evaluate_json_path(item, "$.metadata.eventType") == "RideStarted"
    assert evaluate_json_path(item, "$.metadata.tags[1]") == "b"
    with pytest.raises(LookupError):
        evaluate_json_path(item, "$.metadata.source")
