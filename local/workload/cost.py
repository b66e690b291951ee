"""What a run of the local stack would cost on AWS: every request counted where it is made, then billed.

Counting: `RequestMeter` hooks botocore's events on a session, so every client built from it afterwards
(the handlers', the Pipe's, the event source's) reports each API call once, with its parameters and its
answer, and with the function it was made from (`MeteredFunction` marks the invocation it runs, and times
it). `LogMeter` counts the bytes each function writes to its log. Nothing here changes what is called.

Billing units, by the documented rules:
- DynamoDB (https://aws.amazon.com/dynamodb/pricing/on-demand/,
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html): a write
  costs 1 unit per started KB of the larger of the item before and after it; a transactional write twice
  that; a read 1 unit per started 4 KB strongly consistent, half eventually consistent, twice in a
  transaction. A write whose condition fails is still a write of that item. A cancelled transaction is
  counted at the units of its whole content: no AWS page says what it consumes, so this is an upper bound.
  Item sizes are the stored items', read from moto's tables in this process.
- DynamoDB Streams: one read request unit per GetRecords call; no other Streams API is charged
  (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CostOptimization_StreamsUsage.html).
- EventBridge: each 64 KB chunk of an entry is one event (https://aws.amazon.com/eventbridge/pricing/);
  an entry's size follows https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevent-size.html
  (14 bytes of Time, Source, DetailType, Detail, Resources).
- SQS: each request is billed per 64 KB chunk of its payload; a batch of up to 10 messages is one request.
- Lambda: duration rounded up to 1 ms per invocation (https://aws.amazon.com/lambda/pricing/), times the
  function's memory in GB.
"""

import contextvars
import io
import json
import math
import time
import tomllib
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, TextIO

from local.aws.functions import Handler, LocalFunction
from local.aws.template import ACCOUNT_ID, REGION, ROOT, Stack
from local.emulators.pipe import EventPattern, pipe_configs

PRICES_PATH = ROOT / "docs" / "prices.toml"
WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096
CHUNK_BYTES = 64 * 1024
"""SQS requests, EventBridge events and Pipe requests are billed per 64 KB chunk of payload."""
PUT_EVENTS_TIME_BYTES = 14
GB = 1024**3

_current_function: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_function", default=None)


# ---------------------------------------------------------------- units


def item_size(item: Mapping[str, Any]) -> int:
    """Bytes DynamoDB counts for an item (DynamoDB JSON): every attribute's name plus its value."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: Mapping[str, Any]) -> int:
    ((kind, data),) = value.items()
    if kind == "S":
        return len(str(data).encode())
    if kind == "N":
        digits = Decimal(str(data)).normalize().as_tuple().digits
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + item_size(data)
    if kind == "L":
        return 3 + sum(_value_size(element) for element in data)
    if kind in ("SS", "NS", "BS"):
        return sum(_value_size({kind[0]: element}) for element in data)
    raise ValueError(f"no size for a {kind} value")


def write_units(size: int, transactional: bool = False) -> int:
    """Write request units of one item write: 1 per started KB (at least 1), twice in a transaction."""
    units = max(1, math.ceil(size / WRITE_UNIT_BYTES))
    return units * 2 if transactional else units


def read_units(size: int, consistent: bool, transactional: bool = False) -> float:
    """Read request units of one item read: 1 per started 4 KB strongly consistent, half that eventually
    consistent, twice that in a transaction."""
    blocks = max(1, math.ceil(size / READ_UNIT_BYTES))
    if transactional:
        return float(blocks * 2)
    return float(blocks) if consistent else blocks / 2


def chunks(size: int, chunk: int = CHUNK_BYTES) -> int:
    """Billed requests or events for a payload: one per started chunk, at least one."""
    return max(1, math.ceil(size / chunk))


def billed_milliseconds(seconds: float) -> int:
    """Lambda's billed duration: rounded up to the next millisecond."""
    return max(1, math.ceil(seconds * 1000))


def gb_seconds(memory_mb: int, milliseconds: int) -> float:
    return memory_mb / 1024 * milliseconds / 1000


def put_events_entry_size(entry: Mapping[str, Any]) -> int:
    """An entry's size as EventBridge computes it for PutEvents: Time, Source, DetailType, Detail, Resources."""
    size = PUT_EVENTS_TIME_BYTES
    for name in ("Source", "DetailType", "Detail"):
        size += len(str(entry.get(name, "")).encode())
    size += sum(len(resource.encode()) for resource in entry.get("Resources", []))
    return size


# ---------------------------------------------------------------- prices


@dataclass(frozen=True)
class Price:
    key: str
    usd: float | None
    per: int
    unit: str
    source: str
    found_in: str
    read: str
    missing: str = ""

    def cost(self, quantity: float) -> float:
        """Dollars for `quantity` units; nothing when no page gave the price (the report says so)."""
        return 0.0 if self.usd is None else quantity * self.usd / self.per


def load_prices(path: Path = PRICES_PATH) -> dict[str, Price]:
    table = tomllib.loads(path.read_text())
    return {
        key: Price(
            key=key,
            usd=spec.get("usd"),
            per=int(spec.get("per", 1)),
            unit=spec["unit"],
            source=spec["source"],
            found_in=spec.get("found_in", ""),
            read=spec["read"],
            missing=spec.get("missing", ""),
        )
        for key, spec in table["prices"].items()
    }


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

    @classmethod
    def of(cls, function: LocalFunction, invocations: Invocations) -> "MeteredFunction":
        return cls(
            logical_id=function.logical_id,
            handler_path=function.handler_path,
            environment=function.environment,
            timeout_seconds=function.timeout_seconds,
            memory_mb=function.memory_mb,
            code_dir=function.code_dir,
            invocations=invocations,
        )

    def invoke(self, event: Any, handler: Handler | None = None) -> Any:
        token = _current_function.set(self.logical_id)
        started = time.perf_counter()
        try:
            return super().invoke(event, handler)
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


# ---------------------------------------------------------------- the bill


@dataclass(frozen=True)
class Line:
    """One billed dimension of one hop: units per ride change and dollars per million ride changes."""

    hop: str
    what: str
    per_change: float
    price: str
    usd_per_million: float


@dataclass
class Bill:
    design: str
    changes: int
    lines: list[Line] = field(default_factory=list)
    not_billed: dict[str, int] = field(default_factory=dict)
    """Calls that AWS would not make or not bill (the emulators' bookkeeping, control plane), by name."""
    idle: dict[str, int] = field(default_factory=dict)
    """Polls that returned nothing: they scale with time, not with traffic, so they are priced apart."""
    lambda_ms: dict[str, list[int]] = field(default_factory=dict)
    batches: dict[str, float] = field(default_factory=dict)
    """Records per batch at each batching hop: they set the per-batch lines, and follow this run's cadence."""

    def add(self, hop: str, what: str, quantity: float, price: Price) -> None:
        per_change = quantity / self.changes
        self.lines.append(Line(hop, what, per_change, price.key, price.cost(per_change) * 1_000_000))

    def note(self, where: dict[str, int], what: str, count: int = 1) -> None:
        """Count calls that are not priced per change (plain dicts: `asdict` rebuilds a Counter wrongly)."""
        where[what] = where.get(what, 0) + count

    def total(self, hop: str | None = None) -> float:
        return sum(line.usd_per_million for line in self.lines if hop is None or line.hop == hop)

    def counted_total(self) -> float:
        """The total without the GB-seconds: what the counts alone cost, whatever this machine's speed."""
        return sum(line.usd_per_million for line in self.lines if "GB-seconds" not in line.what)

    def hops(self) -> list[str]:
        """The hops in the pipeline's order."""
        present = {line.hop for line in self.lines}
        return [hop for hop in HOPS if hop in present]


API = "client -> API (API Gateway, ApiFunction, DynamoDB)"
RELAY = "outbox stream -> Pipe (Streams reads, Pipe, EnrichmentFunction)"
BUS = "Pipe -> bus -> queue (EventBridge, archive, SQS sends)"
CONSUMER = "queue -> consumer (SQS polls, ConsumerFunction, DynamoDB)"
LOGS = "CloudWatch Logs (the functions' logs and EMF metrics)"
HOPS = (API, RELAY, BUS, CONSUMER, LOGS)
HOP_OF_FUNCTION = {"ApiFunction": API, "EnrichmentFunction": RELAY, "ConsumerFunction": CONSUMER}


def bill_run(
    design: str,
    changes: int,
    api_requests: int,
    calls: list[Call],
    invocations: Invocations,
    log_bytes: Mapping[str, int],
    functions: Mapping[str, LocalFunction],
    routing: BusRouting,
    prices: Mapping[str, Price],
) -> Bill:
    """The bill of one run: every counted call and invocation, per hop, per ride change.

    `api_requests` counts the HTTP API requests the clients made, retries included. Each is one 512 KB
    metering increment: the API refuses a body over 16 KiB (MAX_BODY_BYTES) with a 413.
    """
    result = Bill(design, changes)
    result.add(API, "HTTP API requests", api_requests, prices["http_api_request"])
    for function, hop in HOP_OF_FUNCTION.items():
        durations = [billed_milliseconds(seconds) for seconds in invocations.seconds.get(function, [])]
        result.lambda_ms[function] = durations
        result.add(hop, f"{function} invocations", len(durations), prices["lambda_request"])
        memory = functions[function].memory_mb
        result.add(
            hop,
            f"{function} GB-seconds ({memory} MB)",
            sum(gb_seconds(memory, ms) for ms in durations),
            prices["lambda_arm64_gb_second"],
        )
        if function != "EnrichmentFunction":
            dynamodb = [call for call in calls if call.caller == function and call.service == "dynamodb"]
            result.add(
                hop,
                "DynamoDB write request units",
                sum(c.write_units for c in dynamodb),
                prices["dynamodb_write_request_unit"],
            )
            result.add(
                hop,
                "DynamoDB read request units",
                sum(c.read_units for c in dynamodb),
                prices["dynamodb_read_request_unit"],
            )
    _relay_and_bus(result, calls, routing, prices)
    _queue(result, calls, prices)
    _batches(result, calls)
    for function in HOP_OF_FUNCTION:
        result.add(LOGS, f"{function} log GB", log_bytes.get(function, 0) / GB, prices["cloudwatch_logs_ingested_gb"])
    for call in calls:
        if call.service == "dynamodb" and not (call.write_units or call.read_units):
            result.note(result.not_billed, f"dynamodb {call.operation}")
    return result


def _relay_and_bus(result: Bill, calls: list[Call], routing: BusRouting, prices: Mapping[str, Price]) -> None:
    reads = [c for c in calls if c.service == "dynamodbstreams" and c.operation == "GetRecords" and c.caller is None]
    result.add(
        RELAY,
        "Streams GetRecords that returned records",
        sum(1 for c in reads if c.records),
        prices["dynamodb_streams_read_request"],
    )
    result.note(result.idle, "Streams GetRecords that returned nothing", sum(1 for c in reads if not c.records))
    for call in calls:
        if call.service == "dynamodbstreams" and call.operation != "GetRecords":
            result.note(result.not_billed, f"dynamodbstreams {call.operation}")
    puts = [c for c in calls if c.service == "events" and c.operation == "PutEvents"]
    entries = [entry for call in puts for entry in call.entries]
    records = [record for call in reads for record in call.entries if routing.enters_pipe(record)]
    # Sized as the stream returned them; the Pipe adds a few fields (eventSourceARN) before enriching.
    result.add(
        RELAY,
        "Pipe requests (records after filtering, 64 KB chunks)",
        sum(chunks(len(json.dumps(record, default=str).encode())) for record in records),
        prices["pipes_request"],
    )
    result.add(
        BUS, "custom events (64 KB chunks)", sum(c.event_chunks for c in puts), prices["eventbridge_custom_event"]
    )
    sends = 0
    archived = 0.0
    stored = 0.0
    for entry in entries:
        envelope = routing.envelope(entry)
        size = len(json.dumps(envelope).encode())
        for rule, pattern in routing.rules.items():
            if pattern.matches(envelope):
                sends += routing.targets[rule] * chunks(size)
        for archive, pattern in routing.archives.items():
            if pattern.matches(envelope):
                archived += size / GB
                stored += size / GB * routing.archive_retention_days[archive] / 30
    result.add(BUS, "SQS SendMessage by the rules", sends, prices["sqs_standard_request"])
    result.add(BUS, "archive GB processed", archived, prices["eventbridge_archive_gb"])
    result.add(BUS, "archive GB-months kept (retention / 30 days)", stored, prices["eventbridge_archive_gb_month"])


def _batches(result: Bill, calls: list[Call]) -> None:
    reads = [c.records for c in calls if c.service == "dynamodbstreams" and c.operation == "GetRecords" and c.records]
    receives = [c.records for c in calls if c.operation == "ReceiveMessage" and c.caller is None and c.records]
    enrichments = len(result.lambda_ms.get("EnrichmentFunction", []))
    consumers = len(result.lambda_ms.get("ConsumerFunction", []))
    events = sum(c.records for c in calls if c.service == "events" and c.operation == "PutEvents")
    result.batches = {
        "stream records per GetRecords": sum(reads) / max(1, len(reads)),
        "events per EnrichmentFunction invocation": events / max(1, enrichments),
        "messages per ReceiveMessage": sum(receives) / max(1, len(receives)),
        "messages per ConsumerFunction invocation": sum(receives) / max(1, consumers),
    }


def _queue(result: Bill, calls: list[Call], prices: Mapping[str, Price]) -> None:
    sqs = [c for c in calls if c.service == "sqs"]
    receives = [c for c in sqs if c.operation == "ReceiveMessage" and c.caller is None]
    result.add(
        CONSUMER,
        "SQS ReceiveMessage that returned messages",
        sum(c.requests for c in receives if c.records),
        prices["sqs_standard_request"],
    )
    result.note(result.idle, "SQS ReceiveMessage that returned nothing", sum(1 for c in receives if not c.records))
    deletes = [c for c in sqs if c.operation in ("DeleteMessageBatch", "DeleteMessage") and c.caller is None]
    result.add(CONSUMER, "SQS DeleteMessageBatch", sum(c.requests for c in deletes), prices["sqs_standard_request"])
    visibility = [c for c in sqs if c.operation.startswith("ChangeMessageVisibility")]
    result.add(
        CONSUMER,
        "SQS ChangeMessageVisibility (early events)",
        sum(c.requests for c in visibility),
        prices["sqs_standard_request"],
    )
    dead_letters = [c for c in sqs if c.operation == "SendMessage" and c.caller is None]
    result.add(
        RELAY,
        "SQS SendMessage to the Pipe's DLQ",
        sum(c.requests for c in dead_letters),
        prices["sqs_standard_request"],
    )
    for call in sqs:
        if call.operation not in (
            "ReceiveMessage",
            "DeleteMessageBatch",
            "DeleteMessage",
            "SendMessage",
        ) and not call.operation.startswith("ChangeMessageVisibility"):
            result.note(result.not_billed, f"sqs {call.operation} (the emulators' bookkeeping)")


def idle_requests_per_month(pollers: int, wait_seconds: int) -> int:
    """Empty long polls of an idle queue in a 30-day month: each poller waits `wait_seconds`, then asks again."""
    return pollers * (30 * 24 * 3600 // wait_seconds)
