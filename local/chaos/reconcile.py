"""The ReconcilerFunction on its schedule, in the consumer's simulated time, through its Lambda handler.

What it republishes goes on the real bus, whose rule puts it on the consumer queue; a `Capture` takes it
from there, as it takes the Pipe's events, and the consumer design receives it like any other delivery.
"""

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from local.aws.functions import LocalFunction
from local.aws.stack import LocalStack
from local.aws.template import ACCOUNT_ID, REGION
from local.aws.transport import Transport
from local.chaos.bus_faults import Capture, Delivery
from local.chaos.plan import FaultPlan
from local.chaos.seams import scheduled_handler
from local.emulators.clock import SimulatedClock
from rideonce.dal.reconciler import EventPublisher, OutboxReader, ProjectionReader
from rideonce.services.reconciler import Reconciler
from rideonce.settings import ReconcilerSettings


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
    ReconcileGraceMinutes before the tick. The handler is the function's own `scheduled_handler` over the
    same service built on the design's projection table. What it republishes goes on the real bus, whose
    rule puts it on the consumer queue; `drain` takes it from there, as the capture takes the Pipe's events.
    The consumer keeps waiting for ticks until the last commit has been in the windows of two runs.
    """

    def __init__(
        self,
        function: LocalFunction,
        reconciler: Reconciler,
        period: timedelta,
        grace: timedelta,
        clock: SimulatedClock,
        last_commit_at: float,
        drain: Callable[[], list[Delivery]],
        rule_arn: str,
    ) -> None:
        self._function = function
        self._handler = scheduled_handler(lambda: reconciler)
        self._period = period.total_seconds()
        self._clock = clock
        self._drain = drain
        self._rule_arn = rule_arn
        self.next_at = math.floor(clock.now() / self._period) * self._period + self._period
        self.last_needed_at = last_commit_at + grace.total_seconds() + 2 * self._period
        self.totals = ReconcileRuns()

    def pending(self) -> float | None:
        """The next tick, while a commit may still be in a run's window; None once every one was judged twice."""
        return self.next_at if self.next_at <= self.last_needed_at else None

    def run_due(self) -> list[Delivery]:
        """Every tick up to now, in order; the deliveries their republished events put on the consumer queue."""
        delivered: list[Delivery] = []
        while self.next_at <= self._clock.now():
            tick = datetime.fromtimestamp(self.next_at, UTC)
            summary = self._function.invoke(scheduled_event(tick, self._rule_arn), handler=self._handler)
            self.next_at += self._period
            self.totals.runs += 1
            self.totals.checked += int(summary["checked"])
            self.totals.republished += int(summary["republished"])
            if summary["republished"]:
                delivered += self._drain()
        self.totals.deliveries += len(delivered)
        return delivered


def reconciler_schedule(
    local: LocalStack,
    projection_table: str,
    last_commit_at: float,
    plan: FaultPlan,
    transport: Transport,
    clock: SimulatedClock,
) -> ReconcilerSchedule:
    """The template's ReconcilerFunction, period and grace, judging this design's projection table."""
    stack = local.stack
    settings = ReconcilerSettings.from_env(stack.function_environment("ReconcilerFunction"))
    client = transport.dynamodb()
    reconciler = Reconciler(
        OutboxReader(client, settings.outbox_table_name, settings.outbox_commit_index_name),
        ProjectionReader(client, projection_table),
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
        last_commit_at,
        drain,
        stack.get_att("ReconcilerFunctionEvery", "Arn"),
    )
