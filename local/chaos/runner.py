"""`python -m local.chaos`: the local stack under seeded faults at every hop, rideonce's consumer beside the
two usual designs (local/designs/baselines.py), and the end-to-end promise checked for each.

A run, for one seed (local/chaos/faults.py decides every fault from it):

1. Upstream, once: the local stack from template.yaml; simulated riders drive ride lifecycles through the
   API handler with client retries, concurrent duplicates and crashes after the commit; malformed items go
   into the outbox table; the Pipe emulator runs with batches delivered again, PutEvents partial failures
   and PutEvents duplicates, batches it gives up on (pointers in its DLQ) and stream records trimmed before
   it read them (changes lost at the relay); the bus routes ride events to the consumer queue, which is drained into a
   capture (a rule firing twice doubles a message there; malformed bodies are sent to the queue as well).
   Then a time window of the bus archive is replayed with `start_replay` and captured too.
2. Downstream, once per design, on fresh consumer tables: the captured messages go through an SQS queue
   emulated in simulated time to the ConsumerFunction's Lambda handler, unchanged, whose `consumer()` is
   patched to return the design. The design's steps carry the crash points; the same schedule decides
   redeliveries, two consumers of one message, messages held back and crashes for every design. The archive
   replay arrives with the consumer's clock six hours ahead. Meanwhile the ReconcilerFunction runs on its
   schedule in the consumer's simulated time, which starts at the first commit (`ReconcilerSchedule`): what
   it republishes reaches the design through the bus and the queue, and brings back what the relay lost.
   At the end the DLQ is redriven to the queue and the consumer runs until quiet again.
3. The invariants per design, a rich report and the same as JSON. The exit status is 1 when rideonce (or
   the upstream) broke an invariant; the baselines are expected to break some.

The consumer's queue is emulated here, not moto's: with `lambda_sqs.SqsPoller`'s semantics (batches of
BatchSize, partial batch responses, a failed or crashed invocation leaves its messages, the visibility
timeout or the shorter one the function sets with ChangeMessageVisibility for an early event, the DLQ after
maxReceiveCount, as moto moves them: at receive time), but in simulated time, so a
120 s visibility timeout or a six-hour wait costs nothing and every design sees the same deliveries in the
same order. Faults never fire on one of a message's last two receives before the DLQ: at 30% per hop a
healthy message would otherwise park by bad luck alone, which says nothing about a design. A message parks
only when the consumer itself keeps refusing it, as with poison.

`--transport in-process` (the default) sends boto3's requests straight into the moto backends the server
serves, through moto's own botocore stubber: the same request and response handling without the socket and
the HTTP server, several times faster per request. `--transport http` sends everything through the server.
`--workers` runs designs at once, each beyond the first in a process with a local stack of its own. The
same seed gives the same report, timings aside, with either transport and any number of workers.
"""

import argparse
import copy
import heapq
import importlib
import json
import logging
import math
import multiprocessing
import os
import sys
import threading
import time
import types
import uuid
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, cast
from unittest import mock

import boto3
from botocore import UNSIGNED
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from moto.core.botocore_stubber import BotocoreStubber
from rich.console import Console
from rich.table import Table

from local.aws.dynamodb import create_table_like
from local.aws.functions import LocalFunction, send_output_to
from local.aws.stack import STATE_DIR, LocalStack
from local.aws.template import ACCOUNT_ID, REGION, Stack
from local.chaos.faults import (
    CHAOS_TRACEPARENT,
    FAULTS,
    PRIMARY,
    SECOND,
    ConsumerContext,
    Crash,
    EffectLog,
    Fault,
    FaultPlan,
    FaultRates,
    FaultyApiCaller,
    FaultyEventBridge,
    Hop,
    PutCall,
    RelayFaults,
    SeededRideIds,
    Turnstile,
    api_crashes_after_commit,
    instrument_check_then_write,
    instrument_powertools,
    instrument_rideonce,
    lined_up_claims,
)
from local.designs.baselines import (
    POWERTOOLS_KEY_ATTRIBUTE,
    CheckThenWriteConsumer,
    PowertoolsIdempotencyConsumer,
    RecordConsumer,
)
from local.emulators.event_source import SqsMapping, failed_ids, sqs_mappings
from local.emulators.pipe import PipeRunner, pipe_configs
from local.workload.invariants import Check
from local.workload.traffic import Ledger, RideTraffic
from rideonce.dal.consumer import EffectStore
from rideonce.dal.dynamo import from_item
from rideonce.dal.idempotency import IdempotencyStore
from rideonce.dal.queue import MessageVisibility
from rideonce.dal.reconciler import EventPublisher, OutboxReader, ProjectionReader
from rideonce.dal.rides import RideStore
from rideonce.logic import events as ride_events
from rideonce.logic import rides as ride_logic
from rideonce.logic.consumer import Verdict
from rideonce.models.requests import CreateRideRequest
from rideonce.models.ride import Location
from rideonce.services.consumer import RideEventConsumer
from rideonce.services.reconciler import Reconciler
from rideonce.services.rides import RideService
from rideonce.settings import ReconcilerSettings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_sqs import SQSClient

RIDEONCE = "rideonce"
CHECK_THEN_WRITE = "check-then-write"
POWERTOOLS = "powertools"
DESIGNS = (RIDEONCE, CHECK_THEN_WRITE, POWERTOOLS)

DEFAULT_CHANGES = 10_000
DEFAULT_RATE = 0.3
CHANGES_PER_RIDE = 3.7
"""RideTraffic's lifecycles: 80% complete (4 changes), 10% cancel at once (2), 10% cancel after accepting (3)."""
CHANGES_PER_RIDE_VARIANCE = 0.41
PUMP_EVERY = 40
"""Ride changes between two runs of the Pipe and drains of the consumer queue (moto's queues slow with depth)."""
REPLAY_SLICE_EVENTS = 400
"""The replay window is replayed in slices of about this many events, each drained before the next."""
REPLAY_CLOCK_JUMP = timedelta(hours=6)
INVOCATION_SECONDS = 0.05
"""Simulated time one consumer invocation takes."""
HOLD_SECONDS = (20.0, 100.0)
"""How long a message held back (out of order) waits: under the visibility timeout, so successors retry once."""
QUIET_LIMIT = timedelta(days=30)
QUIET_FUNCTIONS = {"POWERTOOLS_LOG_LEVEL": "CRITICAL", "POWERTOOLS_METRICS_DISABLED": "true"}


# ---------------------------------------------------------------- transport


class Transport:
    """How boto3 reaches moto: through the server over HTTP, or straight into the same backends in-process."""

    def __init__(self, in_process: bool) -> None:
        self.in_process = in_process
        self._stubber = BotocoreStubber()
        self._stubber.enabled = True

    @property
    def name(self) -> str:
        return "in-process" if self.in_process else "http"

    def dynamodb(self) -> "DynamoDBClient":
        return cast("DynamoDBClient", self._client("dynamodb"))

    def streams(self) -> "DynamoDBStreamsClient":
        return cast("DynamoDBStreamsClient", self._client("dynamodbstreams"))

    def events(self) -> "EventBridgeClient":
        return cast("EventBridgeClient", self._client("events"))

    def sqs(self) -> "SQSClient":
        return cast("SQSClient", self._client("sqs"))

    def _client(self, service: str) -> Any:
        if not self.in_process:
            return boto3.client(service)  # type: ignore[call-overload]
        # AWS's own endpoint, never AWS_ENDPOINT_URL: moto's stubber recognises services by their AWS hosts.
        # Unsigned: moto checks no signature, and SigV4 signing was a third of an in-process request's time.
        config = Config(  # type: ignore[call-arg]  # botocore-stubs lag botocore
            ignore_configured_endpoint_urls=True, signature_version=UNSIGNED
        )
        client = boto3.client(service, config=config)  # type: ignore[call-overload]
        client.meta.events.register("before-send", self._send)
        return client

    def _send(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        response = self._stubber("before-send", request)
        if response is None:
            raise RuntimeError(f"no moto backend answers {request.url}; refusing to send it anywhere else")
        return response


# ---------------------------------------------------------------- moto gaps

_gaps_closed = False


def close_moto_gaps() -> None:
    """Two gaps of moto that a chaos run hits, closed for this process (both belong in local/aws/moto_patches.py).

    1. moto's event target input builds a JSONPath parser (a yacc table) per path per event: about 6 ms
       per event and target, most of the Pipe's time. Parsed paths are cached.
    2. moto's `start_replay` replays the whole archive whatever EventStartTime and EventEndTime say; AWS
       replays the window only. The window is honoured.
    """
    global _gaps_closed
    if _gaps_closed:
        return
    import jsonpath_ng.ext
    from moto.events.models import Replay

    # moto imports `parse` from the module on every call, so the cached one is what it gets.
    jsonpath_ng.ext.parse = lru_cache(maxsize=256)(jsonpath_ng.ext.parse)  # type: ignore[attr-defined]
    replay_all = Replay.replay_events

    def replay_window(self: Any, archive: Any) -> None:
        start, end = _epoch(self.event_start_time), _epoch(self.event_end_time)
        window = copy.copy(archive)
        window.events = [event for event in archive.events if start <= _epoch(event.get("time")) < end]
        replay_all(self, window)

    Replay.replay_events = replay_window  # type: ignore[method-assign]
    _gaps_closed = True


def _epoch(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    raise ValueError(f"not a time: {value!r}")


# ---------------------------------------------------------------- report rows


@dataclass
class HopRow:
    """One hop for one design (upstream hops are shared: design "all"): what came in and what became of it."""

    hop: str
    design: str
    received: int
    injected: int
    """Extra deliveries or faults the schedule added at this hop."""
    dropped: int
    """Duplicates stopped at this hop."""
    applied: int
    """What this hop passed on or took effect: accepted changes, records, events, first-time effects."""
    note: str = ""


@dataclass
class EffectMetrics:
    duplicate_effects: int
    extra_charges: int
    extra_projection_writes: int
    lost_events: int
    order_violations: int
    parked_healthy: int
    unhandled: int
    lost_before_redrive: int = 0
    """Outbox records not applied before the final DLQ redrive (a person's step on AWS)."""
    parked_healthy_before_redrive: int = 0
    """Ride events in the DLQ before that redrive (on AWS the consumer DLQ alarm fires)."""
    lost_at_relay: int = 0
    """Changes the Pipe gave up on or never read (the same for every design)."""
    repaired: int = 0
    """Of those, applied: only the reconciler's republished events carry them."""
    reconciler_runs: int = 0
    republished: int = 0
    """Events the reconciler put on the bus again (a lost change's successors too)."""


# ---------------------------------------------------------------- upstream


@dataclass(frozen=True)
class Delivery:
    """One message on the consumer queue, as captured: its body and the subject faults are keyed by."""

    body: str
    subject: str
    poison: bool = False


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


class Capture:
    """Drains the consumer queue into a list, as a consumer would see it; a rule may have fired twice."""

    def __init__(self, sqs: "SQSClient", queue_url: str, plan: FaultPlan, poison: Mapping[str, str]) -> None:
        self._sqs = sqs
        self._url = queue_url
        self._plan = plan
        self._poison = poison
        self.twice = 0

    def drain(self, into: list[Delivery]) -> int:
        drained = 0
        while messages := self._sqs.receive_message(QueueUrl=self._url, MaxNumberOfMessages=10).get("Messages", []):
            self._sqs.delete_message_batch(
                QueueUrl=self._url,
                Entries=[{"Id": str(index), "ReceiptHandle": m["ReceiptHandle"]} for index, m in enumerate(messages)],
            )
            for message in messages:
                drained += 1
                body = message["Body"]
                if body in self._poison:
                    into.append(Delivery(body, self._poison[body], poison=True))
                    continue
                subject = _subject_of(body)
                into.append(Delivery(body, subject))
                if self._plan.occurs(Fault.RULE_FIRES_TWICE, subject):
                    self.twice += 1
                    into.append(Delivery(body, subject))
        return drained


def _subject_of(body: str) -> str:
    try:
        return str(json.loads(body)["detail"]["metadata"]["idempotencyKey"])
    except (KeyError, TypeError, ValueError):
        return f"unparseable#{uuid.uuid5(uuid.NAMESPACE_OID, body)}"


def _key_of(subject: str) -> tuple[str, int] | None:
    """(rideId, version) back from an event's idempotency key `ride#<rideId>#v<version>`."""
    if not subject.startswith("ride#"):
        return None
    ride_id, _, version = subject[len("ride#") :].rpartition("#v")
    return (ride_id, int(version)) if version.isdigit() else None


def _poison_schedule(expected_changes: int, rate: float) -> set[int]:
    """At which accepted change to inject each poison: evenly spread, at least one when the rate is on."""
    if rate <= 0:
        return set()
    count = max(1, round(expected_changes * rate))
    return {max(1, round((index + 0.5) * expected_changes / count)) for index in range(count)}


def _poison_outbox_item(index: int) -> dict[str, Any]:
    """An outbox row the enrichment cannot turn into a ride event: no event, a string, or a hollow event."""
    variants: list[dict[str, Any]] = [
        {},
        {"event": {"S": f"not an event #{index}"}},
        {"event": {"M": {"metadata": {"M": {"eventId": {"S": f"poison-{index}"}}}, "data": {"M": {}}}}},
    ]
    return {
        "rideId": {"S": f"poison-{index:04d}"},
        "version": {"N": "1"},
        "expiresAt": {"N": str(int(time.time()) + 86_400)},
        **variants[index % len(variants)],
    }


def _poison_message(index: int) -> str:
    """A body the consumer must refuse: not JSON, no envelope, no ride event, or an event that contradicts itself."""
    if index % 4 == 0:
        return f"this is not JSON #{index}"
    if index % 4 == 1:
        return json.dumps({"poison": index, "detail-type": "OutboxEvent"})
    request = CreateRideRequest(rider_id="rider-poison", pickup=Location(lat=1, lng=2), dropoff=Location(lat=3, lng=4))
    change = ride_logic.request_ride(f"poison-message-{index:04d}", request, datetime(2026, 1, 1, tzinfo=UTC))
    detail = ride_events.build_event(change, change.ride.updated_at, CHAOS_TRACEPARENT).model_dump(mode="json")
    if index % 4 == 2:
        detail = {"metadata": {"idempotencyKey": detail["metadata"]["idempotencyKey"]}, "data": {}}
    else:
        detail["metadata"]["version"] = 2  # data.version stays 1: the event contradicts itself
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.UUID(int=index)),
            "detail-type": "OutboxEvent",
            "source": "rideonce.outbox",
            "account": ACCOUNT_ID,
            "time": "2026-01-01T00:00:00Z",
            "region": REGION,
            "resources": [],
            "detail": detail,
        }
    )


def run_upstream(
    local: LocalStack, plan: FaultPlan, rides: int, transport: Transport, say: Callable[[str], None]
) -> Upstream:
    """API -> outbox -> Pipe -> bus -> consumer queue under the upstream faults, captured for the consumers."""
    stack = local.stack
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    begun = time.time()
    api_module = importlib.import_module("rideonce.handlers.api")
    ids = SeededRideIds(plan.seed)

    def new_service() -> RideService:
        client = transport.dynamodb()
        settings = api_module.settings()
        service = RideService(
            RideStore(client, settings.rides_table_name, settings.outbox_table_name),
            IdempotencyStore(client, settings.idempotency_table_name),
            settings,
            make_id=ids.make_id,
        )
        return ids.install(service)

    expected_changes = round(rides * CHANGES_PER_RIDE)
    outbox_poison_at = _poison_schedule(expected_changes, plan.rates[Fault.POISON_OUTBOX_ITEM])
    message_poison_at = _poison_schedule(expected_changes, plan.rates[Fault.POISON_MESSAGE])
    poison_bodies = {_poison_message(index): f"poison-message-{index:04d}" for index in range(len(message_poison_at))}
    unsent = list(poison_bodies)
    ddb, sqs = transport.dynamodb(), transport.sqs()
    queue_url = stack.ref("RideEventsQueue")
    live: list[Delivery] = []
    poison_subjects: set[str] = set()
    poison_items = 0
    with ExitStack() as patches:
        service = new_service()

        def current_service() -> RideService:
            return service

        patches.enter_context(mock.patch.object(api_module, "service", current_service))
        patches.enter_context(api_crashes_after_commit(plan))
        patches.enter_context(lined_up_claims())
        api = FaultyApiCaller(stack, local.functions["ApiFunction"], plan, new_service())
        traffic = RideTraffic(api, rides=rides, seed=plan.seed, retry_rate=plan.rates[Fault.CLIENT_RETRY])
        bus = FaultyEventBridge(transport.events(), plan, time.time)
        relay = [RelayFaults(plan, transport.streams()) for _ in pipe_configs(stack)]
        pipes = [
            PipeRunner(
                config,
                local.functions[config.enrichment_function].invoke if config.enrichment_function else None,
                streams=cast("DynamoDBStreamsClient", faults.streams),
                events=cast("EventBridgeClient", bus),
                sqs=sqs,
                time_scale=0.0,
                around_delivery=faults.around_delivery,
            )
            for config, faults in zip(pipe_configs(stack), relay, strict=True)
        ]
        capture = Capture(sqs, queue_url, plan, poison_bodies)

        def pump() -> None:
            for pipe in pipes:
                pipe.run_until_quiet(timeout_seconds=600)
            capture.drain(live)

        while not traffic.done():
            traffic.step()
            accepted = traffic.ledger.accepted_changes
            if accepted in outbox_poison_at:
                ddb.put_item(TableName=stack.ref("OutboxTable"), Item=_poison_outbox_item(poison_items))
                poison_items += 1
            if accepted in message_poison_at and unsent:
                body = unsent.pop(0)
                poison_subjects.add(poison_bodies[body])
                sqs.send_message(QueueUrl=queue_url, MessageBody=body)
            if accepted % PUMP_EVERY == 0:
                pump()
            if accepted % 1000 == 0:
                say(f"upstream: {accepted} ride changes accepted")
        pump()
        plan.injected(Fault.POISON_OUTBOX_ITEM, poison_items)
        plan.injected(Fault.POISON_MESSAGE, len(poison_subjects))
        retries = traffic.ledger.client_retries
        plan.injected(Fault.CLIENT_RETRY, retries, evaluated=traffic.ledger.accepted_changes + retries)
        seconds["api, Pipe and bus"] = time.perf_counter() - started
        started = time.perf_counter()
        live_twice = capture.twice
        replay: list[Delivery] = []
        window = _replay_window(local, transport, bus.calls, plan, capture, replay)
        seconds["archive replay"] = time.perf_counter() - started
    ledger = traffic.ledger
    rides_table = {item["rideId"]: item for item in _scan(ddb, stack.ref("RidesTable"))}
    outbox_items = _scan_raw(ddb, stack.ref("OutboxTable"))
    outbox = {(item["rideId"]["S"], int(item["version"]["N"])) for item in outbox_items}
    poison_rides = {f"poison-{index:04d}" for index in range(poison_items)}
    outbox_keys = {key for key in outbox if key[0] not in poison_rides}
    committed = [_epoch(item["committedAt"]["S"]) for item in outbox_items if "committedAt" in item]
    given_up = {subject: sequence for faults in relay for subject, sequence in faults.given_up.items()}
    trimmed = {subject: sequence for faults in relay for subject, sequence in faults.trimmed.items()}
    lost_at_relay = {key for subject in given_up.keys() | trimmed.keys() if (key := _key_of(subject))}
    quarantined = _quarantined_rides(sqs, stack.ref("QuarantineQueue"))
    # A poison item lost at the relay never reached the enrichment, so it was never quarantined.
    read_poison = poison_rides - {ride_id for ride_id, _ in lost_at_relay}
    pointers = _pipe_dead_letters(sqs, stack.ref("PipeDeadLetterQueue"))
    pointed = [sequence for pointer in pointers for sequence in pointer[:2]]
    pipe_dlq_exact = sum(pointer[2] for pointer in pointers) == len(given_up) and set(pointed) <= set(given_up.values())
    rule_dlq = _depth(sqs, stack.ref("RuleDeadLetterQueue"))
    pipe_stats = [pipe.stats for pipe in pipes]
    enrichment_errors = sum(stats.enrichment_errors for stats in pipe_stats)
    server_errors = sum(count for status, count in api.stats.statuses.items() if status >= 500)
    expected = {(ride_id, v) for ride_id, ride in ledger.rides.items() for v in range(1, ride.version + 1)}
    checks = [
        Check(
            "every accepted change wrote exactly one outbox record",
            outbox_keys == expected and len(outbox_keys) == ledger.accepted_changes,
            f"{ledger.accepted_changes} changes accepted, {len(outbox_keys)} outbox records "
            f"(besides {poison_items} poison items)",
        ),
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
            pipe_dlq_exact and rule_dlq == 0 and set(quarantined) == read_poison,
            f"PipeDeadLetterQueue {len(pointers)} pointers to {sum(pointer[2] for pointer in pointers)} records "
            f"({len(given_up)} records given up), RuleDeadLetterQueue {rule_dlq}, QuarantineQueue "
            f"{len(quarantined)} messages for {len(set(quarantined))} of {len(read_poison)} poison items read "
            f"({poison_items - len(read_poison)} lost at the relay)",
        ),
        Check(
            "no unhandled exception upstream",
            server_errors == 0 and enrichment_errors == 0,
            f"{server_errors} API 5xx, {enrichment_errors} enrichment errors",
        ),
    ]
    events_put = sum(stats.events_put for stats in pipe_stats) + bus.duplicates_put
    ride_events_put = events_put - len(quarantined)
    replayed = len(replay) - (capture.twice - live_twice)
    hops = [
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
            ledger.accepted_changes + poison_items,
            plan.counts[Fault.API_CRASH_AFTER_COMMIT].injected + poison_items,
            0,
            len(outbox_keys),
            f"one TransactWriteItems per change; {plan.counts[Fault.API_CRASH_AFTER_COMMIT].injected} crashes "
            f"after the commit; {poison_items} poison items beside the records",
        ),
        HopRow(
            Hop.STREAM_TO_BUS.value,
            "all",
            sum(stats.records_read for stats in pipe_stats) + len(trimmed),
            sum(faults.again for faults in relay) + bus.failed_entries + bus.duplicates_put + len(lost_at_relay),
            0,
            events_put,
            f"{sum(faults.again for faults in relay)} batches again, {bus.failed_entries} partial failures "
            f"({sum(s.bisections for s in pipe_stats)} bisections, {sum(s.retries for s in pipe_stats)} retries, "
            f"{sum(s.enrichment_invocations for s in pipe_stats)} enrichments), {bus.duplicates_put} PutEvents "
            f"duplicates; {len(given_up)} records in batches given up ({len(pointers)} DLQ pointers), "
            f"{len(trimmed)} trimmed before the Pipe read them; {len(quarantined)} rejections quarantined; "
            "the Pipe passes duplicates on",
        ),
        HopRow(
            Hop.BUS_TO_QUEUE.value,
            "all",
            ride_events_put,
            live_twice + len(poison_subjects),
            0,
            len(live),
            f"{live_twice} rule deliveries twice, {len(poison_subjects)} poison bodies sent to the queue",
        ),
        HopRow(
            "archive replay -> queue",
            "all",
            replayed,
            replayed + capture.twice - live_twice,
            0,
            len(replay),
            f"window {window}; {capture.twice - live_twice} rule deliveries twice",
        ),
    ]
    plan.injected(Fault.ARCHIVE_REPLAY, replayed)
    return Upstream(
        ledger=ledger,
        live=live,
        replay=replay,
        poison_subjects=poison_subjects,
        rides=rides_table,
        outbox_keys=outbox_keys,
        outbox_items=outbox_items,
        lost_at_relay=lost_at_relay & outbox_keys,
        started_at=begun,
        last_commit_at=max(committed, default=begun),
        hops=hops,
        checks=checks,
        faults=plan.summary(tuple(fault for fault, spec in FAULTS.items() if spec.hop is not Hop.QUEUE_TO_CONSUMER)),
        seconds=seconds,
    )


def _replay_window(
    local: LocalStack,
    transport: Transport,
    calls: list[PutCall],
    plan: FaultPlan,
    capture: Capture,
    into: list[Delivery],
) -> str:
    """Replay the time window holding about `rate` of the run's events, from the middle of the run.

    The window's edges fall between two PutEvents calls (whose wall-clock times the bus wrapper noted), so
    which events it holds follows from the calls alone, not from how fast this machine ran them. It is
    replayed in slices of about REPLAY_SLICE_EVENTS events, each drained before the next: moto's queue gets
    slower with every message it holds.
    """
    share = min(plan.rates[Fault.ARCHIVE_REPLAY], 1.0)
    total = sum(call.entries for call in calls)
    if share <= 0 or not total:
        return "none"
    skip, take = total * (1 - share) / 2, total * share
    window: list[int] = []
    seen = taken = 0
    for index, call in enumerate(calls):
        if seen >= skip and taken < take:
            window.append(index)
            taken += call.entries
        seen += call.entries

    def edge(index: int) -> float:
        """A moment between call index - 1 and call index (moto stamps each event inside its call)."""
        if index == 0:
            return calls[0].started - 0.001
        if index == len(calls):
            return calls[-1].ended + 0.001
        return (calls[index - 1].ended + calls[index].started) / 2

    slices: list[tuple[int, int]] = []
    first, in_slice = window[0], 0
    for index in window:
        if in_slice and in_slice + calls[index].entries > REPLAY_SLICE_EVENTS:
            slices.append((first, index))
            first, in_slice = index, 0
        in_slice += calls[index].entries
    slices.append((first, window[-1] + 1))
    events = transport.events()
    archive_arn = local.stack.get_att("RideEventArchive", "Arn")
    bus_arn = local.stack.get_att("RideEventBus", "Arn")
    for number, (start, end) in enumerate(slices):
        events.start_replay(
            ReplayName=f"chaos-{plan.seed}-{number}-{uuid.uuid4().hex[:8]}",
            EventSourceArn=archive_arn,
            EventStartTime=datetime.fromtimestamp(edge(start), UTC),
            EventEndTime=datetime.fromtimestamp(edge(end), UTC),
            Destination={"Arn": bus_arn},
        )
        capture.drain(into)
    opened, closed = (datetime.fromtimestamp(edge(index), UTC) for index in (window[0], window[-1] + 1))
    return (
        f"{opened:%H:%M:%S.%f}-{closed:%H:%M:%S.%f} UTC: {taken} of {total} events put, PutEvents calls "
        f"{window[0] + 1}-{window[-1] + 1} of {len(calls)} ({len(slices)} slices)"
    )


def _scan(client: "DynamoDBClient", table: str) -> list[dict[str, Any]]:
    pages = client.get_paginator("scan").paginate(TableName=table)
    return [from_item(item) for page in pages for item in page.get("Items", [])]


def _scan_raw(client: "DynamoDBClient", table: str) -> list[dict[str, Any]]:
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


def _depth(sqs: "SQSClient", url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def _quarantined_rides(sqs: "SQSClient", url: str) -> list[str]:
    """The rideId of the outbox record in every quarantined rejection (read, not deleted)."""
    found: list[str] = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            record = json.loads(message["Body"]).get("detail", {}).get("data", {}).get("record", {})
            found.append(str(record.get("dynamodb", {}).get("Keys", {}).get("rideId", {}).get("S", "?")))
    return found


# ---------------------------------------------------------------- the consumer queue, in simulated time


class SimClock:
    """Epoch seconds that only move when told: waits (visibility timeouts, hours before a replay) cost nothing."""

    def __init__(self, start: float) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def advance_to(self, moment: float) -> None:
        self._now = max(self._now, moment)

    def utc_now(self) -> datetime:
        return datetime.fromtimestamp(self._now, UTC)


@dataclass
class SimMessage:
    message_id: str
    body: str
    subject: str
    poison: bool
    sent_at: float
    visible_at: float
    receive_count: int = 0
    first_received_at: float | None = None
    token: int = 0


class SimQueue:
    """A standard SQS queue as `lambda_sqs.SqsPoller` relies on it, in simulated time.

    Receiving makes a message invisible for the visibility timeout and counts the receive; a message that
    was received maxReceiveCount times moves to the dead-letter queue instead of being received again (as
    moto and SQS do it, at receive time). Order is send order, retries when they become visible again.
    """

    def __init__(
        self, clock: SimClock, visibility_timeout: float, max_receive_count: int, dead_letter: "SimQueue | None"
    ) -> None:
        self._clock = clock
        self.visibility_timeout = visibility_timeout
        self.max_receive_count = max_receive_count
        self.dead_letter = dead_letter
        self._messages: dict[str, SimMessage] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._order = 0
        self.moved_to_dead_letter = 0

    def __len__(self) -> int:
        return len(self._messages)

    def send(self, body: str, subject: str, poison: bool, delay: float = 0.0) -> SimMessage:
        now = self._clock.now()
        message = SimMessage(str(uuid.uuid4()), body, subject, poison, now, now + delay)
        self._add(message)
        return message

    def receive_again(self, message: SimMessage) -> None:
        """`message`, already received, is received once more (by a second consumer): it counts, as in SQS."""
        message.receive_count += 1
        self._make_invisible(message)

    def receive(self, limit: int) -> list[SimMessage]:
        now = self._clock.now()
        received: list[SimMessage] = []
        while self._heap and len(received) < limit and self._heap[0][0] <= now:
            _, token, message_id = heapq.heappop(self._heap)
            message = self._messages.get(message_id)
            if message is None or message.token != token:
                continue
            if self.dead_letter is not None and message.receive_count >= self.max_receive_count:
                del self._messages[message_id]
                self.dead_letter._add(SimMessage(message_id, message.body, message.subject, message.poison, now, now))
                self.moved_to_dead_letter += 1
                continue
            message.receive_count += 1
            if message.first_received_at is None:
                message.first_received_at = now
            self._make_invisible(message)
            received.append(message)
        return received

    def delete(self, message: SimMessage) -> None:
        self._messages.pop(message.message_id, None)

    def change_visibility(self, receipt_handle: str, seconds: float) -> None:
        """ChangeMessageVisibility: visible again `seconds` from now. Only the newest receipt handle counts."""
        message_id, _, count = receipt_handle.rpartition("#")
        message = self._messages.get(message_id)
        if message is None or str(message.receive_count) != count:
            raise ValueError(f"ReceiptHandleIsInvalid: {receipt_handle}")
        message.visible_at = self._clock.now() + seconds
        self._push(message)

    def next_visible_at(self) -> float | None:
        while self._heap:
            visible_at, token, message_id = self._heap[0]
            message = self._messages.get(message_id)
            if message is not None and message.token == token:
                return visible_at
            heapq.heappop(self._heap)
        return None

    def take_all(self) -> list[SimMessage]:
        """Everything in the queue, removed from it (a redrive's source)."""
        messages = sorted(self._messages.values(), key=lambda message: message.token)
        self._messages.clear()
        self._heap.clear()
        return messages

    def visible_count(self) -> int:
        """Messages a receive could return now."""
        now = self._clock.now()
        return sum(1 for message in self._messages.values() if message.visible_at <= now)

    def messages(self) -> list[SimMessage]:
        return sorted(self._messages.values(), key=lambda message: message.token)

    def subject_of(self, message_id: str) -> str:
        message = self._messages.get(message_id)
        return message.subject if message else ""

    def _make_invisible(self, message: SimMessage) -> None:
        message.visible_at = self._clock.now() + self.visibility_timeout
        self._push(message)

    def _add(self, message: SimMessage) -> None:
        self._messages[message.message_id] = message
        self._push(message)

    def _push(self, message: SimMessage) -> None:
        self._order += 1
        message.token = self._order
        heapq.heappush(self._heap, (message.visible_at, self._order, message.message_id))


def lambda_record(message: SimMessage, queue_arn: str) -> dict[str, Any]:
    """The SQS record Lambda builds for a simulated message (as `lambda_sqs.SqsPoller._record`)."""
    return {
        "messageId": message.message_id,
        "receiptHandle": f"{message.message_id}#{message.receive_count}",
        "body": message.body,
        "attributes": {
            "ApproximateReceiveCount": str(message.receive_count),
            "SentTimestamp": str(int(message.sent_at * 1000)),
            "SenderId": "AIDAEVENTBRIDGE",
            "ApproximateFirstReceiveTimestamp": str(int((message.first_received_at or message.sent_at) * 1000)),
        },
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


class SimSqs:
    """The one SQS call the consumer function makes, ChangeMessageVisibility, served by a `SimQueue`."""

    def __init__(self, queue: SimQueue) -> None:
        self._queue = queue

    def change_message_visibility(self, *, QueueUrl: str, ReceiptHandle: str, VisibilityTimeout: int) -> dict[str, Any]:
        self._queue.change_visibility(ReceiptHandle, VisibilityTimeout)
        return {}


@contextmanager
def powertools_on(clock: SimClock) -> Iterator[None]:
    """Powertools idempotency reads `datetime.now()` for its lock and record expiries: give it the simulated clock.

    Without this the in-progress lock of a crashed invocation (20 s) would still be held when the message
    comes back "120 s" later in simulated time, which is not what happens in AWS.
    """

    class SimDatetime(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Self:
            return cls.fromtimestamp(clock.now(), tz)

    shim = types.ModuleType("datetime")
    shim.__dict__.update(vars(importlib.import_module("datetime")))
    shim.datetime = SimDatetime  # type: ignore[attr-defined]
    modules = (
        "aws_lambda_powertools.utilities.idempotency.base",
        "aws_lambda_powertools.utilities.idempotency.persistence.base",
        "aws_lambda_powertools.utilities.idempotency.persistence.dynamodb",
        "aws_lambda_powertools.utilities.idempotency.persistence.datarecord",
    )
    with ExitStack() as patches:
        for name in modules:
            patches.enter_context(mock.patch.object(importlib.import_module(name), "dt", shim))
        yield


# ---------------------------------------------------------------- the reconciler, on its schedule


def scheduled_event(at: datetime, rule_arn: str) -> dict[str, Any]:
    """The "Scheduled Event" EventBridge sends a scheduled function, fired at `at`.

    https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-run-lambda-schedule.html
    """
    return {
        "version": "0",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{rule_arn}@{at.isoformat()}")),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [rule_arn],
        "detail": {},
    }


@dataclass
class ReconcileRuns:
    """What the reconciler's runs did for one design."""

    runs: int = 0
    checked: int = 0
    republished: int = 0
    deliveries: int = 0
    """Messages its republished events put on the consumer queue (a rule may fire twice)."""


class ReconcilerSchedule:
    """ReconcilerFunction on its schedule, in the consumer's simulated time, through its Lambda handler.

    Every ReconcilePeriodMinutes of simulated time (ticks on multiples of the period) the handler gets the
    Scheduled Event of that moment, so its window is the template's: the two periods that ended
    ReconcileGraceMinutes before the tick. Its `reconciler()` is the same service built on the design's
    projection table, as `consumer()` returns the design. What it republishes goes on the real bus, whose
    rule puts it on the consumer queue; `drain` takes it from there, as the capture takes the Pipe's events.
    The consumer keeps waiting for ticks until the last commit has been in the windows of two runs.
    """

    def __init__(
        self,
        function: LocalFunction,
        reconciler: Reconciler,
        period: timedelta,
        grace: timedelta,
        clock: SimClock,
        last_commit_at: float,
        drain: Callable[[], list[Delivery]],
        rule_arn: str,
    ) -> None:
        self._function = function
        self._module = importlib.import_module(function.handler_path.rpartition(".")[0])
        self._reconciler = reconciler
        self._period = period.total_seconds()
        self._clock = clock
        self._drain = drain
        self._rule_arn = rule_arn
        self.next_at = math.floor(clock.now() / self._period) * self._period + self._period
        self.last_needed_at = last_commit_at + grace.total_seconds() + 2 * self._period
        self.totals = ReconcileRuns()

    @contextmanager
    def installed(self) -> Iterator[None]:
        with mock.patch.object(self._module, "reconciler", return_value=self._reconciler):
            yield

    def pending(self) -> float | None:
        """The next tick, while a commit may still be in a run's window; None once every one was judged twice."""
        return self.next_at if self.next_at <= self.last_needed_at else None

    def run_due(self) -> list[Delivery]:
        """Every tick up to now, in order; the deliveries their republished events put on the consumer queue."""
        delivered: list[Delivery] = []
        while self.next_at <= self._clock.now():
            tick = datetime.fromtimestamp(self.next_at, UTC)
            summary = self._function.invoke(scheduled_event(tick, self._rule_arn))
            self.next_at += self._period
            self.totals.runs += 1
            self.totals.checked += int(summary["checked"])
            self.totals.republished += int(summary["republished"])
            if summary["republished"]:
                delivered += self._drain()
        self.totals.deliveries += len(delivered)
        return delivered


# ---------------------------------------------------------------- the designs


@dataclass
class Design:
    """A consumer design behind the record-level interface: the Lambda handler's instance and a second one."""

    name: str
    primary: RecordConsumer
    second: RecordConsumer
    projection_table: str
    accounts_table: str
    log: EffectLog
    expected_failures: frozenset[str]
    """Record failures the design raises on purpose (the message is retried); anything else is unhandled."""


def build_design(
    name: str, stack: Stack, transport: Transport, plan: FaultPlan, context: ConsumerContext, clock: SimClock
) -> Design:
    """Fresh tables and two instrumented instances of the design (each with its own client)."""
    ttl = int(stack.function_environment("ConsumerFunction")["PROCESSED_KEY_TTL_SECONDS"])
    log = EffectLog()
    client = transport.dynamodb()
    keys, projection, accounts = (
        stack.ref(lid) for lid in ("ProcessedKeysTable", "RideProjectionTable", "RiderAccountsTable")
    )
    if name != RIDEONCE:
        # The template's own consumer tables are rideonce's; each baseline gets copies of its own.
        keys, projection, accounts = (
            create_table_like(client, table, f"{table}-{name}") for table in (keys, projection, accounts)
        )
    instances: list[RecordConsumer] = []
    for _ in range(2):
        if name == RIDEONCE:
            store = EffectStore(transport.dynamodb(), keys, projection, accounts)
            instrument_rideonce(store, plan, context, log)
            instances.append(RideEventConsumer(store, ttl, clock=clock.utc_now))
        elif name == CHECK_THEN_WRITE:
            baseline = CheckThenWriteConsumer(
                transport.dynamodb(), keys, projection, accounts, ttl, clock=clock.utc_now
            )
            instrument_check_then_write(baseline, plan, context, log)
            instances.append(baseline)
        elif name == POWERTOOLS:
            table = f"{stack.stack_name}-PowertoolsIdempotencyTable"
            if not instances:
                client.create_table(
                    TableName=table,
                    AttributeDefinitions=[{"AttributeName": POWERTOOLS_KEY_ATTRIBUTE, "AttributeType": "S"}],
                    KeySchema=[{"AttributeName": POWERTOOLS_KEY_ATTRIBUTE, "KeyType": "HASH"}],
                    BillingMode="PAY_PER_REQUEST",
                )
            powertools = PowertoolsIdempotencyConsumer(transport.dynamodb(), table, projection, accounts, ttl)
            instrument_powertools(powertools, plan, context, log)
            instances.append(powertools)
        else:
            raise ValueError(f"no design {name!r}; choose from {', '.join(DESIGNS)}")
    expected = {"PoisonMessageError"}
    expected |= {"OutOfOrderError"} if name == RIDEONCE else set()
    expected |= {"IdempotencyAlreadyInProgressError"} if name == POWERTOOLS else set()
    return Design(name, instances[0], instances[1], projection, accounts, log, frozenset(expected))


@dataclass
class PhaseStats:
    deliveries: int = 0
    dropped: int = 0
    failed: int = 0
    crashed_invocations: int = 0
    not_deleted: int = 0
    concurrent_pairs: int = 0
    held_back: int = 0
    republished: int = 0
    """Deliveries of events the reconciler republished."""
    parked: int = 0
    first_effect: int = 0
    """Index in the design's effect log where the phase started."""
    failures: Counter[str] = field(default_factory=Counter)


class ConsumerRun:
    """One design behind the ConsumerFunction's handler, fed from a `SimQueue` with the consumer-side faults."""

    def __init__(
        self,
        design: Design,
        plan: FaultPlan,
        context: ConsumerContext,
        clock: SimClock,
        function: LocalFunction,
        mapping: SqsMapping,
        queue: SimQueue,
        schedule: ReconcilerSchedule | None = None,
    ) -> None:
        self.design = design
        self.schedule = schedule
        self._plan = plan
        self._context = context
        self._clock = clock
        self._function = function
        self._mapping = mapping
        self.queue = queue
        self._module = importlib.import_module(function.handler_path.rpartition(".")[0])
        self.phases: dict[str, PhaseStats] = {}
        self._phase = PhaseStats()
        self.unhandled: list[str] = []
        self._lock = threading.Lock()
        self.redriven_healthy = 0
        """Ride events (not poison) the final redrive took from the DLQ."""
        self.applied_before_redrive: int | None = None
        """Effect log entries before the redrive: what took effect with no manual step."""

    @property
    def _last_faulty_receive(self) -> int:
        """Faults fire on a message's receives up to this one; its last two before the DLQ are fault-free."""
        return self.queue.max_receive_count - 2

    @contextmanager
    def installed(self) -> Iterator[None]:
        """The handler module's `consumer()` returns the design and its `visibility()` acts on the simulated
        queue; parsing and the record handler get crash points."""
        parse = self._module.parse_message
        record_handler = self._module.record_handler
        context, plan = self._context, self._plan

        def parse_message(body: str) -> Any:
            event = parse(body)
            if context.faults_allowed and plan.occurs(Fault.CRASH_AFTER_PARSE, context.key()):
                raise Crash(Fault.CRASH_AFTER_PARSE, context.key())
            return event

        def handle_record(record: Any) -> Verdict:
            context.subject = self.queue.subject_of(record.message_id)
            return self._after_handling(lambda: record_handler(record))

        def consumer() -> RecordConsumer:
            return self.design.primary

        def visibility() -> MessageVisibility:
            return MessageVisibility(cast("SQSClient", SimSqs(self.queue)))

        with ExitStack() as patches:
            patches.enter_context(mock.patch.object(self._module, "consumer", consumer))
            patches.enter_context(mock.patch.object(self._module, "visibility", visibility))
            patches.enter_context(mock.patch.object(self._module, "parse_message", parse_message))
            patches.enter_context(mock.patch.object(self._module, "record_handler", handle_record))
            if self.schedule is not None:
                patches.enter_context(self.schedule.installed())
            yield

    def _after_handling(self, handle: Callable[[], Verdict]) -> Verdict:
        """Count the verdict or the failure, then maybe crash after the record was reported, before the delete."""
        try:
            verdict = handle()
        except Exception as error:
            self._failure(error)
            raise
        with self._lock:
            self._phase.dropped += verdict is Verdict.DUPLICATE
        context = self._context
        if context.faults_allowed and self._plan.occurs(Fault.CRASH_BEFORE_DELETE, context.key()):
            raise Crash(Fault.CRASH_BEFORE_DELETE, context.key())
        return verdict

    def _failure(self, error: Exception) -> None:
        kind = type(error).__name__
        with self._lock:
            self._phase.failed += 1
            self._phase.failures[kind] += 1
            if kind not in self.design.expected_failures:
                self.unhandled.append(f"{kind}: {error}")

    def run_phase(self, name: str, deliveries: list[Delivery]) -> None:
        """Send `deliveries` (some held back), then run until the queue is empty."""
        self._phase = PhaseStats(first_effect=len(self.design.log.projections))
        self.phases[name] = self._phase
        self._send(deliveries)
        self._until_quiet()

    def _send(self, deliveries: list[Delivery]) -> None:
        """Onto the queue, some held back so later versions arrive first."""
        low, high = HOLD_SECONDS
        for delivery in deliveries:
            delay = 0.0
            if self._plan.occurs(Fault.OUT_OF_ORDER, delivery.subject):
                delay = low + (high - low) * self._plan.draw(Fault.OUT_OF_ORDER, delivery.subject, -1)
                self._phase.held_back += 1
            self.queue.send(delivery.body, delivery.subject, delivery.poison, delay)

    def redrive(self) -> None:
        """Move everything parked in the DLQ back to the queue (a message move task), then run until quiet."""
        assert self.queue.dead_letter is not None
        parked = self.queue.dead_letter.take_all()
        self.redriven_healthy = sum(not message.poison for message in parked)
        self.applied_before_redrive = len(self.design.log.projections)
        self.run_phase("DLQ redrive", [Delivery(m.body, m.subject, m.poison) for m in parked])

    def _until_quiet(self) -> None:
        deadline = self._clock.now() + QUIET_LIMIT.total_seconds()
        parked_before = self.queue.moved_to_dead_letter
        while True:
            if self.schedule is not None:
                republished = self.schedule.run_due()
                self._phase.republished += len(republished)
                self._send(republished)
            if self._clock.now() > deadline:
                raise RuntimeError(f"{self.design.name}: the consumer queue did not go quiet in {QUIET_LIMIT}")
            batch = self.queue.receive(self._mapping.batch_size)
            if not batch:
                tick = self.schedule.pending() if self.schedule is not None else None
                upcoming = [moment for moment in (self.queue.next_visible_at(), tick) if moment is not None]
                if not upcoming:
                    break
                self._clock.advance_to(min(upcoming))
                continue
            pairs = [
                message
                for message in batch
                if message.receive_count + 1 <= self._last_faulty_receive
                and self._plan.occurs(Fault.CONCURRENT_CONSUMERS, message.subject)
            ]
            alone = [message for message in batch if message not in pairs]
            if alone:
                self._settle(alone, self._invoke(alone))
            for message in pairs:
                self._concurrently(message)
            self._clock.advance(INVOCATION_SECONDS)
        self._phase.parked = self.queue.moved_to_dead_letter - parked_before

    def _invoke(self, messages: list[SimMessage], gate: Turnstile | None = None) -> set[str]:
        """One invocation of the function with these messages; the ids of those that must stay on the queue."""
        context = self._context
        context.role, context.gate = PRIMARY, gate
        context.faults_allowed = all(m.receive_count <= self._last_faulty_receive for m in messages)
        ids = [message.message_id for message in messages]
        with self._lock:
            self._phase.deliveries += len(messages)
        try:
            response = self._function.invoke({"Records": [self._record(message) for message in messages]})
        except Crash:
            with self._lock:
                self._phase.crashed_invocations += 1
            return set(ids)
        except Exception as error:  # a function error: Lambda retries the whole batch
            with self._lock:
                self.unhandled.append(f"invocation failed: {type(error).__name__}: {error}")
            return set(ids)
        finally:
            context.gate = None
        return self._failed_ids(response, ids)

    def _settle(self, messages: list[SimMessage], failed: set[str]) -> None:
        """Lambda's side of a partial batch response: delete what succeeded, unless the delete is lost."""
        for message in messages:
            if message.message_id in failed:
                continue
            if message.receive_count <= self._last_faulty_receive and self._plan.occurs(
                Fault.NOT_DELETED, message.subject
            ):
                self._phase.not_deleted += 1
                continue
            self.queue.delete(message)

    def _concurrently(self, message: SimMessage) -> None:
        """Two consumers with one message at once: the handler with it, and the design's second instance.

        One message received twice (its visibility timeout ran out under the first consumer, or SQS handed it
        to two receivers): only the newest receipt handle, the second consumer's, deletes it. So the message
        goes when the second consumer succeeds, and otherwise stays to be received again.
        """
        self._phase.concurrent_pairs += 1
        gate = Turnstile()
        self.queue.receive_again(message)
        second_deletes: list[bool] = []

        def primary() -> None:
            try:
                self._invoke([message], gate)  # its receipt handle is stale: it cannot delete the message
            except BaseException as error:  # a harness fault: reported, never left in a thread
                self.unhandled.append(f"primary consumer: {error!r}")
            finally:
                gate.leave(PRIMARY)

        def second() -> None:
            try:
                second_deletes.append(self._second_consumer(message, gate))
            except BaseException as error:  # a harness fault: reported, never left in a thread
                self.unhandled.append(f"second consumer: {error!r}")
            finally:
                gate.leave(SECOND)

        threads = [threading.Thread(target=primary), threading.Thread(target=second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if gate.timed_out:
            self.unhandled.append(f"the turnstile of {message.subject} timed out")
        self._settle([message], set() if second_deletes == [True] else {message.message_id})

    def _second_consumer(self, message: SimMessage, gate: Turnstile) -> bool:
        """The second consumer: parse and handle the message at record level; True when it would delete it."""
        context = self._context
        context.role, context.gate, context.subject = SECOND, gate, message.subject
        context.faults_allowed = True
        with self._lock:
            self._phase.deliveries += 1
        try:
            self._after_handling(lambda: self.design.second.handle(self._module.parse_message(message.body)))
        except Crash:
            with self._lock:
                self._phase.crashed_invocations += 1
            return False
        except Exception:  # counted by _after_handling; the message stays for a retry
            return False
        finally:
            context.gate = None
        return True

    def _failed_ids(self, response: Any, ids: list[str]) -> set[str]:
        return failed_ids(response, ids, self._mapping.report_batch_item_failures)

    def _record(self, message: SimMessage) -> dict[str, Any]:
        return lambda_record(message, self._mapping.queue_arn)


@dataclass
class DesignResult:
    name: str
    hops: list[HopRow]
    faults: dict[str, dict[str, float]]
    metrics: EffectMetrics
    checks: list[Check]
    seconds: float
    failures: dict[str, int]
    unhandled: list[str]

    @property
    def ok(self) -> bool:
        return all(check.held for check in self.checks)


def run_design(name: str, local: LocalStack, upstream: Upstream, plan: FaultPlan, transport: Transport) -> DesignResult:
    """The captured deliveries through one design, live, then the replay hours later, then a DLQ redrive."""
    started = time.perf_counter()
    stack = local.stack
    plan = plan.fork()
    # From the first commit: the reconciler's windows are commit times, so its ticks must meet them.
    clock = SimClock(upstream.started_at)
    context = ConsumerContext()
    design = build_design(name, stack, transport, plan, context, clock)
    function = local.functions["ConsumerFunction"]
    (mapping,) = [m for m in sqs_mappings(stack) if m.function_logical_id == "ConsumerFunction"]
    queue_props = stack.properties(mapping.queue_logical_id)
    redrive = queue_props["RedrivePolicy"]
    dead_letter = SimQueue(clock, 0, 0, None)
    queue = SimQueue(clock, float(queue_props["VisibilityTimeout"]), int(redrive["maxReceiveCount"]), dead_letter)
    schedule = reconciler_schedule(local, design, upstream, plan, transport, clock)
    run = ConsumerRun(design, plan, context, clock, function, mapping, queue, schedule)
    with run.installed(), powertools_on(clock):
        run.run_phase("live", upstream.live)
        clock.advance(REPLAY_CLOCK_JUMP.total_seconds())
        run.run_phase("archive replay, 6 h later", upstream.replay)
        run.redrive()
    parked = dead_letter.messages()
    metrics, checks = _design_checks(design, upstream, parked, run, transport.dynamodb(), schedule.totals)
    hops = _consumer_hops(design, run)
    failures: Counter[str] = Counter()
    for phase in run.phases.values():
        failures.update(phase.failures)
    consumer_faults = tuple(fault for fault, spec in FAULTS.items() if spec.hop is Hop.QUEUE_TO_CONSUMER)
    return DesignResult(
        name=name,
        hops=hops,
        faults=plan.summary(consumer_faults),
        metrics=metrics,
        checks=checks,
        seconds=round(time.perf_counter() - started, 1),
        failures=dict(failures),
        unhandled=run.unhandled[:20],
    )


def reconciler_schedule(
    local: LocalStack, design: Design, upstream: Upstream, plan: FaultPlan, transport: Transport, clock: SimClock
) -> ReconcilerSchedule:
    """The template's ReconcilerFunction, period and grace, judging this design's projection table."""
    stack = local.stack
    settings = ReconcilerSettings.from_env(stack.function_environment("ReconcilerFunction"))
    client = transport.dynamodb()
    reconciler = Reconciler(
        OutboxReader(client, settings.outbox_table_name, settings.outbox_commit_index_name),
        ProjectionReader(client, design.projection_table),
        EventPublisher(
            transport.events(), settings.event_bus_name, settings.relay_event_source, settings.relay_detail_type
        ),
        period=timedelta(minutes=settings.reconcile_period_minutes),
        grace=timedelta(minutes=settings.reconcile_grace_minutes),
    )
    capture = Capture(transport.sqs(), stack.ref("RideEventsQueue"), plan, {})

    def drain() -> list[Delivery]:
        delivered: list[Delivery] = []
        capture.drain(delivered)
        return delivered

    return ReconcilerSchedule(
        local.functions["ReconcilerFunction"],
        reconciler,
        timedelta(minutes=settings.reconcile_period_minutes),
        timedelta(minutes=settings.reconcile_grace_minutes),
        clock,
        upstream.last_commit_at,
        drain,
        stack.get_att("ReconcilerFunctionEvery", "Arn"),
    )


def _consumer_hops(design: Design, run: ConsumerRun) -> list[HopRow]:
    rows = []
    seen: set[tuple[str, int]] = set()
    phases = list(run.phases.items())
    for index, (name, phase) in enumerate(phases):
        end = phases[index + 1][1].first_effect if index + 1 < len(phases) else len(design.log.projections)
        writes = design.log.projections[phase.first_effect : end]
        fresh = 0
        for key in writes:
            fresh += key not in seen
            seen.add(key)
        hop = {"live": "queue -> consumer"}.get(name, f"{name} -> consumer")
        rows.append(
            HopRow(
                hop,
                design.name,
                phase.deliveries,
                phase.not_deleted + phase.concurrent_pairs + phase.crashed_invocations + phase.held_back,
                phase.dropped,
                fresh,
                f"{phase.not_deleted} not deleted, {phase.concurrent_pairs} concurrent pairs, "
                f"{phase.crashed_invocations} crashed invocations, {phase.held_back} held back, "
                f"{phase.republished} republished by the reconciler; "
                f"{phase.failed} records failed ({', '.join(f'{k} {v}' for k, v in phase.failures.items()) or '-'}); "
                f"{len(writes) - fresh} duplicate effects; {phase.parked} parked in the DLQ",
            )
        )
    return rows


def _design_checks(
    design: Design,
    upstream: Upstream,
    parked: list[SimMessage],
    run: ConsumerRun,
    client: "DynamoDBClient",
    reconciles: ReconcileRuns,
) -> tuple[EffectMetrics, list[Check]]:
    """The end-to-end invariants for one design, from its effect log, its tables and its DLQ."""
    unhandled = run.unhandled
    writes = Counter(design.log.projections)
    before_redrive = set(design.log.projections[: run.applied_before_redrive])
    charges = Counter((ride_id, version) for ride_id, version, _ in design.log.charges)
    parked_keys = {key for message in parked if not message.poison and (key := _key_of(message.subject))}
    legit = upstream.outbox_keys
    wrong_count = [
        key
        for key in legit
        if not ((writes[key] == 1 and key not in parked_keys) or (writes[key] == 0 and key in parked_keys))
    ]
    unknown = set(writes) - legit
    lost = [key for key in legit if writes[key] == 0]
    lost_before_redrive = [key for key in legit if key not in before_redrive]
    extra_charges = sum(count - 1 for count in charges.values() if count > 1)
    extra_writes = sum(count - 1 for count in writes.values() if count > 1)
    order_violations = 0
    newest: dict[str, int] = {}
    for ride_id, version in design.log.projections:
        if version < newest.get(ride_id, 0):
            order_violations += 1
        newest[ride_id] = max(newest.get(ride_id, 0), version)
    parked_subjects = {message.subject for message in parked}
    healthy_parked = [message for message in parked if not message.poison]
    accounts = {item["riderId"]: item for item in _scan(client, design.accounts_table)}
    projection = {item["rideId"]: item for item in _scan(client, design.projection_table)}
    fares: dict[str, list[Decimal]] = defaultdict(list)
    for ride in upstream.ledger.rides.values():
        if ride.status == "COMPLETED" and ride.fare is not None:
            fares[ride.rider_id].append(ride.fare)
    wrong_riders = [
        rider
        for rider in set(fares) | set(accounts)
        if Decimal(str(accounts.get(rider, {}).get("chargedEUR", 0))) != sum(fares[rider], Decimal(0))
        or int(accounts.get(rider, {}).get("chargeCount", 0)) != len(fares[rider])
    ]
    charged = sum((Decimal(str(account.get("chargedEUR", 0))) for account in accounts.values()), Decimal(0))
    differ = [
        ride for ride in upstream.rides.keys() | projection.keys() if upstream.rides.get(ride) != projection.get(ride)
    ]
    metrics = EffectMetrics(
        duplicate_effects=extra_charges + extra_writes,
        extra_charges=extra_charges,
        extra_projection_writes=extra_writes,
        lost_events=len(lost),
        order_violations=order_violations,
        parked_healthy=len(healthy_parked),
        unhandled=len(unhandled),
        lost_before_redrive=len(lost_before_redrive),
        parked_healthy_before_redrive=run.redriven_healthy,
        lost_at_relay=len(upstream.lost_at_relay),
        repaired=sum(1 for key in upstream.lost_at_relay if writes[key] >= 1),
        reconciler_runs=reconciles.runs,
        republished=reconciles.republished,
    )
    checks = [
        Check(
            "every outbox record was applied exactly once or sits in the DLQ, never both",
            not wrong_count and not unknown,
            f"{len(legit)} records: {sum(1 for k in legit if writes[k] == 1)} applied once, "
            f"{sum(1 for k in legit if writes[k] > 1)} more than once, {len(lost)} never "
            f"({len(parked_keys & legit)} of them parked); {len(unknown)} unknown applied",
        ),
        Check(
            "every outbox record took effect before the DLQ redrive: the reconciler repaired the relay's losses",
            not lost_before_redrive,
            f"{len(legit) - len(lost_before_redrive)} of {len(legit)} records applied before the redrive, "
            f"{len(upstream.lost_at_relay)} lost at the relay and "
            f"{sum(1 for key in upstream.lost_at_relay if key in before_redrive)} of them republished and applied; "
            f"{run.redriven_healthy} ride events redriven",
        ),
        Check(
            "the DLQ holds exactly the poison" if upstream.poison_subjects else "the DLQ is empty",
            not healthy_parked and parked_subjects == upstream.poison_subjects,
            f"{len(parked)} parked: {len(parked) - len(healthy_parked)} poison copies of "
            f"{len(parked_subjects & upstream.poison_subjects)}/{len(upstream.poison_subjects)} poison messages, "
            f"{len(healthy_parked)} ride events",
        ),
        Check(
            "no rider charged twice or missed: charges equal the fares of completed rides",
            not wrong_riders,
            f"charged {charged} EUR for {sum(len(f) for f in fares.values())} completed rides; "
            f"{extra_charges} extra charges; {len(wrong_riders)} riders wrong",
        ),
        Check(
            "the projection equals the rides table",
            not differ,
            f"{len(projection)} projected, {len(upstream.rides)} rides, {len(differ)} differ",
        ),
        Check(
            "each ride's versions were applied in increasing order",
            order_violations == 0,
            f"{order_violations} applications of an older version after a newer one "
            f"({len(design.log.projections)} applications)",
        ),
        Check(
            "no unhandled exception",
            not unhandled,
            f"{len(unhandled)} unhandled" + (f": {unhandled[0]}" if unhandled else ""),
        ),
    ]
    return metrics, checks


# ---------------------------------------------------------------- the run


@dataclass
class ChaosReport:
    seed: int
    rate: float
    rides: int
    changes: int
    transport: str
    rates: dict[str, float]
    upstream_hops: list[HopRow]
    upstream_checks: list[Check]
    upstream_faults: dict[str, dict[str, float]]
    designs: dict[str, DesignResult]
    seconds: dict[str, float]

    @property
    def ok(self) -> bool:
        """The upstream and rideonce held every invariant (the baselines are expected not to)."""
        upstream = all(check.held for check in self.upstream_checks)
        return upstream and (RIDEONCE not in self.designs or self.designs[RIDEONCE].ok)

    def as_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "designs": {name: {**asdict(result), "ok": result.ok} for name, result in self.designs.items()},
            "ok": self.ok,
        }


def rides_for(changes: int) -> int:
    """Rides enough for at least `changes` ride changes, five standard deviations to spare."""
    rides = math.ceil(changes / CHANGES_PER_RIDE)
    while rides * CHANGES_PER_RIDE - 5 * math.sqrt(rides * CHANGES_PER_RIDE_VARIANCE) < changes:
        rides += 1
    return rides


def run(
    seed: int,
    rides: int,
    rate: float = DEFAULT_RATE,
    designs: tuple[str, ...] = DESIGNS,
    in_process: bool = True,
    say: Callable[[str], None] = lambda _: None,
    overrides: Mapping[Fault, float] | None = None,
    workers: int = 1,
) -> ChaosReport:
    """One chaos run: the upstream once, then every design on the same captured deliveries and schedule.

    With `workers` > 1, that many designs run at once, the others each in a process of its own with a local
    stack of its own (the consumer side needs only the capture, the ledger and the rides table). `overrides`
    sets single faults' rates over the uniform `rate` (0 switches one off).
    """
    unknown = set(designs) - set(DESIGNS)
    if unknown:
        raise ValueError(f"unknown designs {sorted(unknown)}; choose from {', '.join(DESIGNS)}")
    started = time.perf_counter()
    close_moto_gaps()
    local = LocalStack.start(outputs_file=None, environment_overrides=QUIET_FUNCTIONS)
    quiet = quiet_handlers()
    try:
        (mapping,) = [m for m in sqs_mappings(local.stack) if m.function_logical_id == "ConsumerFunction"]
        rates = FaultRates.uniform(rate, mapping.batch_size)
        for fault, value in (overrides or {}).items():
            rates = rates.with_rate(fault, value)
        plan = FaultPlan(seed, rates)
        transport = Transport(in_process)
        say(f"seed {seed}: local stack on {local.endpoint}, transport {transport.name}, {rides} rides, rate {rate}")
        upstream = run_upstream(local, plan, rides, transport, say)
        seconds = {key: round(value, 1) for key, value in upstream.seconds.items()}
        say(
            f"seed {seed}: {upstream.ledger.accepted_changes} changes, {len(upstream.live)} + {len(upstream.replay)} "
            f"deliveries captured; consumer designs {', '.join(designs)} ({workers} at a time)"
        )
        results = _run_designs(designs, local, upstream, plan, transport, workers, say)
        seconds.update({f"consumer: {name}": result.seconds for name, result in results.items()})
    finally:
        quiet()
        local.stop()
    seconds["total"] = round(time.perf_counter() - started, 1)
    return ChaosReport(
        seed=seed,
        rate=rate,
        rides=rides,
        changes=upstream.ledger.accepted_changes,
        transport=transport.name,
        rates={fault.value: plan.rates[fault] for fault in Fault},
        upstream_hops=upstream.hops,
        upstream_checks=upstream.checks,
        upstream_faults=upstream.faults,
        designs={name: results[name] for name in designs},
        seconds=seconds,
    )


DESIGN_COST = {POWERTOOLS: 3, RIDEONCE: 2, CHECK_THEN_WRITE: 1}
"""Relative consumer time (Powertools writes on every delivery), to start the longest first."""


def _run_designs(
    designs: tuple[str, ...],
    local: LocalStack,
    upstream: Upstream,
    plan: FaultPlan,
    transport: Transport,
    workers: int,
    say: Callable[[str], None],
) -> dict[str, DesignResult]:
    ordered = sorted(designs, key=lambda name: -DESIGN_COST[name])
    elsewhere = ordered[: max(0, min(workers, len(ordered)) - 1)]
    here = [name for name in ordered if name not in elsewhere]
    results: dict[str, DesignResult] = {}
    with ExitStack() as stack:
        futures = {}
        if elsewhere:
            pool = stack.enter_context(
                ProcessPoolExecutor(max_workers=len(elsewhere), mp_context=multiprocessing.get_context("spawn"))
            )
            futures = {
                name: pool.submit(_design_in_own_stack, name, upstream, plan.seed, plan.rates, transport.in_process)
                for name in elsewhere
            }
        for name in here:
            say(f"seed {plan.seed}: consumer design {name}")
            results[name] = run_design(name, local, upstream, plan, transport)
            say(f"seed {plan.seed}: {name} done in {results[name].seconds} s")
        for name, future in futures.items():
            results[name] = future.result()
            say(f"seed {plan.seed}: {name} done in {results[name].seconds} s (own process)")
    return results


def _design_in_own_stack(name: str, upstream: Upstream, seed: int, rates: FaultRates, in_process: bool) -> DesignResult:
    """A design in a worker process: a fresh local stack, the same capture and the same schedule."""
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    local = LocalStack.start(outputs_file=None, environment_overrides=QUIET_FUNCTIONS)
    quiet = quiet_handlers()
    try:
        transport = Transport(in_process)
        _restore(transport.dynamodb(), local.stack.ref("OutboxTable"), upstream.outbox_items)
        return run_design(name, local, upstream, FaultPlan(seed, rates), transport)
    finally:
        quiet()
        local.stop()


def _restore(client: "DynamoDBClient", table: str, items: list[dict[str, Any]]) -> None:
    """Put the upstream's outbox items into this stack's table: the reconciler reads them."""
    for start in range(0, len(items), 25):
        pending: dict[str, Any] = {table: [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]}
        while pending:
            pending = dict(client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {})


def quiet_handlers() -> Callable[[], None]:
    """What the handlers log and print goes nowhere during a run; returns the function that undoes it.

    Poison alone logs an error per receive, and Powertools prints a metric set every 100 values even with
    metrics disabled. The logger was built at import, maybe by an earlier test at another level: set it too.
    """
    observability = importlib.import_module("rideonce.observability")
    level = observability.logger.log_level
    observability.logger.setLevel("CRITICAL")
    # The Pipe logs each injected give-up as a warning; the report counts them.
    pipe_log = logging.getLogger("local.emulators.pipe")
    pipe_level = pipe_log.level
    pipe_log.setLevel(logging.ERROR)
    sink = open(os.devnull, "w")  # noqa: SIM115 (closed by the returned function)
    send_output_to(sink)

    def restore() -> None:
        send_output_to(None)
        sink.close()
        observability.logger.setLevel(level)
        pipe_log.setLevel(pipe_level)

    return restore


# ---------------------------------------------------------------- report


def render(report: ChaosReport, console: Console) -> None:
    names = list(report.designs)
    console.print(
        f"[bold]rideonce chaos run[/]: seed {report.seed}, rate {report.rate}, {report.rides} rides, "
        f"{report.changes} ride changes, transport {report.transport}"
    )
    faults = Table(title="faults injected per hop (evaluated -> injected)")
    faults.add_column("hop")
    faults.add_column("fault")
    faults.add_column("rate", justify="right")
    faults.add_column("upstream", justify="right")
    for name in names:
        faults.add_column(name, justify="right")
    for fault, spec in FAULTS.items():
        rate = f"{report.rates[fault.value]:.4g}"
        if spec.hop is Hop.QUEUE_TO_CONSUMER:
            cells = ["", *(_count(report.designs[name].faults[fault.value]) for name in names)]
        else:
            cells = [_count(report.upstream_faults[fault.value]), *("" for _ in names)]
        faults.add_row(spec.hop.value, fault.value, rate, *cells)
    console.print(faults)
    hops = Table(title="per hop: received, injected, dropped, applied")
    for column in ("hop", "design", "received", "injected", "dropped", "applied", "note"):
        hops.add_column(column, justify="right" if column in ("received", "injected", "dropped", "applied") else "left")
    for row in [*report.upstream_hops, *(row for result in report.designs.values() for row in result.hops)]:
        hops.add_row(
            row.hop, row.design, str(row.received), str(row.injected), str(row.dropped), str(row.applied), row.note
        )
    console.print(hops)
    effects = Table(title="effects per design")
    effects.add_column("measure")
    for name in names:
        effects.add_column(name, justify="right")
    for label, attribute in (
        ("duplicate effects", "duplicate_effects"),
        ("  extra charges", "extra_charges"),
        ("  extra projection writes", "extra_projection_writes"),
        ("lost events (never applied)", "lost_events"),
        ("order violations (older after newer)", "order_violations"),
        ("healthy events parked in the DLQ", "parked_healthy"),
        ("unhandled exceptions", "unhandled"),
        ("not applied before the DLQ redrive", "lost_before_redrive"),
        ("healthy events parked before the DLQ redrive", "parked_healthy_before_redrive"),
        ("changes lost at the relay", "lost_at_relay"),
        ("  repaired by the reconciler (applied)", "repaired"),
        ("reconciler runs", "reconciler_runs"),
        ("  events republished", "republished"),
    ):
        effects.add_row(label, *(str(getattr(report.designs[name].metrics, attribute)) for name in names))
    console.print(effects)
    invariants = Table(title="end-to-end invariants")
    invariants.add_column("invariant")
    invariants.add_column("upstream (shared)")
    for name in names:
        invariants.add_column(name)
    for check in report.upstream_checks:
        invariants.add_row(check.name, _held(check), *("" for _ in names))
    for index, check in enumerate(next(iter(report.designs.values())).checks if report.designs else []):
        invariants.add_row(check.name, "", *(_held(report.designs[name].checks[index]) for name in names))
    console.print(invariants)
    for name in names:
        for check in report.designs[name].checks:
            if not check.held:
                console.print(f"  [dim]{name}: {check.name}: {check.detail}[/]")
    for check in report.upstream_checks:
        if not check.held:
            console.print(f"  [dim]upstream: {check.name}: {check.detail}[/]")
    console.print("seconds: " + ", ".join(f"{key} {value}" for key, value in report.seconds.items()))
    verdict = (
        "[bold green]rideonce held every invariant[/]" if report.ok else "[bold red]rideonce broke an invariant[/]"
    )
    console.print(verdict)


def _count(count: Mapping[str, float]) -> str:
    return f"{int(count['evaluated'])} -> {int(count['injected'])}"


def _held(check: Check) -> str:
    return "[green]yes[/]" if check.held else "[red]NO[/]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1, help="the one seed every fault decision derives from")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--changes", type=int, help=f"ride changes to make at least (default {DEFAULT_CHANGES})")
    size.add_argument("--rides", type=int, help="rides to simulate instead (about 3.7 changes each)")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="extra deliveries per hop (default 0.3)")
    parser.add_argument("--designs", default=",".join(DESIGNS), help=f"comma-separated, from {', '.join(DESIGNS)}")
    parser.add_argument("--transport", choices=("in-process", "http"), default="in-process")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(len(DESIGNS), os.cpu_count() or 1),
        help="consumer designs run at once, each beyond the first in a process of its own (default: one per core)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND=RATE",
        help=f"override one fault's rate (0 switches it off); repeatable. Kinds: {', '.join(f.value for f in Fault)}",
    )
    parser.add_argument("--json", type=Path, default=STATE_DIR / "chaos-report.json")
    args = parser.parse_args(argv)
    designs = tuple(name.strip() for name in args.designs.split(",") if name.strip())
    overrides: dict[Fault, float] = {}
    for override in args.fault:
        kind, _, value = override.partition("=")
        try:
            overrides[Fault(kind.strip())] = float(value)
        except ValueError:
            parser.error(f"--fault {override!r}: expected KIND=RATE with a kind from the list and a number")
    # Powertools warns when an invocation published no metric (every duplicate-only batch): expected here.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    rides = args.rides or rides_for(args.changes or DEFAULT_CHANGES)
    console = Console(width=None if sys.stdout.isatty() else 160)
    report = run(
        args.seed,
        rides,
        args.rate,
        designs,
        in_process=args.transport == "in-process",
        say=lambda line: console.print(f"[dim]{time.strftime('%H:%M:%S')} {line}[/]"),
        overrides=overrides,
        workers=args.workers,
    )
    render(report, console)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report.as_json(), indent=2, default=str) + "\n")
    console.print(f"report written to {args.json}")
    return 0 if report.ok else 1
