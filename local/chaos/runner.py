"""`python -m local.chaos`: the local stack under seeded faults at every hop, rideonce's consumer beside the
two usual designs (local/designs/), and the end-to-end promise checked for each.

A run, for one seed (local/chaos/plan.py decides every fault from it):

1. Upstream, once (upstream.py): the local stack from template.yaml; simulated riders drive ride lifecycles
   through the API handler under the client and API faults (api_faults.py), the Pipe emulator under the
   relay's (relay_faults.py), the bus to the consumer queue under the rule's, poison and an archive replay
   (bus_faults.py); everything that reaches the consumer queue is captured.
2. Downstream, once per design, on fresh consumer tables and fresh copies of the consumer queue and its DLQ
   (design_run.py): the captured messages go through moto's queue, in simulated time (a clock moto's SQS
   reads), and the SQS event source emulator to the ConsumerFunction's Lambda handler, unchanged, given
   the design as its consumer (downstream.py). The design's steps carry the crash points
   (consumer_faults.py); the same schedule decides redeliveries, two consumers of one message, messages held
   back and crashes for every design. The archive replay arrives with the consumer's clock six hours ahead.
   Meanwhile the ReconcilerFunction runs on its schedule in the consumer's simulated time, which starts at
   the first commit (reconcile.py): what it republishes reaches the design through the bus and the queue,
   and brings back what the relay lost. At the end the DLQ is redriven to the queue and the consumer runs
   until quiet again.
3. The invariants per design (outcome.py), a rich report and the same as JSON (report.py). The exit status
   is 1 when rideonce (or the upstream) broke an invariant; the baselines are expected to break some.

`--transport in-process` (the default) sends boto3's requests straight into the moto backends the server
serves (local/aws/transport.py); `--transport http` sends everything through the server. `--workers` runs
designs at once, each beyond the first in a process with a local stack of its own. The same seed gives the
same report, timings aside, with either transport and any number of workers.
"""

import argparse
import importlib
import json
import logging
import math
import multiprocessing
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from local.aws.functions import send_output_to
from local.aws.stack import STATE_DIR, LocalStack
from local.aws.transport import Transport
from local.chaos.design_run import run_design
from local.chaos.plan import Fault, FaultPlan, FaultRates
from local.chaos.report import ChaosReport, DesignResult, render
from local.chaos.upstream import CHANGES_PER_RIDE, Upstream, run_upstream
from local.designs import DESIGNS, REGISTRY
from local.emulators.event_source import sqs_mappings
from local.workload.report import html
from local.workload.report.chaos_file import from_chaos_json

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

DEFAULT_CHANGES = 10_000

DEFAULT_RATE = 0.3

CHANGES_PER_RIDE_VARIANCE = 0.41

QUIET_FUNCTIONS = {"POWERTOOLS_LOG_LEVEL": "CRITICAL", "POWERTOOLS_METRICS_DISABLED": "true"}


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


def _run_designs(
    designs: tuple[str, ...],
    local: LocalStack,
    upstream: Upstream,
    plan: FaultPlan,
    transport: Transport,
    workers: int,
    say: Callable[[str], None],
) -> dict[str, DesignResult]:
    ordered = sorted(designs, key=lambda name: -REGISTRY[name].cost)  # the longest first
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
    pipe_log = logging.getLogger("local.emulators.pipes")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1, help="the one seed every fault decision derives from")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--changes", type=int, help=f"ride changes to make at least (default {DEFAULT_CHANGES})")
    size.add_argument("--rides", type=int, help="rides to simulate instead (about 3.7 changes each)")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="extra deliveries per hop (default 0.3)")
    parser.add_argument(
        "--designs",
        default=",".join(DESIGNS),
        help="comma-separated, from: " + "; ".join(f"{name} ({row.description})" for name, row in REGISTRY.items()),
    )
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
    page = args.json.with_suffix(".html")
    page.write_text(html.render(from_chaos_json(report.as_json())))
    console.print(f"report written to {args.json}, its page to {page}")
    return 0 if report.ok else 1
