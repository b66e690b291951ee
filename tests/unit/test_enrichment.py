"""The Pipe enrichment: outbox stream records -> ride events, pure, deterministic, non-changes left out."""

import copy
import io
import json
import logging
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from local.aws.context import FakeLambdaContext
from local.aws.template import ROOT
from rideonce.dal.dynamo import to_item
from rideonce.handlers import enrichment as handler_module
from rideonce.logic import rides
from rideonce.logic.enrichment import REJECTION_ID_NAMESPACE, NotAChange, enrich_batch, forwarded
from rideonce.logic.events import EVENT_ID_NAMESPACE, outbox_record
from rideonce.logic.rides import Change
from rideonce.models.events import RecordRejected, RideEvent
from rideonce.models.requests import CreateRideRequest
from rideonce.models.ride import Money
from rideonce.observability import logger
from tests.support.metrics import metrics_emitted

STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/rideonce-OutboxTable-X/stream/2026-11-01T00:00:00.000"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
RETENTION = timedelta(days=7)
T0 = datetime(2026, 11, 2, 9, 30, 12, 345000, tzinfo=UTC)
# The stream record is written a little after the commit; the event must carry the commit time.
STREAM_LAG = timedelta(seconds=2)
REQUEST = CreateRideRequest.model_validate(
    {
        "riderId": "rider-4711",
        "pickup": {"lat": 52.52, "lng": 13.405, "address": "Alexanderplatz"},
        "dropoff": {"lat": 52.5163, "lng": 13.3777},
    }
)


def lifecycle(ride_id: str, cancel_after: int | None = None) -> list[Change]:
    """A ride's changes in version order: the full lifecycle, or cancelled after `cancel_after` changes."""
    changes = [rides.request_ride(ride_id, REQUEST, T0)]
    steps: list[Callable[[Change, datetime], Change]] = [
        lambda change, now: rides.accept(change.ride, "driver-42", now),
        lambda change, now: rides.start(change.ride, now),
        lambda change, now: rides.complete(change.ride, Money(amount=Decimal("23.50"), currency="EUR"), now),
    ]
    for step_number, step in enumerate(steps, start=1):
        if cancel_after == step_number:
            changes.append(rides.cancel(changes[-1].ride, "rider changed plans", T0 + timedelta(minutes=step_number)))
            return changes
        changes.append(step(changes[-1], T0 + timedelta(minutes=step_number)))
    return changes


def stream_record(change: Change, sequence: int = 1) -> dict[str, Any]:
    """The DynamoDB stream record (Pipe enrichment input shape) of the change's outbox row."""
    committed = change.ride.updated_at
    item = json.loads(json.dumps(to_item(outbox_record(change, committed, TRACEPARENT, RETENTION))))
    return {
        "eventID": f"{change.ride.ride_id[:8]}-{change.ride.version}-{sequence}",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": int((committed + STREAM_LAG).timestamp()),
            "Keys": {"rideId": item["rideId"], "version": item["version"]},
            "NewImage": item,
            "SequenceNumber": str(10**20 + sequence),
            "SizeBytes": len(json.dumps(item)),
            "StreamViewType": "NEW_IMAGE",
        },
        "eventSourceARN": STREAM_ARN,
    }


def invoke(records: list[Any]) -> list[dict[str, Any]]:
    return handler_module.handler(records, FakeLambdaContext(function_name="EnrichmentFunction"))  # type: ignore[arg-type]


def canonical(value: Any) -> bytes:
    return json.dumps(value).encode()


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Reads the enrichment's structured log lines so far, one dict per line."""
    stream_handler = logger.registered_handler
    assert isinstance(stream_handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = stream_handler.setStream(buffer)
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]
    finally:
        stream_handler.setStream(previous)


EVENT_TYPES = {
    "RideRequested": (None, 0),
    "RideAccepted": (None, 1),
    "RideStarted": (None, 2),
    "RideCompleted": (None, 3),
    "RideCancelled": (2, 2),
}


@pytest.mark.parametrize("event_type", list(EVENT_TYPES))
def test_each_event_type_becomes_its_contract_shaped_ride_event(event_type: str) -> None:
    # Given the outbox record the API committed for a change of that type
    cancel_after, index = EVENT_TYPES[event_type]
    change = lifecycle("ride-a1", cancel_after)[index]
    ride = change.ride
    # When the Pipe hands its stream record to the enrichment
    (event,) = invoke([stream_record(change)])
    # Then the output is the full-state ride event, keyed by (rideId, version), stamped with the commit time
    key = f"ride#{ride.ride_id}#v{ride.version}"
    assert event == {
        "metadata": {
            "eventId": str(uuid.uuid5(EVENT_ID_NAMESPACE, key)),
            "idempotencyKey": key,
            "eventType": event_type,
            "source": "rideonce.rides",
            "aggregateType": "ride",
            "aggregateId": ride.ride_id,
            "version": ride.version,
            "occurredAt": ride.updated_at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "traceparent": TRACEPARENT,
            "schemaVersion": "1",
        },
        "data": json.loads(ride.model_dump_json()),
    }
    assert event["data"]["status"] == change.ride.status
    assert set(event["data"]) == {field.alias for field in type(ride).model_fields.values()}


def test_the_event_identity_depends_only_on_ride_and_version() -> None:
    # Given the same change committed twice with different times and trace contexts
    change = lifecycle("ride-a1")[1]
    first = outbox_record(change, T0, TRACEPARENT, RETENTION)
    second = outbox_record(change, T0 + timedelta(hours=1), "00-" + "1" * 32 + "-" + "2" * 16 + "-01", RETENTION)
    records = [stream_record(change), stream_record(change)]
    records[1]["dynamodb"]["NewImage"] = json.loads(json.dumps(to_item(second)))
    records[0]["dynamodb"]["NewImage"] = json.loads(json.dumps(to_item(first)))
    # When both are enriched
    one, other = invoke(records)
    # Then they carry the same eventId and idempotencyKey (what consumers deduplicate on), not the same time
    assert (one["metadata"]["eventId"], one["metadata"]["idempotencyKey"]) == (
        other["metadata"]["eventId"],
        other["metadata"]["idempotencyKey"],
    )
    assert one["metadata"]["occurredAt"] != other["metadata"]["occurredAt"]


def test_occurred_at_is_the_commit_time_not_the_stream_time() -> None:
    # Given a record whose stream timestamp is later than the API's commit
    change = lifecycle("ride-a1")[3]
    record = stream_record(change)
    assert record["dynamodb"]["ApproximateCreationDateTime"] > change.ride.updated_at.timestamp()
    # When enriched
    (event,) = invoke([record])
    # Then occurredAt is the commit time the outbox record carries
    assert datetime.fromisoformat(event["metadata"]["occurredAt"]) == change.ride.updated_at


def mixed_batch() -> list[dict[str, Any]]:
    """Ten records of three rides, interleaved the way one shard can hold them."""
    changes = lifecycle("ride-a1") + lifecycle("ride-b2", cancel_after=2) + lifecycle("ride-c3")[:3]
    assert len(changes) == 10
    random.Random(20261102).shuffle(changes)
    return [stream_record(change, sequence) for sequence, change in enumerate(changes, start=1)]


def test_the_same_batch_gives_byte_identical_output() -> None:
    # Given a batch with a malformed record among good ones
    batch = mixed_batch()
    batch[4]["dynamodb"]["NewImage"]["event"]["M"].pop("data")
    # When it is enriched twice, as a Pipe retry would
    first = canonical(invoke(copy.deepcopy(batch)))
    second = canonical(invoke(copy.deepcopy(batch)))
    # Then the bytes are the same
    assert first == second
    assert b"OutboxRecordRejected" in first


def test_the_same_batch_gives_the_same_bytes_in_another_process(tmp_path: Any) -> None:
    # Given a batch written to a file, and its output here
    batch = mixed_batch()
    batch[3]["eventName"] = "MODIFY"
    batch[7]["eventName"] = "UPSERT"
    path = tmp_path / "batch.json"
    path.write_text(json.dumps(batch))
    here = canonical(invoke(batch))
    # When a fresh interpreter with another hash seed enriches the same file
    script = (
        "import json, sys; from rideonce.logic.enrichment import enrich_batch; "
        "from rideonce.logic.enrichment import forwarded; "
        "out = [r.model_dump(mode='json') for r in forwarded(enrich_batch(json.load(open(sys.argv[1]))))]; "
        "sys.stdout.write(json.dumps(out))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": f"{ROOT / 'functions'}"}
    there = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, check=True, env=env, cwd=ROOT
    ).stdout
    # Then the bytes are the same there as here
    assert there == here


def test_order_within_a_batch_is_preserved() -> None:
    # Given ten records of three rides, interleaved
    batch = mixed_batch()
    expected = [
        (record["dynamodb"]["NewImage"]["rideId"]["S"], int(record["dynamodb"]["NewImage"]["version"]["N"]))
        for record in batch
    ]
    # When enriched
    events = invoke(batch)
    # Then output i is the event of record i
    assert [(event["data"]["rideId"], event["data"]["version"]) for event in events] == expected
    assert expected != sorted(expected)


def _set_image(path: list[str], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(record: dict[str, Any]) -> None:
        target = record["dynamodb"]["NewImage"]
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return mutate


def _drop_image(path: list[str]) -> Callable[[dict[str, Any]], None]:
    def mutate(record: dict[str, Any]) -> None:
        target = record["dynamodb"]["NewImage"]
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return mutate


def ttl_removal(record: dict[str, Any]) -> dict[str, Any]:
    """The REMOVE record DynamoDB's TTL writes for an expired item (OLD_IMAGE absent under NEW_IMAGE).

    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/time-to-live-ttl-streams.html
    """
    removal = copy.deepcopy(record) | {
        "eventName": "REMOVE",
        "eventID": record["eventID"] + "-ttl",
        "userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"},
    }
    del removal["dynamodb"]["NewImage"]
    return removal


def modification(record: dict[str, Any]) -> dict[str, Any]:
    """The MODIFY record of a re-written outbox item (its NewImage is the item as re-written)."""
    return copy.deepcopy(record) | {"eventName": "MODIFY", "eventID": record["eventID"] + "-rewrite"}


def test_modify_and_remove_records_are_skipped_counted_and_never_quarantined(
    log_lines: Callable[[], list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a ride's four INSERTs, with a TTL deletion and a re-write of earlier items among them
    inserts = [stream_record(change, sequence) for sequence, change in enumerate(lifecycle("ride-a1"), start=1)]
    batch = [inserts[0], ttl_removal(inserts[0]), inserts[1], modification(inserts[1]), inserts[2], inserts[3]]
    # When the batch is enriched
    events = invoke(batch)
    # Then only the inserts become events, in order, and nothing is rejected
    assert [event["metadata"]["idempotencyKey"] for event in events] == [
        f"ride#ride-a1#v{version}" for version in (1, 2, 3, 4)
    ]
    assert all(event["metadata"]["source"] == "rideonce.rides" for event in events)
    # And each skipped record is logged once and counted in one metric
    skipped = [line for line in log_lines() if line["message"] == "outbox record skipped: not a change event"]
    assert [(line["eventName"], line["streamEventId"]) for line in skipped] == [
        ("REMOVE", batch[1]["eventID"]),
        ("MODIFY", batch[3]["eventID"]),
    ]
    assert not [line for line in log_lines() if line["message"] == "outbox record rejected"]
    assert metrics_emitted(capsys.readouterr().out)["OutboxRecordsSkipped"] == [2.0]


def test_a_batch_of_only_removals_answers_an_empty_array() -> None:
    # Given a batch of TTL deletions only (what the stream carries 7 days after a burst of rides)
    inserts = [stream_record(change, sequence) for sequence, change in enumerate(lifecycle("ride-a1"), start=1)]
    # When enriched
    answer = invoke([ttl_removal(record) for record in inserts])
    # Then the answer is [], which the Pipes documentation says invokes no target
    assert answer == []


def test_a_batch_without_non_changes_emits_no_skip_metric(capsys: pytest.CaptureFixture[str]) -> None:
    invoke([stream_record(lifecycle("ride-a1")[0])])
    assert "OutboxRecordsSkipped" not in metrics_emitted(capsys.readouterr().out)


MALFORMED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "an unknown eventName": (lambda record: record.update(eventName="UPSERT"), 'eventName is "UPSERT", not "INSERT"'),
    "no eventName": (lambda record: record.pop("eventName"), 'eventName is null, not "INSERT"'),
    "an eventName that is a list": (
        lambda record: record.update(eventName=["MODIFY"]),
        'eventName is ["MODIFY"], not "INSERT"',
    ),
    "no NewImage": (lambda record: record["dynamodb"].pop("NewImage"), "has no dynamodb.NewImage"),
    "no event data": (_drop_image(["event", "M", "data"]), "event.data: Field required"),
    "a wrong version": (_set_image(["version"], {"N": "7"}), "the outbox key (rideId, version) must match"),
    "an unknown event type": (
        _set_image(["event", "M", "metadata", "M", "eventType"], {"S": "RideTeleported"}),
        "event.metadata.eventType: Input should be",
    ),
    "a foreign idempotency key": (
        _set_image(["event", "M", "metadata", "M", "idempotencyKey"], {"S": "something-else"}),
        "are not the ones derived from (rideId, version)",
    ),
    "an unknown DynamoDB type": (
        _set_image(["expiresAt"], {"X": "1"}),
        'dynamodb.NewImage.expiresAt is not DynamoDB JSON: {"X": "1"}',
    ),
    "a number that is not one": (_set_image(["version"], {"N": "seven"}), "dynamodb.NewImage.version is not"),
    "an unknown attribute": (_set_image(["note"], {"S": "x"}), "note: Extra inputs are not permitted"),
}


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_a_malformed_record_is_rejected_in_place_and_the_rest_flows(
    kind: str, log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    # Given a batch with a malformed record in the middle
    mutate, reason = MALFORMED[kind]
    changes = lifecycle("ride-a1")
    batch = [stream_record(change, sequence) for sequence, change in enumerate(changes, start=1)]
    mutate(batch[2])
    raw = copy.deepcopy(batch[2])
    # When the batch is enriched (the handler must not raise)
    events = invoke(batch)
    # Then the good records become their events in place, and the bad one a rejection carrying it verbatim
    assert len(events) == len(batch)
    assert [event["metadata"]["idempotencyKey"] for event in events[:2] + events[3:]] == [
        "ride#ride-a1#v1",
        "ride#ride-a1#v2",
        "ride#ride-a1#v4",
    ]
    rejected = events[2]
    assert rejected["metadata"]["source"] == "rideonce.relay"
    assert rejected["metadata"]["eventType"] == "OutboxRecordRejected"
    assert rejected["data"]["record"] == raw
    assert reason in rejected["data"]["reason"]
    assert RecordRejected.model_validate(rejected).data.record == raw
    # And one log line, and only one, names the reason and the stream record, without any ride's data
    lines = log_lines()
    handler_lines = [line for line in lines if line.get("message") == "outbox record rejected"]
    assert [(line["streamEventId"], line["reason"]) for line in handler_lines] == [
        (raw["eventID"], rejected["data"]["reason"])
    ]
    assert len(lines) == 1
    assert "rider-4711" not in json.dumps(lines)


@pytest.mark.parametrize("record", ["INSERT", None, 42, [1, 2], True])
def test_a_record_that_is_not_an_object_is_rejected(record: Any) -> None:
    # Given a batch whose second item is not a JSON object
    good = stream_record(lifecycle("ride-a1")[0])
    # When enriched
    events = invoke([good, record])
    # Then the first is its event and the second a rejection carrying the value verbatim
    assert events[0]["metadata"]["eventType"] == "RideRequested"
    assert events[1]["metadata"]["eventType"] == "OutboxRecordRejected"
    assert events[1]["data"]["record"] == record
    assert "not an object" in events[1]["data"]["reason"]


def test_a_rejection_is_identified_by_the_stream_record_and_dated_by_it() -> None:
    # Given a malformed record, and a copy of it under another stream eventID
    record = stream_record(lifecycle("ride-a1")[1])
    record["eventName"] = "UPSERT"
    other = copy.deepcopy(record) | {"eventID": "another-stream-record"}
    # When each is enriched twice
    first, again, second = (event["metadata"] for event in invoke([record, copy.deepcopy(record), other]))
    # Then the id derives from the eventID, and occurredAt is DynamoDB's ApproximateCreationDateTime
    assert first == again
    assert first["idempotencyKey"] == f"outbox-rejection#{record['eventID']}"
    assert first["eventId"] == str(uuid.uuid5(REJECTION_ID_NAMESPACE, first["idempotencyKey"]))
    assert second["eventId"] != first["eventId"]
    created = datetime.fromtimestamp(record["dynamodb"]["ApproximateCreationDateTime"], UTC)
    assert datetime.fromisoformat(first["occurredAt"]) == created


def test_a_rejection_without_event_id_or_time_is_still_deterministic() -> None:
    # Given a malformed record with neither an eventID nor a creation time, and the same with keys reordered
    record = stream_record(lifecycle("ride-a1")[1])
    del record["eventID"], record["dynamodb"]["ApproximateCreationDateTime"]
    record["eventName"] = "UPSERT"
    reordered = dict(reversed(list(record.items())))
    changed = copy.deepcopy(record) | {"awsRegion": "eu-west-1"}
    # When enriched
    first, same, different = (event["metadata"] for event in invoke([record, reordered, changed]))
    # Then the id is the digest of the record's canonical JSON, and there is no invented time
    assert first["idempotencyKey"].startswith("outbox-rejection#sha256:")
    assert first["eventId"] == same["eventId"]
    assert different["eventId"] != first["eventId"]
    assert first["occurredAt"] is None


def test_the_handler_refuses_a_payload_that_is_not_a_batch() -> None:
    # Given a single record instead of the array a Pipe sends
    record = stream_record(lifecycle("ride-a1")[0])
    # When / Then the handler fails loudly: the Pipe is misconfigured and nothing can be paired
    with pytest.raises(TypeError, match="JSON array"):
        handler_module.handler(record, FakeLambdaContext())  # type: ignore[arg-type]


def test_the_logic_returns_the_models_the_handler_dumps() -> None:
    # Given a good record, a bad one and one that is not a change
    good = stream_record(lifecycle("ride-a1")[0])
    bad = copy.deepcopy(good) | {"eventName": "UPSERT"}
    modified = copy.deepcopy(good) | {"eventName": "MODIFY"}
    # When the pure logic enriches them
    results = enrich_batch([good, bad, modified])
    # Then it gives a validated ride event, a rejection and a NotAChange; the handler dumps what is forwarded
    assert [type(result) for result in results] == [RideEvent, RecordRejected, NotAChange]
    assert invoke([good, bad, modified]) == [result.model_dump(mode="json") for result in forwarded(results)]


def test_the_sample_event_file_enriches_as_documented() -> None:
    # Given events/pipe-enrichment.json, the input of `sam local invoke EnrichmentFunction`
    batch = json.loads((ROOT / "events" / "pipe-enrichment.json").read_text())
    # When enriched
    events = invoke(batch)
    # Then its one malformed record (version 3 carrying a version-2 event) is rejected, the rest are events
    assert [event["metadata"]["eventType"] for event in events] == [
        "RideRequested",
        "RideAccepted",
        "OutboxRecordRejected",
        "RideStarted",
    ]
    assert "the outbox key (rideId, version) must match" in events[2]["data"]["reason"]
    assert events[2]["data"]["record"] == batch[2]


def test_importing_the_handler_loads_no_aws_sdk() -> None:
    # Given a fresh interpreter that reports every import
    env = {**os.environ, "PYTHONPATH": str(ROOT / "functions")}
    # When it imports the enrichment handler
    report = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import rideonce.handlers.enrichment"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=ROOT,
    ).stderr
    modules = {line.rsplit("|", 1)[-1].strip() for line in report.splitlines() if line.startswith("import time:")}
    # Then the handler is there, and neither boto3 nor botocore's SDK machinery (client, session, ...) is.
    # Powertools' package __init__ imports the bare `botocore` package (its user-agent hook, ~0.5 ms): allowed.
    assert "rideonce.handlers.enrichment" in modules
    assert sorted(name for name in modules if name.split(".")[0] in {"boto3", "botocore"}) in ([], ["botocore"])
    assert not [name for name in modules if name.startswith("aws_xray_sdk")]
