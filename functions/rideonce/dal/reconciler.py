"""What the reconciler reads and writes: the outbox's CommitTime index, the projection, the ride event bus.

Each class is handed its client, so moto or a fake can stand in.
"""

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from rideonce.dal.dynamo import from_item, to_value
from rideonce.logic.reconcile import CommitKey, Window
from rideonce.models.events import OutboxRecord, RideEvent
from rideonce.models.ride import format_timestamp

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef

BATCH_GET_LIMIT = 100
"""BatchGetItem takes at most 100 keys per request."""
PUT_EVENTS_LIMIT = 10
"""PutEvents takes at most 10 entries per request."""
PUT_EVENTS_ATTEMPTS = 3


class PublishError(RuntimeError):
    """EventBridge kept refusing some entries; the run fails and the next one (same window) tries again."""


class OutboxReader:
    """The outbox table: its CommitTime index by window, and a ride's records from a version on."""

    def __init__(self, client: "DynamoDBClient", table: str, commit_index: str) -> None:
        self._client = client
        self._table = table
        self._index = commit_index

    def committed(self, bucket: str, span: Window) -> Iterator[CommitKey]:
        """The changes of one CommitTime partition committed inside the window (keys only, every page)."""
        paginator = self._client.get_paginator("query")
        pages = paginator.paginate(
            TableName=self._table,
            IndexName=self._index,
            KeyConditionExpression="#bucket = :bucket AND #at BETWEEN :start AND :last",
            ExpressionAttributeNames={"#bucket": "commitBucket", "#at": "committedAt"},
            ExpressionAttributeValues={
                ":bucket": to_value(bucket),
                ":start": to_value(format_timestamp(span.start)),
                # BETWEEN is inclusive; the window is half-open, so stop one millisecond (the text's precision) early.
                ":last": to_value(_last_millisecond_before(span)),
            },
        )
        for page in pages:
            for item in page.get("Items", []):
                yield CommitKey(ride_id=item["rideId"]["S"], version=int(item["version"]["N"]))

    def records(self, ride_id: str, from_version: int, to_version: int) -> Iterator[OutboxRecord | None]:
        """The ride's outbox records in version order; None for one that is not a valid record (quarantined)."""
        paginator = self._client.get_paginator("query")
        pages = paginator.paginate(
            TableName=self._table,
            KeyConditionExpression="#ride = :ride AND #version BETWEEN :from AND :to",
            ExpressionAttributeNames={"#ride": "rideId", "#version": "version"},
            ExpressionAttributeValues={
                ":ride": to_value(ride_id),
                ":from": to_value(from_version),
                ":to": to_value(to_version),
            },
            ConsistentRead=True,
        )
        for page in pages:
            for item in page.get("Items", []):
                try:
                    yield OutboxRecord.model_validate(from_item(item))
                except ValidationError:
                    yield None


class ProjectionReader:
    """The consumer's ride projection, read for the version each ride has reached."""

    def __init__(self, client: "DynamoDBClient", table: str) -> None:
        self._client = client
        self._table = table

    def applied_versions(self, ride_ids: Iterable[str]) -> dict[str, int]:
        """{ride id: applied version} for the rides the projection has; strongly consistent."""
        ordered = sorted(set(ride_ids))
        versions: dict[str, int] = {}
        for start in range(0, len(ordered), BATCH_GET_LIMIT):
            pending: dict[str, Any] = {
                self._table: {
                    "Keys": [{"rideId": to_value(ride_id)} for ride_id in ordered[start : start + BATCH_GET_LIMIT]],
                    "ProjectionExpression": "rideId, #version",
                    "ExpressionAttributeNames": {"#version": "version"},
                    "ConsistentRead": True,
                }
            }
            while pending:
                response = self._client.batch_get_item(RequestItems=pending)
                for item in response.get("Responses", {}).get(self._table, []):
                    versions[item["rideId"]["S"]] = int(item["version"]["N"])
                # Keys DynamoDB did not get to (throughput, size) come back to be asked again.
                pending = dict(response.get("UnprocessedKeys") or {})
        return versions


class EventPublisher:
    """Puts ride events on the bus exactly as the Pipe does: the same source, detail type and detail."""

    def __init__(self, client: "EventBridgeClient", bus_name: str, source: str, detail_type: str) -> None:
        self._client = client
        self._bus = bus_name
        self._source = source
        self._detail_type = detail_type

    def publish(self, events: Sequence[RideEvent]) -> int:
        """Put every event, in the given order, 10 per request; failed entries are retried, then raised."""
        for start in range(0, len(events), PUT_EVENTS_LIMIT):
            entries: list[PutEventsRequestEntryTypeDef] = [
                {
                    "EventBusName": self._bus,
                    "Source": self._source,
                    "DetailType": self._detail_type,
                    "Detail": json.dumps(event.model_dump(mode="json"), separators=(",", ":")),
                }
                for event in events[start : start + PUT_EVENTS_LIMIT]
            ]
            self._put(entries)
        return len(events)

    def _put(self, entries: "list[PutEventsRequestEntryTypeDef]") -> None:
        for _ in range(PUT_EVENTS_ATTEMPTS):
            response = self._client.put_events(Entries=entries)
            if not response.get("FailedEntryCount"):
                return
            # PutEvents answers one result per entry, in order; an entry with an ErrorCode was not put.
            entries = [
                entry for entry, result in zip(entries, response["Entries"], strict=True) if result.get("ErrorCode")
            ]
        raise PublishError(f"EventBridge refused {len(entries)} ride events {PUT_EVENTS_ATTEMPTS} times")


def _last_millisecond_before(span: Window) -> str:
    return format_timestamp(span.end - timedelta(milliseconds=1))
