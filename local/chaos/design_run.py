"""One design's trial: fresh tables, its two instances, the captured deliveries, the replay, the redrive.

`run_design` is what each worker runs: the live deliveries, then the archive replay with the clock six
hours ahead, then a redrive of the DLQ; then the design's invariants.
"""

import importlib
import time
import types
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta, tzinfo
from typing import Self
from unittest import mock

from local.aws.dynamodb import create_table_like
from local.aws.stack import LocalStack
from local.aws.template import Stack
from local.aws.transport import Transport
from local.chaos.consumer_faults import (
    ConsumerContext,
    EffectLog,
    instrument_check_then_write,
    instrument_powertools,
    instrument_rideonce,
)
from local.chaos.downstream import ConsumerRun, Design
from local.chaos.outcome import consumer_hops, design_checks
from local.chaos.plan import FAULTS, FaultPlan, Hop
from local.chaos.reconcile import reconciler_schedule
from local.chaos.report import DesignResult
from local.chaos.simqueue import SimClock, SimQueue
from local.chaos.upstream import Upstream
from local.designs import CHECK_THEN_WRITE, DESIGNS, POWERTOOLS, RIDEONCE
from local.designs.baselines import (
    POWERTOOLS_KEY_ATTRIBUTE,
    CheckThenWriteConsumer,
    PowertoolsIdempotencyConsumer,
    RecordConsumer,
)
from local.emulators.event_source import sqs_mappings
from rideonce.dal.consumer import EffectStore
from rideonce.services.consumer import RideEventConsumer

REPLAY_CLOCK_JUMP = timedelta(hours=6)


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
    schedule = reconciler_schedule(local, design.projection_table, upstream.last_commit_at, plan, transport, clock)
    run = ConsumerRun(design, plan, context, clock, function, mapping, queue, schedule)
    with run.installed(), powertools_on(clock):
        run.run_phase("live", upstream.live)
        clock.advance(REPLAY_CLOCK_JUMP.total_seconds())
        run.run_phase("archive replay, 6 h later", upstream.replay)
        run.redrive()
    parked = dead_letter.messages()
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
