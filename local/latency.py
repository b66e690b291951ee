"""`python -m local.latency`: commit -> applied latency of ride events delivered out of order, in simulated time.

The ConsumerFunction's handler, unchanged, behind the SQS event source emulator (local/emulators/event_source.py)
on moto's own RideEventsQueue, with the template's visibility timeout, maxReceiveCount, BatchSize and
MaximumBatchingWindowInSeconds, all on one simulated clock that moto's SQS reads too: a 120 s visibility
timeout costs nothing to wait for, and the same seed gives the same figures on any machine.

The traffic: rides start at a steady rate; each makes its four changes (requested, accepted, started,
completed) a few seconds apart. An event enters the queue shortly after its commit (the upstream hops
taken as a short transit). `--reordered` of the deliveries are held back until after their successor
has entered the queue, so the successor arrives first and is early. Latency is measured
from an event's commit to the end of the invocation that applied it.

Two ways of retrying an early event are measured on the same traffic: the consumer's own (it shortens
the message's visibility with ChangeMessageVisibility, backing off with its receive count), and the
queue's visibility timeout alone (the call is refused, as when the function's role may not make it; the
only way the consumer retried before it made that call).
"""

import argparse
import importlib
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import boto3
from botocore.exceptions import ClientError
from moto import mock_aws

from local.aws import moto_patches
from local.aws.dynamodb import create_table_like, create_tables
from local.aws.functions import Handler, LocalFunction, cold_start, export_environment, functions, send_output_to
from local.aws.messaging import create_messaging
from local.aws.moto_patches import clock_installed
from local.aws.stack import LOCAL_CREDENTIALS
from local.aws.template import ACCOUNT_ID, REGION, Stack
from local.emulators.clock import SimulatedClock
from local.emulators.event_source import Invoke, SqsPoller, sqs_mappings
from rideonce.dal.consumer import EffectStore
from rideonce.dal.queue import MessageVisibility
from rideonce.logic import events as ride_events
from rideonce.logic import rides as ride_logic
from rideonce.models.requests import CreateRideRequest
from rideonce.models.ride import Location, Money
from rideonce.services.consumer import RideEventConsumer

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

RIDES_PER_SECOND = 5.0
CHANGE_GAP_SECONDS = (0.5, 3.0)
"""Between two changes of one ride: a lifecycle driven back to back (as the demo's riders do), so that two
of its events are in flight at once, which is when a bus that keeps no order delivers them swapped."""
TRANSIT_SECONDS = (0.05, 0.5)
"""Commit -> on the consumer queue, for an event delivered in order."""
HELD_BEHIND_SECONDS = (0.1, 1.0)
"""How long after its successor a reordered event enters the queue."""
CHANGES_PER_RIDE = 4
INVOCATION_SECONDS = 0.05
START = 1_800_000_000.0
"""The simulated clock's start (epoch seconds): every commit and delivery time counts from here."""
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
QUIET_FUNCTIONS = {"POWERTOOLS_LOG_LEVEL": "CRITICAL", "POWERTOOLS_METRICS_DISABLED": "true"}
HONOURED = "honoured"
IGNORED = "ignored"
MODES = (HONOURED, IGNORED)


@dataclass(frozen=True)
class Delivery:
    key: str
    body: str
    committed_at: float
    delivered_at: float


@dataclass
class LatencyResult:
    mode: str
    events: int
    reordered: int
    """Deliveries that entered the queue after a later version of their ride."""
    p50: float
    p90: float
    p99: float
    worst: float
    deferred: int
    """Receives that ended with the event reported early (each one a retry)."""
    parked: int
    not_applied: int


def traffic(rides: int, reordered_share: float, seed: int, origin: float = START) -> list[Delivery]:
    """Every ride's four events with their commit and delivery times (epoch seconds from `origin`), as one seed decides.

    `reordered_share` is of all deliveries; only an event with a successor can be held behind it (three of
    four), so each of those is held with the probability that makes the whole share.
    """
    rng = random.Random(seed)
    hold = min(1.0, reordered_share * CHANGES_PER_RIDE / (CHANGES_PER_RIDE - 1))
    request = CreateRideRequest(rider_id="rider-latency", pickup=Location(lat=1, lng=2), dropoff=Location(lat=3, lng=4))
    deliveries: list[Delivery] = []
    for index in range(rides):
        moment = origin + index / RIDES_PER_SECOND
        ride_id = f"latency-{seed}-{index:06d}"
        change = ride_logic.request_ride(ride_id, request, datetime.fromtimestamp(moment, UTC))
        changes = [change]
        for step in range(3):
            moment += rng.uniform(*CHANGE_GAP_SECONDS)
            at = datetime.fromtimestamp(moment, UTC)
            ride = changes[-1].ride
            if step == 0:
                changes.append(ride_logic.accept(ride, "driver-1", at))
            elif step == 1:
                changes.append(ride_logic.start(ride, at))
            else:
                changes.append(ride_logic.complete(ride, Money(amount=Decimal("12.50"), currency="EUR"), at))
        committed = [c.ride.updated_at.timestamp() for c in changes]
        delivered = [at + rng.uniform(*TRANSIT_SECONDS) for at in committed]
        # From the last event back, so a held event can be held behind a successor that was itself held.
        for version in range(len(changes) - 2, -1, -1):
            if rng.random() < hold:
                delivered[version] = delivered[version + 1] + rng.uniform(*HELD_BEHIND_SECONDS)
        for change, commit, delivery in zip(changes, committed, delivered, strict=True):
            event = ride_events.build_event(change, change.ride.updated_at, TRACEPARENT)
            deliveries.append(
                Delivery(event.metadata.idempotency_key, _envelope(event.model_dump(mode="json")), commit, delivery)
            )
    return sorted(deliveries, key=lambda delivery: delivery.delivered_at)


def _envelope(detail: dict[str, Any]) -> str:
    """The event as the rule delivers it to SQS: an EventBridge envelope around the detail."""
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": detail["metadata"]["eventType"],
            "source": detail["metadata"]["source"],
            "account": ACCOUNT_ID,
            "time": detail["metadata"]["occurredAt"],
            "region": REGION,
            "resources": [],
            "detail": detail,
        }
    )


def reordered_count(deliveries: list[Delivery]) -> int:
    """Deliveries that entered the queue after a later version of their ride did."""
    newest: dict[str, int] = {}
    late = 0
    for delivery in deliveries:  # in delivery order
        ride, _, version = delivery.key.rpartition("#v")
        late += int(version) < newest.get(ride, 0)
        newest[ride] = max(newest.get(ride, 0), int(version))
    return late


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


class RefusedVisibilityChanges:
    """The one SQS call the consumer makes, refused: as for a function whose role lacks sqs:ChangeMessageVisibility."""

    def change_message_visibility(self, **_: Any) -> dict[str, Any]:
        error = {"Code": "AccessDenied", "Message": "not authorized to perform sqs:ChangeMessageVisibility"}
        raise ClientError(cast("Any", {"Error": error}), "ChangeMessageVisibility")


class Simulation:
    """One mode's run: the deliveries through moto's queue and the SQS event source to the ConsumerFunction."""

    def __init__(
        self, stack: Stack, function: LocalFunction, mode: str, deliveries: list[Delivery], clock: SimulatedClock
    ) -> None:
        self._function = function
        (mapping,) = [m for m in sqs_mappings(stack) if m.function_logical_id == "ConsumerFunction"]
        self._clock = clock
        self._sqs = boto3.client("sqs")
        self.poller = SqsPoller(
            self._sqs,
            stack.ref(mapping.queue_logical_id),
            mapping,
            lambda event: self._function.invoke(event, handler=self._handler),
            clock=clock,
            around_invoke=self._timed,
        )
        self._handler: Handler | None = None
        self._dead_letter_url = stack.ref("ConsumerDeadLetterQueue")
        self._mode = mode
        self._deliveries = deliveries
        self._stack = stack
        self._module = importlib.import_module(self._function.handler_path.rpartition(".")[0])
        self.applied_at: dict[str, float] = {}
        self.deferred = 0

    @contextmanager
    def installed(self, tables: tuple[str, str, str]) -> Iterator[None]:
        """The function's handler, from its own factories, over a consumer on fresh tables with the simulated
        clock. With HONOURED the function's own SQS client shortens the visibility on moto's queue; with
        IGNORED the visibility it is given refuses, so the queue's timeout applies."""
        ttl = int(self._stack.function_environment("ConsumerFunction")["PROCESSED_KEY_TTL_SECONDS"])
        store = EffectStore(boto3.client("dynamodb"), *tables)
        consumer = RideEventConsumer(store, ttl, clock=self._clock.utc_now)

        def refused() -> MessageVisibility:
            return MessageVisibility(cast("SQSClient", RefusedVisibilityChanges()))

        module = self._module
        visibility = refused if self._mode == IGNORED else module.visibility
        self._handler = module.batch_handler(lambda record: module.handle_record(record, lambda: consumer, visibility))
        try:
            yield
        finally:
            self._handler = None

    def _timed(self, event: dict[str, Any], invoke: Invoke) -> Any:
        """An invocation takes INVOCATION_SECONDS of the clock; its messages are deleted after it."""
        response = invoke(event)
        self._clock.advance(INVOCATION_SECONDS)
        return response

    def run(self) -> None:
        """Deliveries enter the queue at their times; the event source invokes when a batch is full or its
        batching window has run out (at once when nothing more will come); in between the clock jumps."""
        pending = iter(self._deliveries)
        upcoming = next(pending, None)
        by_id: dict[str, Delivery] = {}
        while True:
            now = self._clock.now()
            while upcoming is not None and upcoming.delivered_at <= now:
                sent = self._sqs.send_message(QueueUrl=self.poller.queue_url, MessageBody=upcoming.body)
                by_id[sent["MessageId"]] = upcoming
                upcoming = next(pending, None)
            due = self.poller.next_batch_at(whole_window=upcoming is not None)
            if due is not None and due <= now:
                outcome = self.poller.poll()
                if outcome is None:  # the due messages went to the DLQ as they were received
                    continue
                self.deferred += len(outcome.failed)
                for message_id in outcome.succeeded:
                    self.applied_at.setdefault(by_id[message_id].key, self._clock.now())
                continue
            following = [m for m in (due, upcoming.delivered_at if upcoming else None) if m is not None]
            if not following:
                return
            self._clock.advance_to(min(following))

    def parked(self) -> int:
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self._dead_letter_url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        return int(attributes["Attributes"]["ApproximateNumberOfMessages"])

    def result(self) -> LatencyResult:
        latencies = [
            self.applied_at[delivery.key] - delivery.committed_at
            for delivery in self._deliveries
            if delivery.key in self.applied_at
        ]
        return LatencyResult(
            mode=self._mode,
            events=len(self._deliveries),
            reordered=reordered_count(self._deliveries),
            p50=round(statistics.median(latencies), 2),
            p90=round(percentile(latencies, 0.90), 2),
            p99=round(percentile(latencies, 0.99), 2),
            worst=round(max(latencies), 2),
            deferred=self.deferred,
            parked=self.parked(),
            not_applied=len(self._deliveries) - len(latencies),
        )


@contextmanager
def quiet_handlers() -> Iterator[None]:
    """Nothing the handlers log or print reaches the terminal: every early event logs a line."""
    observability = importlib.import_module("rideonce.observability")
    level = observability.logger.log_level
    observability.logger.setLevel("CRITICAL")
    with open(os.devnull, "w") as sink:
        send_output_to(sink)
        try:
            yield
        finally:
            send_output_to(None)
            observability.logger.setLevel(level)


@contextmanager
def in_process_account() -> Iterator[tuple[Stack, LocalFunction]]:
    """The template's tables and queues on moto in this process (boto3 calls never leave it), and the consumer.

    No server: every request of a run, the function's own included, goes straight into moto's backends.
    """
    moto_patches.install()
    saved = dict(os.environ)
    try:
        os.environ.pop("AWS_ENDPOINT_URL", None)
        os.environ.update(LOCAL_CREDENTIALS)
        with mock_aws():
            stack = Stack.from_file()
            create_tables(boto3.client("dynamodb"), stack)
            create_messaging(boto3.client("events"), boto3.client("sqs"), stack)
            export_environment(stack)
            os.environ.update(QUIET_FUNCTIONS)
            found = functions(stack)
            cold_start(found)
            yield stack, found["ConsumerFunction"]
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run(rides: int, reordered_share: float, seed: int, modes: tuple[str, ...] = MODES) -> list[LatencyResult]:
    """The same traffic through each mode, each on consumer tables of its own, in one account."""
    with in_process_account() as (stack, function), quiet_handlers():
        client = boto3.client("dynamodb")
        deliveries = traffic(rides, reordered_share, seed)
        results = []
        for mode in modes:
            tables = tuple(
                create_table_like(client, stack.ref(lid), f"{stack.ref(lid)}-{mode}")
                for lid in ("ProcessedKeysTable", "RideProjectionTable", "RiderAccountsTable")
            )
            clock = SimulatedClock(START)
            with clock_installed(clock):
                simulation = Simulation(stack, function, mode, deliveries, clock)
                with simulation.installed(cast("tuple[str, str, str]", tables)):
                    simulation.run()
                results.append(simulation.result())
                boto3.client("sqs").purge_queue(QueueUrl=stack.ref("ConsumerDeadLetterQueue"))
        return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rides", type=int, default=500, help="rides of four changes each (default 500)")
    parser.add_argument("--reordered", type=float, default=0.3, help="share of deliveries held behind their successor")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from {', '.join(MODES)}")
    args = parser.parse_args(argv)
    modes = tuple(mode.strip() for mode in args.modes.split(",") if mode.strip())
    if set(modes) - set(MODES):
        parser.error(f"--modes: choose from {', '.join(MODES)}")
    started = time.perf_counter()
    results = run(args.rides, args.reordered, args.seed, modes)
    print(
        f"commit -> applied, simulated seconds: {args.rides} rides, seed {args.seed}, "
        f"{args.reordered:.0%} of the deliveries held behind their ride's next event"
    )
    header = ("ChangeMessageVisibility", "events", "reordered", "p50", "p90", "p99", "worst", "retries", "DLQ", "lost")
    print("  ".join(f"{cell:>10}" for cell in header))
    for result in results:
        row = (
            result.mode,
            result.events,
            f"{result.reordered / result.events:.1%}",
            result.p50,
            result.p90,
            result.p99,
            result.worst,
            result.deferred,
            result.parked,
            result.not_applied,
        )
        print("  ".join(f"{cell!s:>10}" for cell in row))
    print(f"({time.perf_counter() - started:.0f} s of this machine's time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
