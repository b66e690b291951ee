"""Counting what a run calls: every AWS request, each function's invocations and durations, log bytes, bus routing."""

import contextvars
import io
import json
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from local.aws.functions import Handler, LocalFunction
from local.aws.template import ACCOUNT_ID, REGION, Stack
from local.emulators.patterns import EventPattern
from local.emulators.pipes.config import pipe_configs
from local.workload.cost.units import chunks, item_size, put_events_entry_size, read_units, write_units

_current_function: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_function", default=None)


# ---------------------------------------------------------------- counting


class StoredItems(Protocol):
    """The size of an item as stored now, or None when there is none."""

    def size(self, table: str, key: Mapping[str, Any]) -> int | None: ...

    def key_of(self, table: str, item: Mapping[str, Any]) -> dict[str, Any]: ...


class MotoItems:
    """Stored items read straight from moto's DynamoDB backend in this process (the server's, or mock_aws')."""

    def __init__(self, account: str = ACCOUNT_ID, region: str = REGION) -> None:
        self._account = account
        self._region = region

    def _backend(self) -> Any:
        from moto.dynamodb.models import dynamodb_backends

        return dynamodb_backends[self._account][self._region]

    def size(self, table: str, key: Mapping[str, Any]) -> int | None:
        from local.aws.moto_patches import REQUEST_LOCK

        with REQUEST_LOCK:
            try:
                item = self._backend().get_item(table, dict(key))
            except Exception:  # an unknown table or a malformed key: the call itself fails and says why
                return None
            return None if item is None else item_size(item.to_json()["Attributes"])

    def key_of(self, table: str, item: Mapping[str, Any]) -> dict[str, Any]:
        try:
            described = self._backend().get_table(table)
        except Exception:  # an unknown table: the call itself fails and says why
            return {}
        names = [name for name in (described.hash_key_attr, described.range_key_attr) if name]
        return {name: item[name] for name in names if name in item}


@dataclass
class Call:
    """One API call as billed: who made it, and the units it consumed."""

    caller: str | None
    """The function it was made from; None for what AWS itself does (the Pipe, the event source)."""
    service: str
    operation: str
    write_units: float = 0.0
    read_units: float = 0.0
    requests: int = 1
    """Billed requests: SQS per 64 KB chunk of payload; 1 for everything else."""
    records: int = 0
    """Stream records, messages or entries the call carried."""
    event_chunks: int = 0
    """PutEvents: the events billed (64 KB chunks of each entry)."""
    entries: list[dict[str, Any]] = field(default_factory=list)
    """PutEvents: its entries; GetRecords: the stream records it returned."""


class RequestMeter:
    """Counts every API call made by clients of the session it is installed on, from then on."""

    def __init__(self, stored: StoredItems) -> None:
        self._stored = stored
        self.calls: list[Call] = []
        self.recording = True

    def install(self, events: Any) -> None:
        """Register on a botocore event emitter: a session's (`boto3.DEFAULT_SESSION.events`) or a client's."""
        events.register("before-parameter-build", self._before)
        events.register("after-call", self._after)

    def uninstall(self, events: Any) -> None:
        events.unregister("before-parameter-build", self._before)
        events.unregister("after-call", self._after)

    def _before(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        context["cost_params"] = dict(params)
        if model.service_model.service_name == "dynamodb":
            context["cost_before"] = self._sizes_before(model.name, params)

    def _after(self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if not self.recording:
            return
        params = context.get("cost_params", {})
        call = Call(_current_function.get(), model.service_model.service_name, model.name)
        if call.service == "dynamodb":
            self._dynamodb(call, params, parsed, context.get("cost_before", []))
        elif call.service == "dynamodbstreams" and call.operation == "GetRecords":
            call.entries = [dict(record) for record in parsed.get("Records", [])]
            call.records = len(call.entries)
        elif call.service == "events" and call.operation == "PutEvents":
            call.entries = [dict(entry) for entry in params.get("Entries", [])]
            call.records = len(call.entries)
            call.event_chunks = sum(chunks(put_events_entry_size(entry)) for entry in call.entries)
        elif call.service == "sqs":
            _sqs(call, params, parsed)
        self.calls.append(call)

    def _sizes_before(self, operation: str, params: Mapping[str, Any]) -> list[int | None]:
        """Stored sizes before a write, one per written item, in request order."""
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            return [self._stored_size(params)]
        if operation == "TransactWriteItems":
            return [self._stored_size(_action(entry)[1]) for entry in params.get("TransactItems", [])]
        return []

    def _stored_size(self, params: Mapping[str, Any]) -> int | None:
        table = params.get("TableName")
        if not table:  # botocore's own validation refuses the call next, and says why
            return None
        key = params["Key"] if "Key" in params else self._stored.key_of(table, params.get("Item", {}))
        return self._stored.size(table, key)

    def _dynamodb(self, call: Call, params: Mapping[str, Any], parsed: Mapping[str, Any], before: list[Any]) -> None:
        operation = call.operation
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            call.write_units = self._written(operation, params, before[0] if before else None, transactional=False)
            call.records = 1
        elif operation == "TransactWriteItems":
            actions = [_action(entry) for entry in params.get("TransactItems", [])]
            call.records = len(actions)
            call.write_units = sum(
                self._written(kind, action, size, transactional=True)
                for (kind, action), size in zip(actions, before, strict=True)
            )
        elif operation == "GetItem":
            size = self._stored.size(params["TableName"], params["Key"]) or 0
            call.read_units = read_units(size, bool(params.get("ConsistentRead")))
            call.records = 1
        # Anything else keeps zero units and is listed by name in the bill (`not_billed`), never guessed at.

    def _written(self, kind: str, params: Mapping[str, Any], before: int | None, transactional: bool) -> float:
        """Units of one item write: the larger of the item before and after, per the documented rule."""
        if kind == "ConditionCheck":
            return float(write_units(before or 0, transactional))
        after: int | None
        if kind == "PutItem" or kind == "Put":
            after = item_size(params["Item"])
        elif kind == "DeleteItem" or kind == "Delete":
            after = None
        else:
            after = self._stored.size(params["TableName"], params["Key"])
        return float(write_units(max(before or 0, after or 0), transactional))


def _action(entry: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    ((kind, action),) = entry.items()
    return kind, action


def _sqs(call: Call, params: Mapping[str, Any], parsed: Mapping[str, Any]) -> None:
    if call.operation == "ReceiveMessage":
        messages = parsed.get("Messages", [])
        call.records = len(messages)
        call.requests = chunks(sum(len(message.get("Body", "").encode()) for message in messages))
    elif call.operation in ("SendMessage",):
        call.records = 1
        call.requests = chunks(len(str(params.get("MessageBody", "")).encode()))
    elif call.operation in ("DeleteMessageBatch", "ChangeMessageVisibilityBatch", "SendMessageBatch"):
        call.records = len(params.get("Entries", []))
        payload = sum(len(str(entry.get("MessageBody", "")).encode()) for entry in params.get("Entries", []))
        call.requests = chunks(payload)
    else:
        call.records = 1 if call.operation in ("DeleteMessage", "ChangeMessageVisibility") else 0


# ---------------------------------------------------------------- functions and logs


@dataclass
class Invocations:
    """Each function's invocations and their measured durations, in seconds."""

    seconds: dict[str, list[float]] = field(default_factory=dict)

    def add(self, function: str, seconds: float) -> None:
        self.seconds.setdefault(function, []).append(seconds)


@dataclass(frozen=True)
class MeteredFunction(LocalFunction):
    """A template function whose every invocation is timed and marked as the caller of what it does."""

    invocations: Invocations = field(default_factory=Invocations, compare=False)
    built: Handler | None = field(default=None, compare=False)
    """A handler built from the function's own factories, run instead of the deployed one when given."""

    @classmethod
    def of(cls, function: LocalFunction, invocations: Invocations, built: Handler | None = None) -> "MeteredFunction":
        return cls(
            logical_id=function.logical_id,
            handler_path=function.handler_path,
            environment=function.environment,
            timeout_seconds=function.timeout_seconds,
            memory_mb=function.memory_mb,
            code_dir=function.code_dir,
            invocations=invocations,
            built=built,
        )

    def invoke(self, event: Any, handler: Handler | None = None) -> Any:
        token = _current_function.set(self.logical_id)
        started = time.perf_counter()
        try:
            return super().invoke(event, handler or self.built)
        finally:
            self.invocations.add(self.logical_id, time.perf_counter() - started)
            _current_function.reset(token)


@contextmanager
def acting_as(function: str) -> Iterator[None]:
    """Mark what is called inside as called from `function` (for a test that drives a handler directly)."""
    token = _current_function.set(function)
    try:
        yield
    finally:
        _current_function.reset(token)


class LogMeter(io.TextIOBase):
    """A log stream that counts the bytes each function writes (its CloudWatch Logs ingestion), then passes them on."""

    def __init__(self, sink: TextIO) -> None:
        self._sink = sink
        self.bytes: Counter[str] = Counter()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        function = _current_function.get()
        if function is not None:
            self.bytes[function] += len(text.encode())
        return self._sink.write(text)

    def flush(self) -> None:
        if not self._sink.closed:  # the run closes its log file; this stream may be collected later
            self._sink.flush()


# ---------------------------------------------------------------- routing on the bus


@dataclass(frozen=True)
class BusRouting:
    """The template's Pipe filters, and its rules and archives on the bus: which records and entries each takes.

    moto routes the events itself without an API call to count, so each PutEvents entry is matched here
    against the same patterns, with the emulators' EventBridge pattern engine, to count the SQS messages
    the rules send and the bytes the archive keeps; each stream record read against the Pipe's filters,
    to count what enters the Pipe after filtering.
    """

    rules: dict[str, EventPattern]
    """Rule logical id -> its pattern, for rules whose targets are SQS queues (one message per target)."""
    targets: dict[str, int]
    archives: dict[str, EventPattern]
    archive_retention_days: dict[str, int]
    pipe_filters: tuple[EventPattern, ...] = ()

    def enters_pipe(self, record: Mapping[str, Any]) -> bool:
        """A record any filter matches (or every record, with no filter) enters the Pipe and is billed."""
        return not self.pipe_filters or any(pattern.matches(record) for pattern in self.pipe_filters)

    @classmethod
    def from_stack(cls, stack: Stack) -> "BusRouting":
        rules: dict[str, EventPattern] = {}
        targets: dict[str, int] = {}
        for logical_id in stack.of_type("AWS::Events::Rule"):
            props = stack.properties(logical_id)
            if "EventPattern" not in props:
                continue
            sqs_targets = [target for target in props.get("Targets", []) if ":sqs:" in str(target.get("Arn", ""))]
            if sqs_targets:
                rules[logical_id] = EventPattern(props["EventPattern"])
                targets[logical_id] = len(sqs_targets)
        archives: dict[str, EventPattern] = {}
        retention: dict[str, int] = {}
        for logical_id in stack.of_type("AWS::Events::Archive"):
            props = stack.properties(logical_id)
            archives[logical_id] = EventPattern(props.get("EventPattern", {}))
            retention[logical_id] = int(props.get("RetentionDays", 0))
        filters = tuple(pattern for config in pipe_configs(stack) for pattern in config.patterns())
        return cls(rules, targets, archives, retention, filters)

    def envelope(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """The event as EventBridge delivers it: the entry inside its envelope."""
        return {
            "version": "0",
            "id": "00000000-0000-0000-0000-000000000000",
            "detail-type": entry.get("DetailType", ""),
            "source": entry.get("Source", ""),
            "account": ACCOUNT_ID,
            "time": "2026-01-01T00:00:00Z",
            "region": REGION,
            "resources": list(entry.get("Resources", [])),
            "detail": json.loads(entry.get("Detail", "{}")),
        }
