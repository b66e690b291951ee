"""Delivering one batch: the enrichment, then PutEvents on the target bus, partial failures mapped to records.

- The enrichment gets the batch as a bare JSON array of records. Its answer "", {} or [] invokes no
  target and the batch succeeds (https://docs.aws.amazon.com/eventbridge/latest/userguide/pipes-enrichment.html);
  a JSON object or an array of them is put, one event each, Detail = the item. Nothing else is documented
  (null included), so anything else fails the batch loudly.
- More than 10 items fail the batch without invoking the target: an event bus target takes at most 10
  (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-pipes-batching-concurrency.html).
- Source, DetailType and Resources are static, or a dynamic path read from the item (paths.py).
- A PutEvents partial failure fails the batch with its remainder: the records behind the failed entries,
  tied back by the `eventID` the enrichment's items carry (batching page, "Partial batch failure"); when a
  failed item carries none of the batch's eventIDs the whole batch is the remainder.

Not here: what a failure leads to (retry, bisection, dead letter: runner.py). `BatchFailure` is how a
delivery says it failed; `TargetFailed` and `AroundDelivery` are the seam for faults at the target.
"""

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from local.emulators.pipes.config import EVENT_BUS_BATCH_LIMIT, PipeConfig
from local.emulators.pipes.paths import evaluate_json_path, is_json_path
from local.emulators.pipes.state import Batch, PipeStats

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef, PutEventsResponseTypeDef


class BatchFailure(Exception):
    """The batch did not reach the bus whole; the message says why, for logs.

    `remainder` is set when part of the batch did reach the bus: the records still to deliver.
    """

    def __init__(self, message: str, remainder: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.remainder = remainder


class TargetFailed(BatchFailure):
    """Raised by an `around_delivery` hook instead of delivering: the attempt failed as a target error does
    (retried, bisected, then given up to the dead-letter queue)."""


AroundDelivery = Callable[[list[dict[str, Any]], Callable[[], None]], None]
"""Called for every attempt with the batch's records and the attempt itself: it delivers by calling the
attempt (once, or more to deliver the batch again) or fails the attempt by raising `TargetFailed`."""


class BusTarget:
    """The enrichment and the event bus of one pipe; `deliver` sends one batch through both."""

    def __init__(
        self,
        config: PipeConfig,
        enrich: Callable[[Any], Any] | None,
        events: "EventBridgeClient",
        stats: PipeStats,
        on_event: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        self.config = config
        self._enrich = enrich
        self._events = events
        self._stats = stats
        self._on_event = on_event

    def deliver(self, shard_id: str, batch: Batch) -> None:
        """Enrich, then put every item on the bus; BatchFailure unless the bus accepted all of them."""
        items = self._enriched(batch.records)
        if len(items) > EVENT_BUS_BATCH_LIMIT:
            raise BatchFailure(
                f"the enrichment returned {len(items)} items; an event bus target takes at most "
                f"{EVENT_BUS_BATCH_LIMIT} per batch, so the target was not invoked"
            )
        entries = [self._entry(item) for item in items]
        if not entries:
            return
        try:
            response = self._events.put_events(Entries=entries)
        except ClientError as error:
            self._stats.put_failures += len(entries)
            raise BatchFailure(f"PutEvents failed: {error}") from error
        failed = self._accepted(shard_id, batch, entries, items, response)
        if failed:
            self._stats.put_failures += len(failed)
            reasons = "; ".join(
                f"{response['Entries'][index].get('ErrorCode')}: {response['Entries'][index].get('ErrorMessage')}"
                for index in failed
            )
            raise BatchFailure(
                f"PutEvents failed {len(failed)} of {len(entries)} entries: {reasons}",
                remainder=remainder(batch.records, [items[index] for index in failed]),
            )

    def _accepted(
        self,
        shard_id: str,
        batch: Batch,
        entries: "list[PutEventsRequestEntryTypeDef]",
        items: list[Any],
        response: "PutEventsResponseTypeDef",
    ) -> list[int]:
        """Count and announce each entry the bus accepted (PutEvents answers entry by entry, in order); the
        indexes of those it failed."""
        failed: list[int] = []
        for index, (entry, result, item) in enumerate(zip(entries, response["Entries"], items, strict=True)):
            if result.get("ErrorCode") or not result.get("EventId"):
                failed.append(index)
                continue
            self._stats.events_put += 1
            if self._on_event is not None:
                self._on_event(
                    {
                        "pipe": self.config.name,
                        "shardId": shard_id,
                        "eventId": result["EventId"],
                        "eventBusName": self.config.event_bus_name,
                        "source": entry["Source"],
                        "detailType": entry["DetailType"],
                        "detail": item,
                        "attempt": batch.attempts,
                    }
                )
        return failed

    def _enriched(self, records: list[dict[str, Any]]) -> list[Any]:
        """The items for the target: the enrichment's answer (JSON in, JSON out, as Lambda), or the records.

        An answer of "", {} or [] means "invoke no target" (AWS's enrichment page), and the batch succeeds.
        Any other answer that is not a JSON object or an array of them is refused: a null answer, a bare
        string or number is not documented as an event bus target's input.
        """
        if self._enrich is None:
            return list(records)
        self._stats.enrichment_invocations += 1
        try:
            answer = json.loads(json.dumps(self._enrich(json.loads(json.dumps(records)))))
        except Exception as error:  # a function error, whatever the handler raised
            self._stats.enrichment_errors += 1
            name = self.config.enrichment_function
            raise BatchFailure(f"enrichment {name} failed: {type(error).__name__}: {error}") from error
        if answer in ("", {}, []):
            self._stats.empty_enrichments += 1
            return []
        items = answer if isinstance(answer, list) else [answer]
        if not all(isinstance(item, dict) for item in items):
            raise BatchFailure(
                f"the enrichment answered {json.dumps(answer)[:80]}: the local Pipe emulates only a JSON object, "
                'an array of them, or an empty answer ("", {}, [])'
            )
        return items

    def _entry(self, item: Any) -> "PutEventsRequestEntryTypeDef":
        """The PutEvents entry of one item: Detail is the item, the rest the target's parameters."""
        entry: PutEventsRequestEntryTypeDef = {
            "EventBusName": self.config.event_bus_name,
            "Source": self._parameter(self.config.source, item, f"Pipe {self.config.name}"),
            "DetailType": self._parameter(self.config.detail_type, item, "Event from aws:dynamodb"),
            "Detail": json.dumps(item),
        }
        if self.config.resources:
            entry["Resources"] = [self._parameter(resource, item, "") for resource in self.config.resources]
        return entry

    def _parameter(self, value: str | None, item: Any, default: str) -> str:
        """A static target parameter, or the item's value at its JSON path (a string, or a number as text)."""
        if value is None:
            return default
        if not is_json_path(value):
            return value
        try:
            found = evaluate_json_path(item, value)
        except LookupError as error:
            raise BatchFailure(f"target parameter {value}: {error}") from error
        if isinstance(found, str):
            return found
        if isinstance(found, bool | int | float):
            return json.dumps(found)
        raise BatchFailure(f"target parameter {value} is {json.dumps(found)[:80]}, not a string")


def remainder(records: list[dict[str, Any]], failed_items: list[Any]) -> list[dict[str, Any]]:
    """The records behind the failed items, tied back by the `eventID` each item carries.

    AWS's partial batch failure page: the Pipe retries "the remainder of the payload" through the whole
    pipe, enrichment included, and for DynamoDB sources identifies records by `eventID`, which "need to be
    included in any array payload returned by the enrichment". A failed item without the `eventID` of a
    record of this batch cannot be tied back, so the whole batch is the remainder (as an unidentifiable
    item fails the whole batch on the Pipes DynamoDB page). Stream order is kept.
    """
    by_id = {record.get("eventID"): record for record in records}
    wanted = {item.get("eventID") if isinstance(item, dict) else None for item in failed_items}
    if not wanted <= by_id.keys() - {None}:
        return list(records)
    return [record for record in records if record.get("eventID") in wanted]
