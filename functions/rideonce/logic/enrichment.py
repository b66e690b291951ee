"""Outbox stream records -> ride events: the EventBridge Pipe's enrichment step, pure and deterministic.

A Pipe re-runs a whole batch through enrichment whenever part of it fails to reach the bus, so the same
records must give byte-identical events every time: no clock, no randomness, no I/O. A record that cannot
become a ride event becomes an `OutboxRecordRejected` event carrying the raw record, because raising
would re-run the batch, the bad record with it, until the Pipe gives up on every record in it.

Outbox items are only ever inserted, so only an INSERT carries a change. A MODIFY (someone re-wrote an
item) or a REMOVE (DynamoDB's TTL deleting an item 7 days after its change) is `NotAChange`: skipped,
never quarantined, whether or not the Pipe's filter let it through. The stream record's `eventName`
is one of INSERT, MODIFY, REMOVE:
https://docs.aws.amazon.com/goto/WebAPI/streams-dynamodb-2012-08-10/Record
"""

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.shared.dynamodb_deserializer import TypeDeserializer
from pydantic import JsonValue, ValidationError

from rideonce.logic.identity import event_identity
from rideonce.models.events import (
    REJECTION_EVENT_TYPE,
    REJECTION_SOURCE,
    OutboxRecord,
    RecordRejected,
    Rejection,
    RejectionMetadata,
    RideEvent,
)

# Fixed forever: changing it would give every past rejection a new id.
REJECTION_ID_NAMESPACE = uuid.UUID("0b7d3e55-8a61-4c3f-a2e4-5d9f1c8b6a70")
# Enough of pydantic's findings to fix the record, few enough to read in a queue message.
MAX_REPORTED_ISSUES = 5

# EventBridge refuses a PutEvents entry over 256 KiB, counting Source, DetailType and Detail in UTF-8 and the
# Time as 14 bytes (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevent-size.html), JSON
# nested deeper than 1,100 levels and integers outside 64 bits
# (https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEvents.html). A rejection must always
# get through, or the record it carries is lost with the batch around it.
MAX_ENTRY_BYTES = 256 * 1024
MAX_DETAIL_BYTES = MAX_ENTRY_BYTES - 14 - len(REJECTION_SOURCE) - len(REJECTION_EVENT_TYPE)
MAX_RECORD_DEPTH = 64
INT64 = range(-(2**63), 2**63)
MAX_REASON_CHARS = 2_000
MAX_IDENTITY_CHARS = 256

_deserializer = TypeDeserializer()


# Stream records of an item that already existed: a re-write (MODIFY) or a deletion, TTL's included (REMOVE).
NOT_A_CHANGE = frozenset({"MODIFY", "REMOVE"})


class MalformedRecordError(ValueError):
    """The record cannot become a ride event; the message says why, for the person who redrives it."""


@dataclass(frozen=True)
class NotAChange:
    """A stream record that carries no ride change: the enrichment forwards nothing for it."""

    event_name: str
    stream_event_id: str | None


Enriched = RideEvent | RecordRejected | NotAChange


def enrich_batch(records: Sequence[JsonValue]) -> list[Enriched]:
    """One result per record, in the records' order, so per-shard order holds in what is forwarded."""
    return [enrich(record) for record in records]


def forwarded(results: Sequence[Enriched]) -> list[RideEvent | RecordRejected]:
    """What goes to the bus: every result but the records that are not a change, in order.

    A Pipe enrichment may answer fewer items than it received, and an empty array invokes no target:
    https://docs.aws.amazon.com/eventbridge/latest/userguide/pipes-enrichment.html
    """
    return [result for result in results if not isinstance(result, NotAChange)]


def enrich(record: JsonValue) -> Enriched:
    """The ride event the record carries, its rejection, or NotAChange: never an exception for a bad record."""
    name = record.get("eventName") if isinstance(record, dict) else None
    if isinstance(name, str) and name in NOT_A_CHANGE:  # a list or an object is unhashable: a rejection, later
        return NotAChange(event_name=name, stream_event_id=stream_event_id(record))
    try:
        event = ride_event(record)
    except MalformedRecordError as error:
        return rejection(record, str(error))
    size = detail_bytes(event)
    if size > MAX_DETAIL_BYTES:
        return rejection(record, f"the ride event would be {size} bytes, over EventBridge's entry limit")
    return event


def ride_event(record: JsonValue) -> RideEvent:
    """The event the API committed with the change, validated again against the one event definition."""
    if not isinstance(record, dict):
        raise MalformedRecordError(f"the stream record is a JSON {_json_kind(record)}, not an object")
    name = record.get("eventName")
    if name != "INSERT":
        raise MalformedRecordError(
            f'eventName is {json.dumps(name)}, not "INSERT": outbox records are only ever inserted, '
            "so nothing else carries a new ride event"
        )
    change = record.get("dynamodb")
    image = change.get("NewImage") if isinstance(change, dict) else None
    if not isinstance(image, dict) or not image:
        raise MalformedRecordError(
            "the record has no dynamodb.NewImage: the outbox table's stream must use StreamViewType NEW_IMAGE"
        )
    outbox = _outbox_record(image)
    identity = event_identity(outbox.ride_id, outbox.version)
    metadata = outbox.event.metadata
    if (metadata.event_id, metadata.idempotency_key) != (identity.event_id, identity.idempotency_key):
        raise MalformedRecordError(
            f"event.metadata.eventId/idempotencyKey ({metadata.event_id}, {metadata.idempotency_key}) are not "
            f"the ones derived from (rideId, version) = ({outbox.ride_id}, {outbox.version}): "
            f"({identity.event_id}, {identity.idempotency_key}); consumers would not deduplicate it"
        )
    return outbox.event


def rejection(record: JsonValue, reason: str) -> RecordRejected:
    """The rejection event; its id derives from the stream record, so a re-run batch rejects it identically.

    It always fits one EventBridge entry: a record too large, too deep or with numbers EventBridge refuses
    is replaced by a marker holding its size, digest and as much of its JSON text as fits.
    """
    key = f"outbox-rejection#{_record_identity(record)}"
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[:MAX_REASON_CHARS] + f"... ({len(reason) - MAX_REASON_CHARS} more characters)"
    metadata = RejectionMetadata(
        event_id=str(uuid.uuid5(REJECTION_ID_NAMESPACE, key)),
        idempotency_key=key,
        occurred_at=_approximate_creation(record),
    )
    if _publishable(record):
        whole = RecordRejected(metadata=metadata, data=Rejection(reason=reason, record=record))
        if detail_bytes(whole) <= MAX_DETAIL_BYTES:
            return whole
    return _truncated(metadata, reason, record)


def detail_bytes(event: RideEvent | RecordRejected) -> int:
    """An upper bound on the entry's Detail size: JSON with spaces after separators and every non-ASCII
    character escaped, which no other serialisation of the same value exceeds."""
    return len(json.dumps(event.model_dump(mode="json"), ensure_ascii=True))


def _truncated(metadata: RejectionMetadata, reason: str, record: JsonValue) -> RecordRejected:
    """The rejection with the record's canonical JSON cut to fit, marked so nobody takes it for the record."""
    text = _canonical(record)

    def build(kept: int) -> RecordRejected:
        marker: dict[str, JsonValue] = {
            "truncated": True,
            "originalBytes": len(text.encode()),
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
            "jsonPrefix": text[:kept],
        }
        return RecordRejected(metadata=metadata, data=Rejection(reason=reason, record=marker))

    room = MAX_DETAIL_BYTES - detail_bytes(build(0))
    low, high = 0, len(text)
    while low < high:  # the longest prefix whose escaped form fits the room left (quotes excluded)
        middle = (low + high + 1) // 2
        if len(json.dumps(text[:middle])) - 2 <= room:
            low = middle
        else:
            high = middle - 1
    return build(low)


def _publishable(value: JsonValue, depth: int = 0) -> bool:
    """Whether EventBridge takes the value as it is: nesting and integers within its limits."""
    if depth > MAX_RECORD_DEPTH:
        return False
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return True
    if isinstance(value, int):
        return value in INT64
    children = value.values() if isinstance(value, dict) else value
    return all(_publishable(child, depth + 1) for child in children)


def _canonical(record: JsonValue) -> str:
    try:
        return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except RecursionError:  # deeper than Python serialises; the Lambda runtime could not have parsed it either
        return "(nested too deeply to serialise)"


def stream_event_id(record: JsonValue) -> str | None:
    """The stream's own id of the record (`eventID`), for logs that point at it without copying it."""
    value = record.get("eventID") if isinstance(record, dict) else None
    return value if isinstance(value, str) and value else None


def _outbox_record(image: dict[str, Any]) -> OutboxRecord:
    plain: dict[str, Any] = {}
    for attribute, value in image.items():
        try:
            plain[attribute] = _deserializer.deserialize(value)
        except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as error:
            raise MalformedRecordError(
                f"dynamodb.NewImage.{attribute} is not DynamoDB JSON: {json.dumps(value, sort_keys=True)[:200]}"
            ) from error
    try:
        return OutboxRecord.model_validate(plain)
    except ValidationError as error:
        issues = error.errors(include_url=False, include_context=False, include_input=False)
        listed = "; ".join(
            f"{'.'.join(str(part) for part in issue['loc']) or '(item)'}: {issue['msg']}"
            for issue in issues[:MAX_REPORTED_ISSUES]
        )
        more = f" (and {len(issues) - MAX_REPORTED_ISSUES} more)" if len(issues) > MAX_REPORTED_ISSUES else ""
        raise MalformedRecordError(f"dynamodb.NewImage is not a valid outbox record: {listed}{more}") from error


def _record_identity(record: JsonValue) -> str:
    """The stream's eventID when there is one of sane length, else a digest of the record's canonical JSON."""
    event_id = stream_event_id(record)
    if event_id is not None and len(event_id) <= MAX_IDENTITY_CHARS:
        return event_id
    return "sha256:" + hashlib.sha256(_canonical(record).encode()).hexdigest()


def _approximate_creation(record: JsonValue) -> datetime | None:
    """When DynamoDB wrote the record (epoch seconds in the record), read from the record, never a clock."""
    change = record.get("dynamodb") if isinstance(record, dict) else None
    seconds = change.get("ApproximateCreationDateTime") if isinstance(change, dict) else None
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _json_kind(value: JsonValue) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else "array"
