"""Faults at the relay, stream -> Pipe -> bus, through the Pipe emulator's declared seams.

`FaultyEventBridge` (PutEvents partial failures and duplicates) is the Pipe's EventBridge client;
`RelayFaults` acts through the runner's streams client and its `around_delivery` hook: a batch
delivered again, a batch the Pipe gives up on (to its dead-letter queue) and stream records trimmed
before the Pipe read them. The last two lose changes, which only the reconciler brings back.
"""

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from local.chaos.plan import Fault, FaultPlan
from local.chaos.seams import TargetFailed
from rideonce.logic.events import event_identity
from rideonce.models.events import REJECTION_EVENT_TYPE


def record_subject(record: Mapping[str, Any]) -> str:
    """A stream record's subject: the idempotency key of the outbox row (rideId, version) it carries."""
    keys = record.get("dynamodb", {}).get("Keys", {})
    ride_id = str(keys.get("rideId", {}).get("S", "?"))
    version = int(keys.get("version", {}).get("N", "0"))
    return event_identity(ride_id, version).idempotency_key


def entry_subject(entry: Mapping[str, Any]) -> str:
    """A PutEvents entry's subject: a ride event's idempotency key, or the outbox row a rejection carries.

    Not a rejection's own key: that holds the stream's eventID, which differs from run to run.
    """
    try:
        detail = json.loads(entry["Detail"])
        if detail["metadata"].get("eventType") == REJECTION_EVENT_TYPE:
            return f"rejected#{record_subject(detail['data']['record'])}"
        return str(detail["metadata"]["idempotencyKey"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return hashlib.sha256(str(entry.get("Detail")).encode()).hexdigest()


@dataclass
class PutCall:
    """One PutEvents call that reached the bus: when (wall clock, around the call) and how many entries."""

    started: float
    ended: float
    entries: int


class FaultyEventBridge:
    """The Pipe's EventBridge client, with PutEvents faults; every other call passes through.

    - partial failure: one entry (picked by the seed) is reported failed and not put, the others are put,
      so the Pipe re-runs the remainder through the enrichment; the template's enrichment tags no item
      with its record's eventID, so the remainder is the whole batch and its events are put again;
    - duplicate: an accepted entry is put once more, the same detail under a new EventBridge id.
    """

    def __init__(self, client: Any, plan: FaultPlan, clock: Callable[[], float]) -> None:
        self._client = client
        self._plan = plan
        self._clock = clock
        self.calls: list[PutCall] = []
        self.duplicates_put = 0
        self.failed_entries = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_events(self, *, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        subject = entry_subject(Entries[0])
        if self._plan.occurs(Fault.PUT_EVENTS_PARTIAL_FAILURE, subject):
            failed = int(self._plan.draw(Fault.PUT_EVENTS_PARTIAL_FAILURE, subject, -1) * len(Entries))
            sent = [entry for index, entry in enumerate(Entries) if index != failed]
            results = list(self._put(sent)["Entries"]) if sent else []
            results.insert(failed, {"ErrorCode": "InternalFailure", "ErrorMessage": "injected partial failure"})
            self.failed_entries += 1
            return {"FailedEntryCount": sum(1 for result in results if result.get("ErrorCode")), "Entries": results}
        response = self._put(Entries)
        for entry, result in zip(Entries, response["Entries"], strict=True):
            if result.get("EventId") and self._plan.occurs(Fault.PUT_EVENTS_DUPLICATE, entry_subject(entry)):
                self._put([entry])
                self.duplicates_put += 1
        return response

    def _put(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        started = self._clock()
        response: dict[str, Any] = self._client.put_events(Entries=entries)
        self.calls.append(PutCall(started, self._clock(), len(entries)))
        return response


class FaultyStreams:
    """The Pipe's DynamoDB Streams client, with records trimmed before the Pipe read them.

    DynamoDB Streams keep a record 24 hours; a Pipe that falls further behind never reads what was trimmed
    (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Streams.html). A real trim takes the
    oldest records of a shard; here the seed picks records anywhere, decided once per record, so a record
    read again (a fresh iterator) stays gone. For the repair it is the same: the change never reaches the bus.
    """

    def __init__(self, client: Any, plan: FaultPlan) -> None:
        self._client = client
        self._plan = plan
        self._decided: dict[str, bool] = {}
        self.trimmed: dict[str, str] = {}
        """Subject -> sequence number of every record trimmed."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def get_records(self, **kwargs: Any) -> dict[str, Any]:
        page: dict[str, Any] = self._client.get_records(**kwargs)
        kept = []
        for record in page["Records"]:
            sequence = str(record["dynamodb"]["SequenceNumber"])
            subject = record_subject(record)
            if sequence not in self._decided:
                self._decided[sequence] = self._plan.occurs(Fault.STREAM_TRIMMED, subject)
            if self._decided[sequence]:
                self.trimmed[subject] = sequence
            else:
                kept.append(record)
        return {**page, "Records": kept}


class RelayFaults:
    """The faults at a `PipeRunner`'s target, through its `around_delivery` seam, and its streams client.

    - a batch delivered again: after a delivery, the same batch is enriched and put once more;
    - a batch given up: at a batch's first attempt the seed may doom its records; every attempt holding a
      doomed record then fails (`TargetFailed`), so the Pipe bisects, retries each record
      MaximumRetryAttempts times and sends a pointer per record to its dead-letter queue, as on AWS when
      the bus keeps refusing. The records never reach the bus.
    """

    def __init__(self, plan: FaultPlan, streams: Any) -> None:
        self._plan = plan
        self.streams = FaultyStreams(streams, plan)
        self.again = 0
        self.given_up: dict[str, str] = {}
        """Subject -> sequence number of every record in a batch the Pipe gave up on."""
        self._heads: set[str] = set()

    @property
    def trimmed(self) -> dict[str, str]:
        return self.streams.trimmed

    def around_delivery(self, records: list[dict[str, Any]], deliver: Callable[[], None]) -> None:
        if not records:
            deliver()
            return
        subjects = [record_subject(record) for record in records]
        if any(subject in self.given_up for subject in subjects):
            raise TargetFailed("injected: the bus refuses every attempt of this batch")
        head = subjects[0]
        if head not in self._heads:
            self._heads.add(head)
            if self._plan.occurs(Fault.PIPE_GIVES_UP, head):
                for subject, record in zip(subjects, records, strict=True):
                    self.given_up[subject] = str(record["dynamodb"]["SequenceNumber"])
                raise TargetFailed("injected: the bus refuses every attempt of this batch")
        deliver()
        if self._plan.occurs(Fault.PIPE_BATCH_AGAIN, head):
            self.again += 1
            deliver()
