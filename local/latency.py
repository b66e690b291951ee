"""`python -m local.latency`: commit -> applied latency of ride events delivered out of order, in simulated time.

The ConsumerFunction's handler, unchanged, behind the SQS event source as `local.chaos` simulates it (a
`SimQueue` with the template's visibility timeout and maxReceiveCount, batches of BatchSize gathered for at
most MaximumBatchingWindowInSeconds), writing to moto in-process. Simulated time makes a 120 s visibility
timeout cost nothing to wait for, and gives the same figures on any machine for the same seed.

The traffic: rides start at a steady rate; each makes its four changes (requested, accepted, started,
completed) a few seconds apart. An event enters the queue shortly after its commit (the upstream hops
taken as a short transit). `--reordered` of the deliveries are held back until after their successor
has entered the queue, so the successor arrives first and is early. Latency is measured
from an event's commit to the end of the invocation that applied it.

Two ways of retrying an early event are measured on the same traffic: the consumer's own (it shortens
the message's visibility with ChangeMessageVisibility, backing off with its receive count), and the
queue's visibility timeout alone (the queue ignores the change, as when ChangeMessageVisibility fails; the
only way the consumer retried before it made that call).
"""

import argparse
import importlib
import json
import random
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast
from unittest import mock

from local.aws.dynamodb import create_table_like
from local.aws.functions import LocalFunction
from local.aws.moto_patches import install_replay_fixes
from local.aws.stack import LocalStack
from local.aws.template import ACCOUNT_ID, REGION
from local.aws.transport import Transport
from local.chaos.api_faults import CHAOS_TRACEPARENT
from local.chaos.runner import QUIET_FUNCTIONS, quiet_handlers
from local.chaos.simqueue import SimClock, SimQueue, SimSqs, lambda_record
from local.emulators.event_source import SqsMapping, failed_ids, sqs_mappings
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


def traffic(rides: int, reordered_share: float, seed: int) -> list[Delivery]:
    """Every ride's four events with their commit and delivery times (seconds from 0), as one seed decides.

    `reordered_share` is of all deliveries; only an event with a successor can be held behind it (three of
    four), so each of those is held with the probability that makes the whole share.
    """
    rng = random.Random(seed)
    hold = min(1.0, reordered_share * CHANGES_PER_RIDE / (CHANGES_PER_RIDE - 1))
    request = CreateRideRequest(rider_id="rider-latency", pickup=Location(lat=1, lng=2), dropoff=Location(lat=3, lng=4))
    deliveries: list[Delivery] = []
    for index in range(rides):
        moment = index / RIDES_PER_SECOND
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
            event = ride_events.build_event(change, change.ride.updated_at, CHAOS_TRACEPARENT)
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


class Simulation:
    """One mode's run: the deliveries through a simulated queue to the ConsumerFunction's handler."""

    def __init__(self, local: LocalStack, mode: str, deliveries: list[Delivery]) -> None:
        stack = local.stack
        self._function: LocalFunction = local.functions["ConsumerFunction"]
        (self._mapping,) = [m for m in sqs_mappings(stack) if m.function_logical_id == "ConsumerFunction"]
        props = stack.properties(self._mapping.queue_logical_id)
        self._clock = SimClock(0.0)
        self._dead_letter = SimQueue(self._clock, 0, 0, None)
        self.queue = SimQueue(
            self._clock,
            float(props["VisibilityTimeout"]),
            int(props["RedrivePolicy"]["maxReceiveCount"]),
            self._dead_letter,
        )
        self._mode = mode
        self._deliveries = deliveries
        self._stack = stack
        self._module = importlib.import_module(self._function.handler_path.rpartition(".")[0])
        self.applied_at: dict[str, float] = {}
        self.deferred = 0

    @contextmanager
    def installed(self, transport: Transport, tables: tuple[str, str, str]) -> Iterator[None]:
        """The handler's `consumer()` on fresh tables with the simulated clock; with HONOURED, its `visibility()`
        acts on the simulated queue. With IGNORED nothing else is patched: the function's own SQS client
        meets a receipt handle moto never issued, the call fails, and the queue's timeout applies."""
        ttl = int(self._stack.function_environment("ConsumerFunction")["PROCESSED_KEY_TTL_SECONDS"])
        store = EffectStore(transport.dynamodb(), *tables)
        consumer = RideEventConsumer(store, ttl, clock=self._clock.utc_now)

        def the_consumer() -> RideEventConsumer:
            return consumer

        with ExitStack() as patches:
            patches.enter_context(mock.patch.object(self._module, "consumer", the_consumer))
            if self._mode == HONOURED:
                queue = self.queue

                def visibility() -> MessageVisibility:
                    return MessageVisibility(cast("SQSClient", SimSqs(queue)))

                patches.enter_context(mock.patch.object(self._module, "visibility", visibility))
            yield

    def run(self) -> None:
        mapping: SqsMapping = self._mapping
        pending = iter(self._deliveries)
        upcoming = next(pending, None)
        by_id: dict[str, Delivery] = {}
        while upcoming is not None or len(self.queue):
            now = self._clock.now()
            while upcoming is not None and upcoming.delivered_at <= now:
                message = self.queue.send(upcoming.body, upcoming.key, poison=False)
                by_id[message.message_id] = upcoming
                upcoming = next(pending, None)
            oldest = self.queue.next_visible_at()
            # The event source invokes when a batch is full or its batching window has run out.
            if oldest is not None and oldest <= now:
                window_over = now >= oldest + mapping.batching_window_seconds
                if window_over or self.queue.visible_count() >= mapping.batch_size or upcoming is None:
                    self._invoke(by_id)
                    continue
            moments = [oldest + mapping.batching_window_seconds if oldest is not None and oldest <= now else oldest]
            moments.append(upcoming.delivered_at if upcoming is not None else None)
            following = [moment for moment in moments if moment is not None]
            if not following:
                break
            self._clock.advance_to(min(following))

    def _invoke(self, by_id: dict[str, Delivery]) -> None:
        batch = self.queue.receive(self._mapping.batch_size)
        if not batch:
            return
        ids = [message.message_id for message in batch]
        response = self._function.invoke({"Records": [lambda_record(m, self._mapping.queue_arn) for m in batch]})
        failed = failed_ids(response, ids, self._mapping.report_batch_item_failures)
        self._clock.advance(INVOCATION_SECONDS)
        for message in batch:
            if message.message_id in failed:
                self.deferred += 1
                continue
            self.queue.delete(message)
            self.applied_at.setdefault(by_id[message.message_id].key, self._clock.now())

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
            parked=len(self._dead_letter),
            not_applied=len(self._deliveries) - len(latencies),
        )


def run(rides: int, reordered_share: float, seed: int, modes: tuple[str, ...] = MODES) -> list[LatencyResult]:
    """The same traffic through each mode, each on tables of its own, in one local stack."""
    install_replay_fixes()
    local = LocalStack.start(outputs_file=None, environment_overrides=QUIET_FUNCTIONS)
    quiet = quiet_handlers()
    try:
        transport = Transport(in_process=True)
        client = transport.dynamodb()
        deliveries = traffic(rides, reordered_share, seed)
        results = []
        for mode in modes:
            tables = tuple(
                create_table_like(client, local.stack.ref(lid), f"{local.stack.ref(lid)}-{mode}")
                for lid in ("ProcessedKeysTable", "RideProjectionTable", "RiderAccountsTable")
            )
            simulation = Simulation(local, mode, deliveries)
            with simulation.installed(transport, cast("tuple[str, str, str]", tables)):
                simulation.run()
            results.append(simulation.result())
        return results
    finally:
        quiet()
        local.stop()


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
