"""The operations: each reads or repairs one stack (a `Target`) and returns a `Report` of what it saw and did.

Every command that writes is a dry run unless `apply` is set, and is safe to run twice: a second run finds
nothing left to do, or repeats only what the consumer's deduplication drops (an event already applied).
"""

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from botocore.config import Config
from pydantic import ValidationError

from ops.aws import Archive, Message, MessageMover, Queue, Tables
from ops.checks import (
    Check,
    applied_in_order,
    charges_match_fares,
    completed_fares,
    projection_matches_rides,
    queues_empty,
    records_applied,
)
from ops.target import Target
from rideonce.dal.dynamo import from_item
from rideonce.dal.reconciler import EventPublisher, OutboxReader, ProjectionReader
from rideonce.logic.identity import event_identity
from rideonce.logic.reconcile import Window, buckets
from rideonce.models.events import OutboxRecord, RideEvent
from rideonce.models.ride import format_timestamp
from rideonce.services.reconciler import Reconciler
from rideonce.settings import ReconcilerSettings

RECONCILER_FUNCTION = "ReconcilerFunctionName"
"""The output naming the reconciler: its environment holds the outbox index, the bus, the relay's source
and detail type, the period and the grace, so the commands never restate them."""
PARKING_QUEUES = {
    "PipeDeadLetterQueue": "PipeDeadLetterQueueUrl",
    "QuarantineQueue": "QuarantineQueueUrl",
    "RuleDeadLetterQueue": "RuleDeadLetterQueueUrl",
    "ConsumerDeadLetterQueue": "ConsumerDeadLetterQueueUrl",
}
HOLD_SECONDS = 120
"""How long a message read by `redrive quarantine` stays hidden from other readers while it is handled."""
ROWS_SHOWN = 50


@dataclass
class Report:
    """What a command saw and did, as a table and notes; `ok` False makes the exit status 1."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ok: bool = True
    counts: dict[str, int] = field(default_factory=dict)
    """The figures a caller checks (moved, republished, refused...), by name."""


def _mode(apply: bool) -> str:
    return "applied" if apply else "dry run (nothing written; --apply to write)"


def _reconciler_settings(target: Target) -> ReconcilerSettings:
    return ReconcilerSettings.from_env(target.function_environment(RECONCILER_FUNCTION))


class Recorder:
    """A dry run's bus: records what would be put, puts nothing."""

    def __init__(self) -> None:
        self.events: list[RideEvent] = []

    def publish(self, events: Sequence[RideEvent]) -> int:
        self.events.extend(events)
        return len(events)


# ---------------------------------------------------------------- redrive consumer-dlq


def redrive_consumer_dlq(target: Target, apply: bool, timeout_seconds: float = 900) -> Report:
    """Move every message of ConsumerDeadLetterQueue back to RideEventsQueue; the consumer drops what was applied.

    On AWS this is SQS's message move task (StartMessageMoveTask from the DLQ to RideEventsQueue, then
    ListMessageMoveTasks until it is done):
    https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_StartMessageMoveTask.html
    moto has no message move task, so on the local stack the same outcome comes from ReceiveMessage,
    SendMessage to RideEventsQueue and DeleteMessage, message by message; a crash between the send and the
    delete leaves a copy in both queues, which the consumer's deduplication absorbs.
    """
    sqs = target.sqs()
    source = Queue(sqs, target.outputs["ConsumerDeadLetterQueueUrl"])
    destination = Queue(sqs, target.outputs["RideEventsQueueUrl"])
    report = Report(f"redrive consumer-dlq: {source.name} -> {destination.name}, {_mode(apply)}", ["step", "result"])
    parked = source.depth()
    report.rows.append(["messages parked in the dead-letter queue", str(parked)])
    report.counts = {"parked": parked, "moved": 0}
    if target.is_local:
        report.notes.append(
            "local stack: moto has no StartMessageMoveTask, so messages move by ReceiveMessage, SendMessage, "
            "DeleteMessage"
        )
        if not apply:
            report.rows.append(["would move", str(parked)])
            return report
        moved = 0
        while batch := source.take(HOLD_SECONDS):
            for message in batch:
                destination.send(message.body)
                source.delete(message)
                moved += 1
        report.rows.append(["moved", str(moved)])
        report.counts["moved"] = moved
        return report
    mover = MessageMover(sqs)
    source_arn = source.arn()
    running = mover.running(source_arn)
    if running:
        report.rows.append(["a move task is already running", str(running.get("TaskHandle", ""))])
        report.notes.append("SQS runs one move task per queue at a time: not starting another")
        return report
    if not apply:
        report.rows.append(["would start a message move task for", f"{parked} messages"])
        return report
    if parked == 0:
        report.rows.append(["nothing to move", "no task started"])
        return report
    handle = mover.start(source_arn, destination.arn())
    report.rows.append(["started message move task", handle])
    task = mover.wait(source_arn, timeout_seconds)
    moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
    report.rows.append(["task status", str(task.get("Status"))])
    report.rows.append(["moved", str(moved)])
    report.counts["moved"] = moved
    report.ok = task.get("Status") != "FAILED"
    if task.get("FailureReason"):
        report.notes.append(f"task failed: {task['FailureReason']}")
    return report


# ---------------------------------------------------------------- redrive quarantine


def _outbox_key(body: str) -> tuple[str, int] | None:
    """(rideId, version) of the outbox item a quarantine message's raw stream record names, if it names one."""
    try:
        record = json.loads(body)["detail"]["data"]["record"]
        image = record["dynamodb"].get("Keys") or record["dynamodb"]["NewImage"]
        return str(image["rideId"]["S"]), int(image["version"]["N"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def redrive_quarantine(target: Target, apply: bool) -> Report:
    """Put each quarantined outbox record, once fixed in the table, back through the Pipe as a new INSERT.

    Re-writing the item in place is a MODIFY, which the enrichment skips; so the item is deleted and put
    again (a REMOVE, then an INSERT, in that order for the item), which the Pipe turns into the event
    through the same validation as every other change. Then the quarantine message is deleted. Refused,
    and left in the queue: a message whose key names no outbox item any more (expired or deleted), and an
    item that is still not a valid outbox record (fix it first).
    """
    tables = Tables(target.dynamodb())
    queue = Queue(target.sqs(), target.outputs["QuarantineQueueUrl"])
    outbox_table = target.outputs["OutboxTableName"]
    report = Report(
        f"redrive quarantine: {queue.name} -> {outbox_table} (delete and put), {_mode(apply)}",
        ["message", "outbox key", "action"],
    )
    messages = queue.take(HOLD_SECONDS)
    keep: list[Message] = []
    done: set[tuple[str, int]] = set()
    counts = {"quarantined": len(messages), "redriven": 0, "refused": 0, "duplicates": 0}
    for message in messages:
        key = _outbox_key(message.body)
        label = f"{key[0]} v{key[1]}" if key else "-"
        if key is None:
            action, redrive = "refused: the message names no outbox key (not a quarantined stream record)", False
        elif key in done:
            action, redrive = "same record as an earlier message: message deleted", None
        else:
            raw = tables.get_raw(outbox_table, {"rideId": key[0], "version": key[1]})
            if raw is None:
                action, redrive = "refused: no outbox item has this key any more (expired or deleted)", False
            else:
                try:
                    OutboxRecord.model_validate(from_item(raw))
                except ValidationError as error:
                    first = error.errors()[0]
                    where = ".".join(str(part) for part in first["loc"])
                    action, redrive = f"refused: the item is still not a valid record ({where}: {first['msg']})", False
                else:
                    action, redrive = "delete the item and put it again (a new INSERT), delete the message", True
                    if apply:
                        tables.reinsert(outbox_table, {"rideId": key[0], "version": key[1]}, raw)
                    done.add(key)
        if redrive is False:
            counts["refused"] += 1
            keep.append(message)
        elif redrive is None:
            counts["duplicates"] += 1
            if apply:
                queue.delete(message)
            else:
                keep.append(message)
        else:
            counts["redriven"] += 1
            if apply:
                queue.delete(message)
            else:
                keep.append(message)
        report.rows.append([message.message_id, label, action if apply or redrive is False else f"would {action}"])
    queue.release(keep)
    report.counts = counts
    report.notes.append(
        f"{counts['quarantined']} quarantined, {counts['redriven']} redriven, {counts['refused']} refused "
        f"(left in the queue), {counts['duplicates']} duplicate messages"
    )
    if not messages:
        report.notes.append("the quarantine queue is empty")
    return report


# ---------------------------------------------------------------- republish


def republish(target: Target, since: datetime, until: datetime, apply: bool) -> Report:
    """Rebuild the events of every change committed in [since, until) from the outbox table and put them on the bus.

    The same reader (the CommitTime index) and publisher (the Pipe's source and detail type) as the
    reconciler, so each event is the one the Pipe would have put; the consumer drops what was applied.
    This is the redrive for a Pipe dead-letter message: its arrival times bound the window.
    """
    settings = _reconciler_settings(target)
    dynamodb = target.dynamodb()
    outbox = OutboxReader(dynamodb, settings.outbox_table_name, settings.outbox_commit_index_name)
    span = Window(start=since, end=until)
    versions: dict[str, list[int]] = defaultdict(list)
    for bucket in buckets(span):
        for key in outbox.committed(bucket, span):
            versions[key.ride_id].append(key.version)
    applied = ProjectionReader(dynamodb, settings.ride_projection_table_name).applied_versions(versions)
    report = Report(
        f"republish {format_timestamp(since)} .. {format_timestamp(until)} onto {settings.event_bus_name}, "
        f"{_mode(apply)}",
        ["ride", "versions committed in the window", "projection at", "events"],
    )
    events: list[RideEvent] = []
    unreadable = 0
    for ride_id in sorted(versions):
        ride_events = []
        for record in outbox.records(ride_id, min(versions[ride_id]), max(versions[ride_id])):
            if record is None:
                unreadable += 1
            else:
                ride_events.append(record.event)
        events.extend(ride_events)
        if len(report.rows) < ROWS_SHOWN:
            report.rows.append(
                [
                    ride_id,
                    ", ".join(f"v{version}" for version in sorted(versions[ride_id])),
                    f"v{applied.get(ride_id, 0)}",
                    str(len(ride_events)),
                ]
            )
    if len(versions) > ROWS_SHOWN:
        report.notes.append(f"and {len(versions) - ROWS_SHOWN} more rides")
    if apply:
        EventPublisher(
            target.events(), settings.event_bus_name, settings.relay_event_source, settings.relay_detail_type
        ).publish(events)
    behind = sum(1 for ride_id, found in versions.items() if applied.get(ride_id, 0) < max(found))
    report.counts = {"changes": sum(len(found) for found in versions.values()), "events": len(events)}
    report.counts |= {"unreadable": unreadable, "rides_behind": behind}
    report.notes.append(
        f"{report.counts['changes']} changes of {len(versions)} rides; {len(events)} events "
        f"{'put on the bus' if apply else 'would be put on the bus'}; {behind} rides' projection behind"
    )
    if unreadable:
        report.notes.append(f"{unreadable} outbox records are not valid records: see `redrive quarantine`")
    return report


# ---------------------------------------------------------------- replay


def replay_name(since: datetime, until: datetime) -> str:
    """One name per window, so a second run finds the first replay instead of starting another."""
    return f"ops-{since.astimezone(UTC):%Y%m%dT%H%M%S}-{until.astimezone(UTC):%Y%m%dT%H%M%S}"


def replay(
    target: Target,
    since: datetime,
    until: datetime,
    apply: bool,
    name: str | None = None,
    timeout_seconds: float = 3600,
) -> Report:
    """StartReplay of the bus archive's events of [since, until) onto the bus, then DescribeReplay until it is done.

    Replays are not ordered and re-deliver what was applied; the consumer drops duplicates and defers early
    versions. The replay is named after its window, so running the command again reports the replay
    already made instead of making another (give `--name` to replay a window again on purpose).
    https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_StartReplay.html
    """
    # moto replays synchronously inside StartReplay: wait for its answer rather than retry a started replay.
    events = target.events(Config(read_timeout=900, retries={"max_attempts": 1}))
    archive = Archive(events, target.outputs["RideEventArchiveName"])
    bus_arn = target.outputs["RideEventBusArn"]
    name = name or replay_name(since, until)
    described = archive.describe()
    report = Report(
        f"replay {archive.name} {format_timestamp(since)} .. {format_timestamp(until)} as {name}, {_mode(apply)}",
        ["step", "result"],
    )
    report.rows.append(["archive events (all time)", str(described.get("EventCount", 0))])
    report.counts = {"started": 0}
    newest = datetime.now(UTC) - timedelta(seconds=target.archive_delay_seconds)
    if until > newest:
        report.notes.append(
            f"events of the last {target.archive_delay_seconds:.0f} s may not be archived yet "
            "(https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-archive.html)"
        )
    existing = archive.replay_state(name)
    if existing is not None:
        report.rows.append(["replay already made", f"{name}: {existing.get('State')}"])
        report.notes.append("not started again; pass --name to replay this window once more")
        return report
    if not apply:
        report.rows.append(["would start replay", f"{name} onto {bus_arn}"])
        return report
    archive.replay(name, since, until, bus_arn)
    report.counts["started"] = 1
    state = archive.wait(name, timeout_seconds)
    report.rows.append(["replay state", str(state.get("State"))])
    if state.get("EventLastReplayedTime"):
        report.rows.append(["last event replayed", str(state["EventLastReplayedTime"])])
    report.ok = state.get("State") == "COMPLETED"
    if state.get("State") not in ("COMPLETED", "CANCELLED", "FAILED"):
        report.notes.append(f"not finished after {timeout_seconds:.0f} s: run the command again to see its state")
    if state.get("StateReason"):
        report.notes.append(str(state["StateReason"]))
    return report


# ---------------------------------------------------------------- reconcile


def reconcile(target: Target, at: datetime | None, apply: bool) -> Report:
    """One run of the reconciler's service (the Lambda's code and settings) as if the schedule fired at `at`."""
    settings = _reconciler_settings(target)
    recorder = None if apply else Recorder()
    reconciler = Reconciler.from_settings(settings, target.dynamodb(), target.events(), bus=recorder)
    result = reconciler.run(at or datetime.now(UTC))
    report = Report(
        f"reconcile (as scheduled at {format_timestamp(at or datetime.now(UTC))}), {_mode(apply)}", ["", ""]
    )
    report.rows += [
        ["window", f"{format_timestamp(result.window.start)} .. {format_timestamp(result.window.end)}"],
        ["changes checked", str(result.checked)],
        ["rides behind", str(result.rides_behind)],
        ["events republished" if apply else "events that would be republished", str(result.republished)],
        ["unreadable records (quarantined)", str(result.unreadable)],
    ]
    report.counts = {
        "checked": result.checked,
        "rides_behind": result.rides_behind,
        "republished": result.republished,
        "unreadable": result.unreadable,
    }
    return report


# ---------------------------------------------------------------- audit


def audit(target: Target) -> Report:
    """The end-to-end invariants of `make demo`, on any stack, from its tables and queues.

    Reads every item of five tables (a scan each: its cost grows with the tables; run it when you need the
    answer, not on a schedule). Changes committed in the last seconds may still be on their way and show
    as not applied yet; run it again.
    """
    tables = Tables(target.dynamodb())
    outputs = target.outputs
    rides = {item["rideId"]: item for item in tables.scan(outputs["RidesTableName"])}
    outbox = {(str(item["rideId"]), int(item["version"])) for item in tables.scan(outputs["OutboxTableName"])}
    keys = tables.scan(outputs["ProcessedKeysTableName"])
    projection = {item["rideId"]: item for item in tables.scan(outputs["RideProjectionTableName"])}
    accounts = {item["riderId"]: item for item in tables.scan(outputs["RiderAccountsTableName"])}
    sqs = target.sqs()
    depths = {name: Queue(sqs, outputs[output]).depth() for name, output in PARKING_QUEUES.items()}
    checks: list[Check] = [
        charges_match_fares(completed_fares(rides.values()), accounts),
        projection_matches_rides(rides, projection),
        records_applied(outbox, keys, keys_outlive_records=True),
        applied_in_order(keys),
        queues_empty(depths),
    ]
    report = Report(f"audit of {target.name}", ["invariant", "held", "detail"])
    report.rows = [[check.name, "yes" if check.held else "NO", check.detail] for check in checks]
    report.ok = all(check.held for check in checks)
    report.counts = {"broken": sum(1 for check in checks if not check.held)} | depths
    report.notes.append("all invariants held" if report.ok else "an invariant broke")
    return report


# ---------------------------------------------------------------- trace


def trace(target: Target, ride_id: str) -> Report:
    """Every hop's record of one ride, as a timeline: outbox versions, processed keys, projection, charges.

    The bus archive is not listed: EventBridge has no API that lists or reads an archive's events
    (DescribeArchive gives counts; a replay puts them back on the bus).
    https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_DescribeArchive.html
    """
    tables = Tables(target.dynamodb())
    outputs = target.outputs
    report = Report(f"trace of ride {ride_id} on {target.name}", ["time", "hop", "record"])
    timeline: list[tuple[str, str, str]] = []
    rider_id: str | None = None
    versions: list[int] = []
    for raw in tables.query_ride(outputs["OutboxTableName"], ride_id):
        item = from_item(raw)
        version = int(item["version"])
        versions.append(version)
        try:
            record = OutboxRecord.model_validate(item)
        except ValidationError:
            timeline.append(("", "outbox", f"v{version}: not a valid record (quarantined by the enrichment)"))
            continue
        rider_id = record.event.data.rider_id
        timeline.append(
            (
                format_timestamp(record.committed_at),
                "outbox",
                f"v{version} {record.event.metadata.event_type} committed, key {record.event.metadata.idempotency_key}",
            )
        )
    for version in versions:
        key = tables.get(
            outputs["ProcessedKeysTableName"], {"idempotencyKey": event_identity(ride_id, version).idempotency_key}
        )
        if key is None:
            timeline.append(("", "consumer", f"v{version} not applied (no processed key)"))
        else:
            timeline.append((str(key["processedAt"]), "consumer", f"v{version} {key['eventType']} applied"))
    timeline.sort(key=lambda row: (row[0] == "", row[0]))
    report.rows = [list(row) for row in timeline]
    ride = tables.get(outputs["RidesTableName"], {"rideId": ride_id})
    projected = tables.get(outputs["RideProjectionTableName"], {"rideId": ride_id})
    rider_id = rider_id or (str(ride["riderId"]) if ride else None)
    report.rows.append(["now", "rides table", _state(ride)])
    report.rows.append(["now", "projection", _state(projected)])
    if rider_id:
        account = tables.get(outputs["RiderAccountsTableName"], {"riderId": rider_id}) or {}
        charged = Decimal(str(account.get("chargedEUR", 0)))
        report.rows.append(
            [
                "now",
                "rider account",
                f"{rider_id}: charged {charged} EUR in {int(account.get('chargeCount', 0))} charges",
            ]
        )
    report.rows.append(["-", "bus archive", "not listable: EventBridge has no API to list an archive's events"])
    report.counts = {
        "outbox_versions": len(versions),
        "applied": sum(1 for row in timeline if row[0] and row[1] == "consumer"),
    }
    if not versions and ride is None:
        report.ok = False
        report.notes.append(f"no ride {ride_id} in the rides table or the outbox (the outbox keeps changes 7 days)")
    return report


def _state(item: dict[str, Any] | None) -> str:
    if item is None:
        return "absent"
    fare = item.get("fare")
    fare_text = f", fare {fare['amount']} {fare['currency']}" if isinstance(fare, dict) else ""
    return f"v{item.get('version')} {item.get('status')}{fare_text}"
