"""`make cost`: what a million ride changes would cost on AWS, per hop, rideonce's consumer beside Powertools'.

For each consumer design, on a fresh local stack and the same seeded riders: the rides go through the API
handler, the Pipe emulator and its enrichment, the bus, the queue and its event source, to the
ConsumerFunction's handler, which applies each event with rideonce's consumer or with the
Powertools-idempotency design (local/designs): the hops differ only in the consumer. Every AWS request made
on the way is counted where it is made and billed by local/workload/cost/ at the list prices in
docs/prices.toml. Lambda durations are this machine's, measured in this process (the functions' calls to
moto included), billed at AWS's 1 ms granularity.

Priced per ride change: API Gateway HTTP API requests; Lambda invocations and GB-seconds (memory from
template.yaml); DynamoDB write and read request units of the requests actually made; DynamoDB Streams reads
that returned records (a Pipe is not a Lambda trigger, so they are charged); Pipe requests; custom events;
the rules' SQS sends; the archive; SQS receives that returned messages, deletes and visibility changes;
CloudWatch Logs ingestion of what the functions log and print (EMF metrics included).
Priced apart, per month: polls that returned nothing (they scale with time, not traffic).
Excluded, and said so in the output: see EXCLUDED.
"""

import argparse
import importlib
import json
import logging
import random
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

import boto3
from rich.console import Console
from rich.table import Table

from local.aws.functions import Handler, LocalFunction, send_output_to
from local.aws.stack import STATE_DIR, LocalStack
from local.aws.template import Stack
from local.designs.powertools import POWERTOOLS_KEY_ATTRIBUTE, PowertoolsIdempotencyConsumer
from local.emulators.clock import WallClock
from local.emulators.pipeline import Pipeline
from local.workload.cost.bill import Bill, bill_run, idle_requests_per_month
from local.workload.cost.meter import BusRouting, Invocations, LogMeter, MeteredFunction, MotoItems, RequestMeter
from local.workload.cost.units import Price, load_prices
from local.workload.traffic import ApiCaller, RideTraffic
from rideonce.dal.idempotency import IdempotencyStore
from rideonce.dal.rides import RideStore
from rideonce.services.rides import RideService

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

RIDEONCE = "rideonce"
POWERTOOLS = "powertools"
DESIGNS = (RIDEONCE, POWERTOOLS)
PUMP_EVERY = 40
"""Ride changes between two rounds of the Pipe and the event source, as in `make demo`."""
SQS_LONG_POLL_SECONDS = 20
IDLE_POLLERS = 5
"""Lambda's SQS pollers at low traffic: five batches at a time, down to two only without a maximum concurrency
(https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html)."""
IDLE_POLLERS_OPTIMISED = 2
EXCLUDED = (
    "Lambda's START/END/REPORT log lines and API Gateway's access log (their size is AWS's, not ours)",
    "custom metrics extracted from the EMF logs (billed per metric per month, not per change)",
    "X-Ray traces (Tracing: Active; billed per sampled trace, and sampling depends on the request rate)",
    "storage: tables, the outbox's 7 days, processed keys' 35 days, queues; data transfer; KMS",
    "archive replays and the reconciler's scheduled runs (operator actions and a fixed schedule)",
    "free tiers and volume discounts",
)

Design = Callable[[LocalStack], Handler | None]
"""The ConsumerFunction's handler a design runs behind (None: the deployed one)."""


def no_change(local: LocalStack) -> Handler | None:
    """rideonce: the ConsumerFunction exactly as the template deploys it."""
    return None


def powertools_consumer(client: "DynamoDBClient", stack: Stack) -> PowertoolsIdempotencyConsumer:
    """The Powertools-idempotency design on the template's projection and accounts tables.

    Its records go to a table of its own with Powertools' default schema (partition key `id`), on demand
    like the template's, created here.
    """
    table = f"{stack.stack_name}-PowertoolsIdempotencyTable"
    client.create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": POWERTOOLS_KEY_ATTRIBUTE, "AttributeType": "S"}],
        KeySchema=[{"AttributeName": POWERTOOLS_KEY_ATTRIBUTE, "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    environment = stack.function_environment("ConsumerFunction")
    return PowertoolsIdempotencyConsumer(
        client,
        table,
        environment["RIDE_PROJECTION_TABLE_NAME"],
        environment["RIDER_ACCOUNTS_TABLE_NAME"],
        int(environment["PROCESSED_KEY_TTL_SECONDS"]),
    )


def powertools(local: LocalStack) -> Handler | None:
    """The Powertools-idempotency design behind the same handler, built from the handler's own factories."""
    design = powertools_consumer(boto3.client("dynamodb"), local.stack)
    function = local.functions["ConsumerFunction"]
    function.handler()  # imported as Lambda imports it, so the module below is the one invoked
    module = importlib.import_module(function.handler_path.rpartition(".")[0])
    return cast(
        "Handler", module.batch_handler(lambda record: module.handle_record(record, lambda: design, module.visibility))
    )


CONSUMERS: dict[str, Design] = {RIDEONCE: no_change, POWERTOOLS: powertools}


def seeded_api(local: LocalStack, seed: int) -> Handler:
    """The ApiFunction's handler with ride ids drawn from the seed, so both designs see the very same rides.

    The riders pick their next ride among the open ones by id: random ids would send each design's run
    down another path. The RideService is built as the handler builds it, with its `make_id` seam given a
    seeded generator, and handed to the handler's own factory, `api_handler`.
    """
    function = local.functions["ApiFunction"]
    function.handler()
    module = importlib.import_module(function.handler_path.rpartition(".")[0])
    rng = random.Random(seed)
    client = boto3.client("dynamodb")
    config = module.settings()
    service = RideService(
        RideStore(client, config.rides_table_name, config.outbox_table_name),
        IdempotencyStore(client, config.idempotency_table_name),
        config,
        make_id=lambda: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    )
    return cast("Handler", module.api_handler(lambda: service))


@contextmanager
def logs_counted(into: LogMeter) -> Iterator[None]:
    """The functions' logger and their prints (EMF metrics) go to `into`, which counts them per function."""
    observability = importlib.import_module("rideonce.observability")
    handler = observability.logger.registered_handler
    stream = handler.setStream(into) if isinstance(handler, logging.StreamHandler) else None
    send_output_to(cast("TextIO", into))  # a text stream, which is all send_output_to writes to
    try:
        yield
    finally:
        send_output_to(None)
        if isinstance(handler, logging.StreamHandler) and stream is not None:
            handler.setStream(stream)


def run(design: str, rides: int, seed: int, retry_rate: float, console: Console) -> Bill:
    """One design on a fresh local stack: the seeded riders, every request counted, the bill."""
    prices = load_prices()
    boto3.setup_default_session()  # every client from here on is counted
    session = boto3.DEFAULT_SESSION
    assert session is not None
    meter = RequestMeter(MotoItems())
    meter.install(session.events)
    meter.recording = False
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with ExitStack() as cleanup, (STATE_DIR / f"cost-{design}-functions.log").open("w") as sink:
        cleanup.callback(meter.uninstall, session.events)
        logs = LogMeter(sink)
        local = LocalStack.start(outputs_file=None)
        try:
            invocations = Invocations()
            consumer = CONSUMERS[design](local)
            for name, function in list(local.functions.items()):
                function.handler()  # imported before the run, as Lambda's init phase would, in every run alike
                built = consumer if name == "ConsumerFunction" else None
                local.functions[name] = MeteredFunction.of(function, invocations, built)
            with logs_counted(logs):
                api = ApiCaller(local.stack, local.functions["ApiFunction"], handler=seeded_api(local, seed))
                traffic = RideTraffic(api, rides=rides, seed=seed, retry_rate=retry_rate)
                with Pipeline(local, WallClock(0.01)) as pipeline:
                    meter.recording = True
                    with console.status(f"{design}: {rides} rides through the local stack"):
                        while not traffic.done():
                            traffic.step()
                            if traffic.ledger.accepted_changes % PUMP_EVERY == 0:
                                pipeline.pump()
                        pipeline.run_until_quiet()
                    meter.recording = False
            functions: dict[str, LocalFunction] = dict(local.functions)
            return bill_run(
                design,
                traffic.ledger.accepted_changes,
                api.stats.requests,
                meter.calls,
                invocations,
                logs.bytes,
                functions,
                BusRouting.from_stack(local.stack),
                prices,
            )
        finally:
            local.stop()


def table_rows(bills: dict[str, Bill]) -> tuple[list[str], list[list[str]]]:
    """The comparison as plain cells: a header, then per hop its lines and its total, then the total."""
    names = list(bills)
    header = ["hop", "billed as"]
    for name in names:
        header += [f"{name} per change", f"{name} $ per 1M changes"]
    rows: list[list[str]] = []
    for hop in bills[names[0]].hops():
        lines = [[line for line in each.lines if line.hop == hop] for each in bills.values()]
        for index, line in enumerate(lines[0]):
            cells = [hop if index == 0 else "", line.what]
            for design_lines in lines:
                other = design_lines[index]
                cells += [_quantity(other.per_change), f"{other.usd_per_million:.4f}"]
            rows.append(cells)
        rows.append(["", "hop total", *(cell for each in bills.values() for cell in ("", f"{each.total(hop):.4f}"))])
    rows.append(["total", "", *(cell for each in bills.values() for cell in ("", f"{each.total():.2f}"))])
    return header, rows


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for row in rows:
        bold = row[0] == "total" or row[1] == "hop total"
        cells = [f"**{cell}**" if bold and cell else cell for cell in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render(bills: dict[str, Bill], console: Console, pollers: int, as_markdown: bool = False) -> None:
    names = list(bills)
    first = bills[names[0]]
    title = (
        f"AWS cost per ride change and per million ride changes (us-east-1 list prices, docs/prices.toml); "
        f"{first.changes} ride changes per design"
    )
    header, rows = table_rows(bills)
    if as_markdown:
        console.print(title + "\n\n" + markdown(header, rows) + "\n", markup=False, highlight=False, soft_wrap=True)
    else:
        table = Table(title=title)
        for index, column in enumerate(header):
            table.add_column(
                column.replace(" per", "\nper").replace(" $", "\n$"), justify="left" if index < 2 else "right"
            )
        for row in rows:
            table.add_row(*row, end_section=row[1] == "hop total")
        console.print(table)
    for name, each in bills.items():
        console.print(f"{name}: " + ", ".join(f"{what} {value:.2f}" for what, value in each.batches.items()))
        means = ", ".join(f"{function} {sum(ms) / len(ms):.1f} ms" for function, ms in each.lambda_ms.items() if ms)
        console.print(f"{name}: mean billed duration per invocation: {means}")
    console.print(
        f"Batches follow this run's cadence (the emulators run every {PUMP_EVERY} changes, so batches fill up); "
        "at low traffic on AWS a batch may hold a single record, multiplying the per-batch lines (invocations of "
        "the enrichment and the consumer, GetRecords, receives, deletes) by up to the batch size."
    )
    console.print(
        "Lambda durations are this machine's, measured in this process (the functions' moto calls included), "
        "billed per invocation rounded up to 1 ms; on AWS they will differ."
    )
    console.print(
        "Assumed: SQS bills the queue owner for the SendMessage a rule makes (one request per 64 KB of the "
        "delivered event), and a cancelled DynamoDB transaction its whole content (no AWS page found states either)."
    )
    idle = _idle_note(bills[names[0]], pollers, load_prices()["sqs_standard_request"])
    console.print(idle)
    console.print("Not billed per request (control plane, the emulators' own bookkeeping):")
    for name, each in bills.items():
        console.print(f"  {name}: " + ", ".join(f"{what} x{count}" for what, count in sorted(each.not_billed.items())))
    console.print("Excluded: " + "; ".join(EXCLUDED) + ".")
    if len(bills) == 2:
        a, b = (bills[name].total() for name in names)
        verdict = "lower" if a < b else "NOT lower"
        console.print(f"[bold]{names[0]} ${a:.2f} per million ride changes, {verdict} than {names[1]} ${b:.2f}[/]")
        a, b = (bills[name].counted_total() for name in names)
        console.print(
            f"Without the Lambda GB-seconds (the counts alone, whatever this machine's speed): "
            f"{names[0]} ${a:.2f}, {names[1]} ${b:.2f}"
        )


def idle_pollers(stack: Stack) -> int:
    """Pollers on an idle queue: the template's ScalingConfig (a maximum concurrency) keeps all five."""
    mappings = [stack.properties(lid) for lid in stack.of_type("AWS::Lambda::EventSourceMapping")]
    sqs = [props for props in mappings if ":sqs:" in str(props.get("EventSourceArn", ""))]
    limited = any(props.get("ScalingConfig", {}).get("MaximumConcurrency") for props in sqs)
    return IDLE_POLLERS if limited else IDLE_POLLERS_OPTIMISED


def _idle_note(bill: Bill, pollers: int, price: Price) -> str:
    polls = idle_requests_per_month(pollers, SQS_LONG_POLL_SECONDS)
    return (
        f"Polls that returned nothing in this run (the emulators poll when the run pumps): "
        f"{', '.join(f'{what} x{count}' for what, count in bill.idle.items())}. On AWS they scale with time, not "
        f"traffic: Lambda long-polls an idle queue with {pollers} pollers here (five at low traffic, as few as two "
        f"without a maximum concurrency: docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html); "
        f"assuming a {SQS_LONG_POLL_SECONDS} s wait (SQS's longest; Lambda documents none), {polls:,} empty "
        f"receives a month, ${price.cost(polls):.2f} a month. How often a Pipe polls an idle stream is not "
        f"documented: not priced."
    )


def _quantity(value: float) -> str:
    if value == 0:
        return "0"
    if value >= 0.01:
        return f"{value:.3f}"
    return f"{value:.3g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make cost", description=__doc__)
    parser.add_argument("--rides", type=int, default=100, help="rides per design (default 100, about 370 changes)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--retry-rate", type=float, default=0.1, help="share of requests a client retries")
    parser.add_argument("--json", type=Path, default=STATE_DIR / "cost-report.json")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown (as in the README)")
    args = parser.parse_args(argv)
    if args.rides < 1:
        parser.error(f"--rides {args.rides}: at least one ride, or there is nothing to price per change")
    if not 0 <= args.retry_rate < 1:
        parser.error(f"--retry-rate {args.retry_rate}: a share from 0 up to, not including, 1")
    warnings.filterwarnings("ignore", "No application metrics to publish")
    console = Console(width=None if sys.stdout.isatty() else 200)
    bills = {design: run(design, args.rides, args.seed, args.retry_rate, console) for design in DESIGNS}
    render(bills, console, idle_pollers(Stack.from_file()), as_markdown=args.markdown)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {name: asdict(each) | {"total": each.total()} for name, each in bills.items()}
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
