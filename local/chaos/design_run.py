"""One design's trial: fresh tables and queues, its two instances, the captured deliveries, the replay, the redrive.

`run_design` is what each worker runs: the live deliveries, each at its commit, then the archive replay
with the clock six hours ahead, then a redrive of the DLQ; then the design's invariants. The consumer queue
and its DLQ are copies of the template's, one pair per design, on moto, whose SQS reads the design's
simulated clock.
"""

import time
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING

from local.aws.dynamodb import create_table_like
from local.aws.messaging import create_queue_like
from local.aws.moto_patches import clock_installed
from local.aws.stack import LocalStack
from local.aws.template import Stack
from local.aws.transport import Transport
from local.chaos.consumer_faults import ChaosSteps, EffectLog
from local.chaos.downstream import ConsumerRun, DesignUnderTest
from local.chaos.gates import PRIMARY, SECOND
from local.chaos.outcome import consumer_hops, design_checks
from local.chaos.plan import FAULTS, FaultPlan, Hop
from local.chaos.reconcile import reconciler_schedule
from local.chaos.report import DesignResult
from local.chaos.upstream import Upstream
from local.designs import REGISTRY, ConsumerTables, Kit
from local.designs.powertools import powertools_on
from local.emulators.clock import SimulatedClock
from local.emulators.event_source import SqsMapping, sqs_mappings

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

REPLAY_CLOCK_JUMP = timedelta(hours=6)


def build_design(
    name: str, stack: Stack, transport: Transport, plan: FaultPlan, clock: SimulatedClock
) -> DesignUnderTest:
    """The registry's design on copies of the template's consumer tables of its own: two instances, each with
    its own client and its own steps (the handler's and the second consumer's)."""
    if name not in REGISTRY:
        raise ValueError(f"no design {name!r}; choose from {', '.join(REGISTRY)}")
    design = REGISTRY[name]
    client = transport.dynamodb()
    keys, projection, accounts = (
        create_table_like(client, stack.ref(logical_id), f"{stack.ref(logical_id)}-{name}")
        for logical_id in ("ProcessedKeysTable", "RideProjectionTable", "RiderAccountsTable")
    )
    log = EffectLog()
    steps = ChaosSteps(plan, log, PRIMARY), ChaosSteps(plan, log, SECOND)
    kit = Kit(
        client=transport.dynamodb,
        tables=ConsumerTables(keys, projection, accounts),
        key_ttl_seconds=int(stack.function_environment("ConsumerFunction")["PROCESSED_KEY_TTL_SECONDS"]),
        clock=clock.utc_now,
        steps=steps[0],
        table_prefix=stack.stack_name,
    )
    primary, second = (design.build(replace(kit, steps=own)) for own in steps)
    expected = design.expected_failures | {"PoisonMessageError"}
    return DesignUnderTest(name, primary, second, *steps, projection, accounts, log, expected)


def design_queues(name: str, stack: Stack, sqs: "SQSClient", mapping: SqsMapping) -> tuple[SqsMapping, str, str]:
    """Copies of the template's consumer queue and DLQ for one design: the mapping on the copy, and both URLs."""
    dead_letter_name = f"{stack.get_att('ConsumerDeadLetterQueue', 'QueueName')}-{name}"
    dead_letter_url = create_queue_like(sqs, stack.ref("ConsumerDeadLetterQueue"), dead_letter_name)
    queue_name = f"{stack.get_att(mapping.queue_logical_id, 'QueueName')}-{name}"
    queue = create_queue_like(sqs, stack.ref(mapping.queue_logical_id), queue_name, dead_letter_url)
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return replace(mapping, queue_arn=arn), queue, dead_letter_url


def run_design(name: str, local: LocalStack, upstream: Upstream, plan: FaultPlan, transport: Transport) -> DesignResult:
    """The captured deliveries through one design, live, then the replay hours later, then a DLQ redrive."""
    started = time.perf_counter()
    stack = local.stack
    plan = plan.fork()
    # From the first commit: the reconciler's windows are commit times, so its ticks must meet them.
    clock = SimulatedClock(upstream.started_at)
    design = build_design(name, stack, transport, plan, clock)
    function = local.functions["ConsumerFunction"]
    (template_mapping,) = [m for m in sqs_mappings(stack) if m.function_logical_id == "ConsumerFunction"]
    sqs = transport.sqs()
    mapping, queue, dead_letter = design_queues(name, stack, sqs, template_mapping)
    schedule = reconciler_schedule(local, design.projection_table, upstream.last_commit_at, plan, transport, clock)
    run = ConsumerRun(design, plan, clock, function, mapping, sqs, (queue, dead_letter), schedule)
    with clock_installed(clock), powertools_on(clock.now):
        run.run_phase("live", upstream.live, at_commit=True)
        clock.advance(REPLAY_CLOCK_JUMP.total_seconds())
        run.run_phase("archive replay, 6 h later", upstream.replay)
        run.redrive()
        parked = run.parked()
    metrics, checks = design_checks(design, upstream, parked, run, transport.dynamodb(), schedule.totals)
    hops = consumer_hops(design, run)
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
