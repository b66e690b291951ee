"""The bill: per hop, the counted requests and units of a run times the list prices."""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from local.aws.functions import LocalFunction
from local.workload.cost.meter import BusRouting, Call, Invocations
from local.workload.cost.units import GB, Price, billed_milliseconds, chunks, gb_seconds

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
