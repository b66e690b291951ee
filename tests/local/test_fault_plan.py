"""The fault plan: every chaos decision a pure function of the seed, each fault switchable, each one of a hop.

And the rule the consumer side keeps: no fault on one of a message's last two receives before the DLQ,
so a healthy message never parks by bad luck alone. That runs through `ConsumerRun` with the
ConsumerFunction's own handler over an in-memory design, invoked by the SQS event source on a moto queue
(in this process) on a simulated clock: no local stack.
"""

import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import boto3
import pytest
from moto import mock_aws

from local.aws.functions import LocalFunction
from local.aws.moto_patches import clock_installed
from local.aws.template import ROOT
from local.chaos.bus_faults import Delivery
from local.chaos.consumer_faults import ChaosSteps, EffectLog
from local.chaos.downstream import ConsumerRun, DesignUnderTest
from local.chaos.gates import PRIMARY, SECOND
from local.chaos.plan import FAULTS, Fault, FaultPlan, FaultRates
from local.designs.steps import CrashPoint, Steps
from local.emulators.clock import SimulatedClock
from local.emulators.event_source import SqsMapping
from rideonce.logic.consumer import Verdict
from rideonce.models.events import RideEvent
from tests.support.consumer import T0, envelope, lifecycle

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

SUBJECTS = [f"ride#r{index}#v{version}" for index in range(200) for version in (1, 2, 3, 4)]
MAX_RECEIVES = 5
VISIBILITY_SECONDS = 120


def test_the_schedule_is_a_pure_function_of_the_seed() -> None:
    plan = FaultPlan(7, FaultRates.uniform(0.3))
    again = FaultPlan(7, FaultRates.uniform(0.3))
    decisions = [plan.occurs(Fault.NOT_DELETED, subject) for subject in SUBJECTS]
    # The same decisions in another order of calls: per occurrence, not per call
    assert [again.occurs(Fault.NOT_DELETED, s) for s in reversed(SUBJECTS)] == decisions[::-1]
    assert 0.2 < sum(decisions) / len(decisions) < 0.4
    other = FaultPlan(8, FaultRates.uniform(0.3))
    assert [other.decide(Fault.NOT_DELETED, s, 0) for s in SUBJECTS] != decisions


def test_a_subjects_next_attempt_is_decided_afresh_and_a_fork_starts_from_the_first() -> None:
    plan = FaultPlan(3, FaultRates.uniform(0.5))
    # Given one subject met five times at one point
    first = [plan.occurs(Fault.CRASH_AFTER_PARSE, "ride#r1#v1") for _ in range(5)]
    # Then each time is its own attempt, and a design's fork of the plan meets the same five
    assert first == [plan.decide(Fault.CRASH_AFTER_PARSE, "ride#r1#v1", attempt) for attempt in range(5)]
    fork = plan.fork()
    assert [fork.occurs(Fault.CRASH_AFTER_PARSE, "ride#r1#v1") for _ in range(5)] == first
    assert fork.counts[Fault.CRASH_AFTER_PARSE].evaluated == 5


@pytest.mark.parametrize("fault", list(Fault))
def test_rate_zero_switches_a_fault_off(fault: Fault) -> None:
    # Given every fault at 100% but this one at 0
    plan = FaultPlan(1, FaultRates(dict.fromkeys(Fault, 1.0)).with_rate(fault, 0.0))
    # When it is asked at every occasion
    hits = [plan.occurs(fault, subject) for subject in SUBJECTS]
    # Then it never fires, every occasion counted as evaluated; the others still fire every time
    assert not any(hits)
    assert (plan.counts[fault].evaluated, plan.counts[fault].injected) == (len(SUBJECTS), 0)
    other = next(f for f in Fault if f is not fault)
    assert all(plan.occurs(other, subject) for subject in SUBJECTS[:50])


def test_uniform_rates_scale_the_crashes_to_a_batch_and_the_rare_faults_to_a_share() -> None:
    rates = FaultRates.uniform(0.3, batch_size=10)
    assert rates[Fault.NOT_DELETED] == 0.3
    assert rates[Fault.CRASH_AFTER_EFFECT] == pytest.approx(0.03)
    assert rates[Fault.CRASH_AFTER_PARSE] == pytest.approx(0.01)
    assert rates[Fault.POISON_MESSAGE] == rates[Fault.PIPE_GIVES_UP] == pytest.approx(0.003)


def test_every_fault_belongs_to_one_hop_and_says_what_it_does() -> None:
    assert set(FAULTS) == set(Fault)
    assert all(spec.what for spec in FAULTS.values())


class InMemoryDesign:
    """Applies each event once, in memory, through its steps as a one-request design does."""

    def __init__(self, steps: Steps) -> None:
        self._steps = steps
        self.applied: set[str] = set()

    def handle(self, event: RideEvent) -> Verdict:
        key = event.metadata.idempotency_key
        fresh = self._steps.write(lambda: key not in self.applied)
        self._steps.reached(CrashPoint.AFTER_CHECK)
        if not fresh:
            return Verdict.DUPLICATE
        self.applied.add(key)
        self._steps.projected(event)
        self._steps.reached(CrashPoint.AFTER_EFFECT)
        return Verdict.APPLY


@pytest.fixture
def clock() -> Iterator[SimulatedClock]:
    """moto's SQS in this process, on a simulated clock."""
    simulated = SimulatedClock(1_700_000_000.0)
    with mock_aws(), clock_installed(simulated):
        yield simulated


def consumer_run(
    clock: SimulatedClock, plan: FaultPlan, design: Callable[[Steps], InMemoryDesign] = InMemoryDesign
) -> tuple[ConsumerRun, EffectLog]:
    """The ConsumerFunction's handler over an in-memory design, fed from a moto queue with a DLQ after MAX_RECEIVES."""
    log = EffectLog()
    steps = ChaosSteps(plan, log, PRIMARY), ChaosSteps(plan, log, SECOND)
    under_test = DesignUnderTest("in-memory", design(steps[0]), design(steps[1]), *steps, "", "", log, frozenset())
    sqs: SQSClient = boto3.client("sqs", region_name="us-east-1")
    dead_letter = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    redrive = {"deadLetterTargetArn": queue_arn(sqs, dead_letter), "maxReceiveCount": MAX_RECEIVES}
    queue = sqs.create_queue(
        QueueName="q",
        Attributes={"VisibilityTimeout": str(VISIBILITY_SECONDS), "RedrivePolicy": json.dumps(redrive)},
    )["QueueUrl"]
    function = LocalFunction("ConsumerFunction", "rideonce.handlers.consumer.handler", {}, 20, 256, ROOT / "functions")
    mapping = SqsMapping("ConsumerFunction", "RideEventsQueue", queue_arn(sqs, queue), 10, 0, True)
    return ConsumerRun(under_test, plan, clock, function, mapping, sqs, (queue, dead_letter)), log


def queue_arn(sqs: "SQSClient", url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def only(fault: Fault) -> FaultPlan:
    """A plan where `fault` fires on every occasion it may, and nothing else ever."""
    return FaultPlan(1, FaultRates(dict.fromkeys(Fault, 0.0)).with_rate(fault, 1.0))


def one_event() -> Delivery:
    event = lifecycle("ride-1")[0]
    return Delivery(envelope(event), event.metadata.idempotency_key)


@pytest.mark.parametrize(
    ("fault", "counted"),
    [
        (Fault.NOT_DELETED, lambda phase: phase.not_deleted),
        (Fault.CRASH_AFTER_PARSE, lambda phase: phase.crashed_invocations),
        (Fault.CRASH_BEFORE_DELETE, lambda phase: phase.crashed_invocations),
    ],
)
def test_no_fault_fires_on_a_messages_last_two_receives(
    clock: SimulatedClock, fault: Fault, counted: Callable[..., int]
) -> None:
    # Given a queue with maxReceiveCount 5 and a fault that fires whenever it may
    run, log = consumer_run(clock, only(fault))
    # When one healthy message goes through until the queue is quiet
    run.run_phase("live", [one_event()])
    phase = run.phases["live"]
    # Then the fault hit its first three receives, the fourth went through, and nothing parked
    assert (counted(phase), phase.deliveries, phase.parked) == (3, 4, 0)
    assert run.parked() == []
    assert run.poller.next_visible_at() is None
    assert log.projections == [("ride-1", 1)]
    assert run.unhandled == []


def test_a_crash_after_the_effect_leaves_it_applied_once(clock: SimulatedClock) -> None:
    # Given a crash after the effect on every delivery it may hit
    run, log = consumer_run(clock, only(Fault.CRASH_AFTER_EFFECT))
    # When the message is redelivered until it goes
    run.run_phase("live", [one_event()])
    # Then the invocation that applied it died, and the redelivery was dropped as a duplicate
    phase = run.phases["live"]
    assert (phase.crashed_invocations, phase.dropped, phase.deliveries) == (1, 1, 2)
    assert log.projections == [("ride-1", 1)]


class TimedDesign(InMemoryDesign):
    """The in-memory design, noting the simulated moment it applies each event."""

    def __init__(self, steps: Steps, clock: SimulatedClock, applied_at: dict[str, float]) -> None:
        super().__init__(steps)
        self._clock = clock
        self._applied_at = applied_at

    def handle(self, event: RideEvent) -> Verdict:
        verdict = super().handle(event)
        if verdict is Verdict.APPLY:
            self._applied_at[event.metadata.idempotency_key] = self._clock.now()
        return verdict


def run_live(deliveries: list[Delivery], at_commit: bool) -> tuple[dict[str, float], EffectLog]:
    """The live phase of `deliveries` on a simulated clock that starts at the first commit of the tests' rides."""
    clock = SimulatedClock(T0.timestamp())
    applied_at: dict[str, float] = {}
    with mock_aws(), clock_installed(clock):
        plan = FaultPlan(1, FaultRates(dict.fromkeys(Fault, 0.0)))
        run, log = consumer_run(clock, plan, lambda steps: TimedDesign(steps, clock, applied_at))
        run.run_phase("live", deliveries, at_commit=at_commit)
    return applied_at, log


def test_live_deliveries_reach_the_queue_at_their_commit() -> None:
    # Given a ride's four events, committed over 30 minutes from the moment the clock starts, captured in reverse
    events = lifecycle("ride-1")
    deliveries = [Delivery(envelope(event), event.metadata.idempotency_key) for event in reversed(events)]
    # When the live phase sends each delivery at its commit
    applied_at, log = run_live(deliveries, at_commit=True)
    # Then none was applied before its commit, so they were applied in version order
    for event in events:
        assert applied_at[event.metadata.idempotency_key] >= event.metadata.occurred_at.timestamp()
    assert log.projections == [("ride-1", version) for version in (1, 2, 3, 4)]
    # While sent all at once, as a replay or a redrive sends them, the later versions came before their commits
    applied_at, _ = run_live(deliveries, at_commit=False)
    early = [
        e.metadata.version
        for e in events
        if applied_at[e.metadata.idempotency_key] < e.metadata.occurred_at.timestamp()
    ]
    assert early == [2, 3, 4]
