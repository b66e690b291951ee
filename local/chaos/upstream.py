"""Upstream, once per run: API -> outbox -> Pipe -> bus -> consumer queue under the upstream faults, captured.

Simulated riders drive ride lifecycles through the API handler with client retries, concurrent
duplicates and crashes after the commit; malformed items go into the outbox table; the Pipe emulator runs
with the relay's faults; the bus routes ride events to the consumer queue, which is drained into a
capture (a rule firing twice doubles a message there; malformed bodies are sent to the queue as well).
Then a time window of the bus archive is replayed and captured too. Every consumer design is then fed
the same capture.
"""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from local.aws.moto_patches import clock_installed, epoch_seconds
from local.aws.stack import LocalStack
from local.aws.template import Stack
from local.aws.transport import Transport
from local.chaos.api_faults import FaultyApiCaller, poison_outbox_item, poison_schedule, seeded_service
from local.chaos.bus_faults import Capture, Delivery, key_of, poison_message, replay_window
from local.chaos.gates import PRIMARY, SECOND
from local.chaos.plan import FAULTS, Fault, FaultPlan, Hop
from local.chaos.relay_faults import FaultyEventBridge, RelayFaults
from local.chaos.report import HopRow
from local.chaos.seams import PipeRunner
from local.emulators.clock import SimulatedClock
from local.emulators.pipes.config import pipe_configs
from local.emulators.pipes.state import PipeStats
from local.workload.invariants import Check, outbox_matches_ledger
from local.workload.traffic import Ledger, RideTraffic
from ops.aws import Queue, Tables
from rideonce.handlers import api as api_handler

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_sqs import SQSClient

CHANGES_PER_RIDE = 3.7
"""RideTraffic's lifecycles: 80% complete (4 changes), 10% cancel at once (2), 10% cancel after accepting (3)."""
PUMP_EVERY = 40
"""Ride changes between two runs of the Pipe and drains of the consumer queue (moto's queues slow with depth)."""


@dataclass
class Upstream:
    ledger: Ledger
    live: list[Delivery]
    replay: list[Delivery]
    poison_subjects: set[str]
    rides: dict[str, dict[str, Any]]
    outbox_keys: set[tuple[str, int]]
    outbox_items: list[dict[str, Any]]
    """The outbox table as the API and the poison left it (DynamoDB JSON), for a design's own stack."""
    lost_at_relay: set[tuple[str, int]]
    """Changes whose records the Pipe gave up on or never read: only the reconciler can bring them back."""
    started_at: float
    """Epoch seconds just before the first commit: the consumer's simulated clock starts here."""
    last_commit_at: float
    hops: list[HopRow]
    checks: list[Check]
    faults: dict[str, dict[str, float]]
    seconds: dict[str, float]


class PoisonFeed:
    """Poison spread evenly over the run: malformed items in the outbox table, malformed bodies on the queue."""

    def __init__(self, stack: Stack, plan: FaultPlan, expected_changes: int, transport: Transport) -> None:
        self._ddb, self._sqs = transport.dynamodb(), transport.sqs()
        self._outbox_table = stack.ref("OutboxTable")
        self.queue_url = stack.ref("RideEventsQueue")
        self._outbox_at = poison_schedule(expected_changes, plan.rates[Fault.POISON_OUTBOX_ITEM])
        self._message_at = poison_schedule(expected_changes, plan.rates[Fault.POISON_MESSAGE])
        self.bodies = {poison_message(index): f"poison-message-{index:04d}" for index in range(len(self._message_at))}
        self._unsent = list(self.bodies)
        self.subjects: set[str] = set()
        """The poison messages sent to the queue."""
        self.items = 0
        """Poison items put into the outbox table."""

    def after(self, accepted: int) -> None:
        """Whatever poison is due after the `accepted`-th ride change."""
        if accepted in self._outbox_at:
            self._ddb.put_item(TableName=self._outbox_table, Item=poison_outbox_item(self.items))
            self.items += 1
        if accepted in self._message_at and self._unsent:
            body = self._unsent.pop(0)
            self.subjects.add(self.bodies[body])
            self._sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)

    def rides(self) -> set[str]:
        """The rideId of every poison outbox item."""
        return {f"poison-{index:04d}" for index in range(self.items)}


@dataclass
class Relay:
    """The upstream's moving parts, each with its faults: clients, API, Pipes, bus, and the capture."""

    api: FaultyApiCaller
    traffic: RideTraffic
    bus: FaultyEventBridge
    faults: list[RelayFaults]
    pipes: list[PipeRunner]
    capture: Capture

    def pump(self, into: list[Delivery]) -> None:
        """Run every Pipe until it is quiet, then drain the consumer queue into `into`."""
        for pipe in self.pipes:
            pipe.run_until_quiet(timeout_seconds=600)
        self.capture.drain(into)

    def stats(self) -> list[PipeStats]:
        return [pipe.stats for pipe in self.pipes]


@dataclass
class Observed:
    """What the tables and queues hold once the upstream is done."""

    rides: dict[str, dict[str, Any]]
    outbox_items: list[dict[str, Any]]
    outbox_keys: set[tuple[str, int]]
    last_commit_at: float | None
    given_up: dict[str, str]
    trimmed: dict[str, str]
    lost_at_relay: set[tuple[str, int]]
    quarantined: list[str]
    read_poison: set[str]
    """Poison outbox items the Pipe read (not lost at the relay): each must be quarantined."""
    pointers: list[tuple[str, str, int]]
    rule_dlq: int


def run_upstream(
    local: LocalStack, plan: FaultPlan, rides: int, transport: Transport, say: Callable[[str], None]
) -> Upstream:
    """API -> outbox -> Pipe -> bus -> consumer queue under the upstream faults, captured for the consumers."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    begun = time.time()
    poison = PoisonFeed(local.stack, plan, round(rides * CHANGES_PER_RIDE), transport)
    live: list[Delivery] = []
    replay: list[Delivery] = []
    # The Pipes' clock, which moto's stream stamps and SQS read meanwhile: the Pipes' batching windows and
    # retry backoffs pass in it at once, and record ages are measured in the time that stamped them.
    clock = SimulatedClock(begun)
    relay = _relay(local, plan, rides, transport, poison, clock)
    with clock_installed(clock):
        _drive(relay, poison, live, say)
    ledger = relay.traffic.ledger
    plan.injected(Fault.POISON_OUTBOX_ITEM, poison.items)
    plan.injected(Fault.POISON_MESSAGE, len(poison.subjects))
    retries = ledger.client_retries
    plan.injected(Fault.CLIENT_RETRY, retries, evaluated=ledger.accepted_changes + retries)
    seconds["api, Pipe and bus"] = time.perf_counter() - started
    started = time.perf_counter()
    live_twice = relay.capture.twice
    window = replay_window(local, transport, relay.bus.calls, plan, relay.capture, replay)
    seconds["archive replay"] = time.perf_counter() - started
    observed = _observe(local.stack, transport, relay, poison)
    replayed = len(replay) - (relay.capture.twice - live_twice)
    hops = [
        *_api_hops(relay, plan, poison, observed),
        *_relay_hops(relay, poison, observed, live, live_twice),
        HopRow(
            "archive replay -> queue",
            "all",
            replayed,
            replayed + relay.capture.twice - live_twice,
            0,
            len(replay),
            f"window {window}; {relay.capture.twice - live_twice} rule deliveries twice",
        ),
    ]
    plan.injected(Fault.ARCHIVE_REPLAY, replayed)
    return Upstream(
        ledger=ledger,
        live=live,
        replay=replay,
        poison_subjects=poison.subjects,
        rides=observed.rides,
        outbox_keys=observed.outbox_keys,
        outbox_items=observed.outbox_items,
        lost_at_relay=observed.lost_at_relay & observed.outbox_keys,
        started_at=begun,
        last_commit_at=begun if observed.last_commit_at is None else observed.last_commit_at,
        hops=hops,
        checks=_checks(relay, poison, observed),
        faults=plan.summary(tuple(fault for fault, spec in FAULTS.items() if spec.hop is not Hop.QUEUE_TO_CONSUMER)),
        seconds=seconds,
    )


def _relay(
    local: LocalStack, plan: FaultPlan, rides: int, transport: Transport, poison: PoisonFeed, clock: SimulatedClock
) -> Relay:
    """The API function over two clients' faulty services, the riders, the Pipes, the bus and the capture."""
    stack = local.stack
    settings = api_handler.settings()
    handlers, second = (seeded_service(transport.dynamodb(), settings, plan, role) for role in (PRIMARY, SECOND))
    api = FaultyApiCaller(stack, local.functions["ApiFunction"], plan, handlers, second)
    traffic = RideTraffic(api, rides=rides, seed=plan.seed, retry_rate=plan.rates[Fault.CLIENT_RETRY])
    bus = FaultyEventBridge(transport.events(), plan, time.time)
    faults = [RelayFaults(plan, transport.streams()) for _ in pipe_configs(stack)]
    pipes = [
        PipeRunner(
            config,
            local.functions[config.enrichment_function].invoke if config.enrichment_function else None,
            streams=cast("DynamoDBStreamsClient", faulty.streams),
            events=cast("EventBridgeClient", bus),
            sqs=transport.sqs(),
            clock=clock,
            around_delivery=faulty.around_delivery,
        )
        for config, faulty in zip(pipe_configs(stack), faults, strict=True)
    ]
    capture = Capture(transport.sqs(), poison.queue_url, plan, poison.bodies)
    return Relay(api, traffic, bus, faults, pipes, capture)


def _drive(relay: Relay, poison: PoisonFeed, live: list[Delivery], say: Callable[[str], None]) -> None:
    """The riders' traffic to its end, the poison on its schedule, the Pipes and the capture every PUMP_EVERY."""
    traffic = relay.traffic
    while not traffic.done():
        traffic.step()
        accepted = traffic.ledger.accepted_changes
        poison.after(accepted)
        if accepted % PUMP_EVERY == 0:
            relay.pump(live)
        if accepted % 1000 == 0:
            say(f"upstream: {accepted} ride changes accepted")
    relay.pump(live)


def _observe(stack: Stack, transport: Transport, relay: Relay, poison: PoisonFeed) -> Observed:
    ddb, sqs = transport.dynamodb(), transport.sqs()
    outbox_items = _scan_raw(ddb, stack.ref("OutboxTable"))
    outbox = {(item["rideId"]["S"], int(item["version"]["N"])) for item in outbox_items}
    committed = [epoch_seconds(item["committedAt"]["S"]) for item in outbox_items if "committedAt" in item]
    given_up = {subject: sequence for faults in relay.faults for subject, sequence in faults.given_up.items()}
    trimmed = {subject: sequence for faults in relay.faults for subject, sequence in faults.trimmed.items()}
    lost_at_relay = {key for subject in given_up.keys() | trimmed.keys() if (key := key_of(subject))}
    poison_rides = poison.rides()
    return Observed(
        rides={item["rideId"]: item for item in Tables(ddb).scan(stack.ref("RidesTable"))},
        outbox_items=outbox_items,
        outbox_keys={key for key in outbox if key[0] not in poison_rides},
        last_commit_at=max(committed, default=None),
        given_up=given_up,
        trimmed=trimmed,
        lost_at_relay=lost_at_relay,
        quarantined=_quarantined_rides(sqs, stack.ref("QuarantineQueue")),
        # A poison item lost at the relay never reached the enrichment, so it was never quarantined.
        read_poison=poison_rides - {ride_id for ride_id, _ in lost_at_relay},
        pointers=_pipe_dead_letters(sqs, stack.ref("PipeDeadLetterQueue")),
        rule_dlq=Queue(sqs, stack.ref("RuleDeadLetterQueue")).depth(),
    )


def _checks(relay: Relay, poison: PoisonFeed, observed: Observed) -> list[Check]:
    api, ledger = relay.api, relay.traffic.ledger
    pointers, given_up, quarantined = observed.pointers, observed.given_up, observed.quarantined
    pointed = [sequence for pointer in pointers for sequence in pointer[:2]]
    pipe_dlq_exact = sum(pointer[2] for pointer in pointers) == len(given_up) and set(pointed) <= set(given_up.values())
    enrichment_errors = sum(stats.enrichment_errors for stats in relay.stats())
    server_errors = sum(count for status, count in api.stats.statuses.items() if status >= 500)
    return [
        outbox_matches_ledger(ledger, observed.outbox_keys, besides=f"besides {poison.items} poison items"),
        Check(
            "every client got the same ride on every retry and from both concurrent requests",
            not api.violations,
            "; ".join(api.violations[:3])
            or f"{api.faults.concurrent_pairs} concurrent pairs, "
            f"{api.faults.crash_retries} retries after a crash, {ledger.client_retries} client retries",
        ),
        Check(
            "the Pipe DLQ holds exactly the injected give-ups, the rule DLQ is empty; the quarantine holds "
            "exactly the poison outbox items the Pipe read",
            pipe_dlq_exact and observed.rule_dlq == 0 and set(quarantined) == observed.read_poison,
            f"PipeDeadLetterQueue {len(pointers)} pointers to {sum(pointer[2] for pointer in pointers)} records "
            f"({len(given_up)} records given up), RuleDeadLetterQueue {observed.rule_dlq}, QuarantineQueue "
            f"{len(quarantined)} messages for {len(set(quarantined))} of {len(observed.read_poison)} poison items "
            f"read ({poison.items - len(observed.read_poison)} lost at the relay)",
        ),
        Check(
            "no unhandled exception upstream",
            server_errors == 0 and enrichment_errors == 0,
            f"{server_errors} API 5xx, {enrichment_errors} enrichment errors",
        ),
    ]


def _api_hops(relay: Relay, plan: FaultPlan, poison: PoisonFeed, observed: Observed) -> list[HopRow]:
    api, ledger = relay.api, relay.traffic.ledger
    crashes = plan.counts[Fault.API_CRASH_AFTER_COMMIT].injected
    return [
        HopRow(
            Hop.CLIENT_TO_API.value,
            "all",
            api.faults.handler_requests + api.faults.service_requests,
            ledger.client_retries + api.faults.crash_retries + api.faults.concurrent_pairs,
            api.stats.replays + api.faults.service_replays + api.faults.in_flight_conflicts,
            ledger.accepted_changes,
            f"{ledger.client_retries} client retries, {api.faults.concurrent_pairs} concurrent pairs "
            f"({api.faults.in_flight_conflicts} answered 409 in flight), {api.faults.crash_retries} retries "
            "after a crash; dropped = replays and 409s",
        ),
        HopRow(
            Hop.API_TO_TABLES.value,
            "all",
            ledger.accepted_changes + poison.items,
            crashes + poison.items,
            0,
            len(observed.outbox_keys),
            f"one TransactWriteItems per change; {crashes} crashes "
            f"after the commit; {poison.items} poison items beside the records",
        ),
    ]


def _relay_hops(
    relay: Relay, poison: PoisonFeed, observed: Observed, live: list[Delivery], live_twice: int
) -> list[HopRow]:
    bus, stats = relay.bus, relay.stats()
    again = sum(faults.again for faults in relay.faults)
    events_put = sum(s.events_put for s in stats) + bus.duplicates_put
    trimmed, quarantined = observed.trimmed, observed.quarantined
    return [
        HopRow(
            Hop.STREAM_TO_BUS.value,
            "all",
            sum(s.records_read for s in stats) + len(trimmed),
            again + bus.failed_entries + bus.duplicates_put + len(observed.lost_at_relay),
            0,
            events_put,
            f"{again} batches again, {bus.failed_entries} partial failures "
            f"({sum(s.bisections for s in stats)} bisections, {sum(s.retries for s in stats)} retries, "
            f"{sum(s.enrichment_invocations for s in stats)} enrichments), {bus.duplicates_put} PutEvents "
            f"duplicates; {len(observed.given_up)} records in batches given up ({len(observed.pointers)} DLQ "
            f"pointers), {len(trimmed)} trimmed before the Pipe read them; {len(quarantined)} rejections "
            "quarantined; the Pipe passes duplicates on",
        ),
        HopRow(
            Hop.BUS_TO_QUEUE.value,
            "all",
            events_put - len(quarantined),
            live_twice + len(poison.subjects),
            0,
            len(live),
            f"{live_twice} rule deliveries twice, {len(poison.subjects)} poison bodies sent to the queue",
        ),
    ]


def _scan_raw(client: "DynamoDBClient", table: str) -> list[dict[str, Any]]:
    """Every item as DynamoDB JSON, to be put back as it is into another stack's table."""
    pages = client.get_paginator("scan").paginate(TableName=table)
    return [dict(item) for page in pages for item in page.get("Items", [])]


def _pipe_dead_letters(sqs: "SQSClient", url: str) -> list[tuple[str, str, int]]:
    """(first sequence number, last sequence number, batch size) of every pointer in the Pipe's DLQ (read only)."""
    found: list[tuple[str, str, int]] = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            info = json.loads(message["Body"]).get("DDBStreamBatchInfo", {})
            first, last = str(info.get("startSequenceNumber")), str(info.get("endSequenceNumber"))
            found.append((first, last, int(info.get("batchSize", 0))))
    return found


def _quarantined_rides(sqs: "SQSClient", url: str) -> list[str]:
    """The rideId of the outbox record in every quarantined rejection (read, not deleted)."""
    found: list[str] = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            record = json.loads(message["Body"]).get("detail", {}).get("data", {}).get("record", {})
            found.append(str(record.get("dynamodb", {}).get("Keys", {}).get("rideId", {}).get("S", "?")))
    return found
