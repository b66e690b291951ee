"""`python -m local.reconcile_cost`: what the reconciler reads, per run and per ride change, by table size.

For each size, an outbox table of that many records (rides of four changes, commits spread evenly over the
outbox's 7-day retention, so the table holds a steady week of traffic) and a projection that has applied
every change except the last change of a share of the rides. The reconciler then runs on its schedule
(the template's period and grace) for the most recent windows, with every DynamoDB request it makes
counted; after a run, the rides it repaired are marked applied, as the consumer would apply them.

moto returns no consumed capacity, so read capacity is computed from the items each request read, with
the documented rules (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html):
a Query reads the sum of its items' sizes rounded up to the next 4 KB; BatchGetItem reads each item as a
GetItem, its size rounded up to 4 KB; a strongly consistent 4 KB costs 1 unit, an eventually consistent one
half. A query on a global secondary index is eventually consistent and is charged for the index entries,
here keys only (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html). Item sizes
follow https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html.
A read is charged on the whole item, whatever ProjectionExpression returns, so a projection read is
sized on the stored item. A request that read nothing is counted as one 4 KB unit: an upper bound, since
the documents do not say what an empty Query costs.
"""

import argparse
import math
import sys
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from local.aws.stack import LocalStack
from local.aws.transport import Transport
from local.chaos.runner import QUIET_FUNCTIONS, quiet_handlers
from local.workload.cost.units import item_size
from rideonce.dal.dynamo import to_item
from rideonce.logic import events as ride_events
from rideonce.logic import rides as ride_logic
from rideonce.logic.reconcile import window
from rideonce.models.requests import CreateRideRequest
from rideonce.models.ride import Location, Money
from rideonce.services.reconciler import Reconciler
from rideonce.settings import ReconcilerSettings

RETENTION = timedelta(days=7)
CHANGES_PER_RIDE = 4
RIDE_SPAN = tuple(timedelta(minutes=minutes) for minutes in (0, 1, 3, 25))
"""When a ride's changes commit after its request: accepted, started, completed."""
DEFAULT_SIZES = (10_000, 100_000)
DEFAULT_RUNS = 12
DEFAULT_BEHIND = 0.01
BLOCK = 4096
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@dataclass
class ReadMeter:
    """The reads one DynamoDB client made, by request kind, and their read capacity under the documented rules."""

    sizes: dict[tuple[str, str], int]
    """(table, key) -> size of the stored item, for reads that return less than the item (projections)."""
    requests: Counter[str] = field(default_factory=Counter)
    items: Counter[str] = field(default_factory=Counter)
    units: dict[str, float] = field(default_factory=dict)

    def install(self, client: Any) -> None:
        client.meta.events.register("before-parameter-build.dynamodb", self._remember)
        client.meta.events.register("after-call.dynamodb", self._count)

    def total_units(self) -> float:
        return float(sum(self.units.values()))

    def reset(self) -> None:
        self.requests.clear()
        self.items.clear()
        self.units.clear()

    @staticmethod
    def _remember(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["read_meter_params"] = dict(params)

    def _count(self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        params = context.get("read_meter_params", {})
        if model.name == "Query":
            items = parsed.get("Items", [])
            index = params.get("IndexName")
            kind = f"Query {index} index" if index else "Query table"
            per_block = 0.5 if index or not params.get("ConsistentRead") else 1.0
            blocks = max(1, math.ceil(sum(item_size(item) for item in items) / BLOCK))
            self._add(kind, len(items), blocks * per_block)
        elif model.name == "BatchGetItem":
            for table, found in parsed.get("Responses", {}).items():
                request = params["RequestItems"][table]
                per_block = 1.0 if request.get("ConsistentRead") else 0.5
                asked = len(request["Keys"])
                blocks = sum(
                    max(1, math.ceil(self.sizes.get((table, _key_of(item)), item_size(item)) / BLOCK)) for item in found
                )
                # A key with no item still costs a read: one block each, an upper bound.
                self._add("BatchGetItem", len(found), (blocks + asked - len(found)) * per_block)
        else:
            self._add(model.name, 0, 0.0)

    def _add(self, kind: str, items: int, units: float) -> None:
        self.requests[kind] += 1
        self.items[kind] += items
        self.units[kind] = self.units.get(kind, 0.0) + units


def _key_of(item: Mapping[str, Any]) -> str:
    return str(item["rideId"]["S"])


@dataclass
class Fleet:
    """The outbox and projection items of a week of rides, and which rides the projection is behind on."""

    outbox: list[dict[str, Any]]
    projection: list[dict[str, Any]]
    behind: dict[str, datetime]
    """Ride id -> commit time of the last change, which the projection lacks."""


def build_fleet(records: int, end: datetime, behind_share: float) -> Fleet:
    """Rides of four changes (at 0, 1, 3 and 25 minutes) starting evenly over the retention that ends at `end`."""
    rides = records // CHANGES_PER_RIDE
    step = (RETENTION - RIDE_SPAN[-1]) / rides
    outbox: list[dict[str, Any]] = []
    projection: list[dict[str, Any]] = []
    behind: dict[str, datetime] = {}
    every = round(1 / behind_share) if behind_share > 0 else 0
    request = CreateRideRequest(
        rider_id="rider-0001", pickup=Location(lat=48.85, lng=2.35), dropoff=Location(lat=48.86, lng=2.29)
    )
    start = end - RETENTION
    for index in range(rides):
        ride_id = str(uuid.UUID(int=index + 1))
        at = [start + step * index + offset for offset in RIDE_SPAN]
        changes = [ride_logic.request_ride(ride_id, request, at[0])]
        changes.append(ride_logic.accept(changes[-1].ride, "driver-0001", at[1]))
        changes.append(ride_logic.start(changes[-1].ride, at[2]))
        changes.append(ride_logic.complete(changes[-1].ride, Money(amount=Decimal("23.40"), currency="EUR"), at[3]))
        for change, moment in zip(changes, at, strict=True):
            outbox.append(to_item(ride_events.outbox_record(change, moment, TRACEPARENT, RETENTION)))
        lagging = every and index % every == 0
        projection.append(to_item(changes[-2 if lagging else -1].ride))
        if lagging:
            behind[ride_id] = at[-1]
    return Fleet(outbox, projection, behind)


def _write(client: Any, table: str, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), 25):
        pending: dict[str, Any] = {table: [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]}
        while pending:
            pending = dict(client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {})


@dataclass
class CostRow:
    records: int
    runs: int
    checked: int
    repaired_rides: int
    requests: dict[str, float]
    items: dict[str, float]
    units: dict[str, float]
    units_per_run: float
    units_per_change: float
    scan_units: float
    seconds: float


def measure(records: int, runs: int, behind_share: float, say: Any) -> CostRow:
    """One table size: load it, then `runs` scheduled runs over the most recent windows, every read counted."""
    started = time.perf_counter()
    local = LocalStack.start(outputs_file=None, environment_overrides=QUIET_FUNCTIONS)
    quiet = quiet_handlers()
    try:
        stack = local.stack
        settings = ReconcilerSettings.from_env(stack.function_environment("ReconcilerFunction"))
        period = timedelta(minutes=settings.reconcile_period_minutes)
        grace = timedelta(minutes=settings.reconcile_grace_minutes)
        end = datetime.now(UTC).replace(second=0, microsecond=0)
        end -= timedelta(minutes=end.minute % settings.reconcile_period_minutes)
        fleet = build_fleet(records, end, behind_share)
        transport = Transport(in_process=True)
        loader = transport.dynamodb()
        _write(loader, settings.outbox_table_name, fleet.outbox)
        _write(loader, settings.ride_projection_table_name, fleet.projection)
        say(f"{records} outbox records and {len(fleet.projection)} projected rides loaded")
        sizes = {(settings.ride_projection_table_name, _key_of(item)): item_size(item) for item in fleet.projection}
        meter = ReadMeter(sizes)
        client = transport.dynamodb()
        meter.install(client)
        # The reconciler as its function builds it, its reads on the metered client.
        reconciler = Reconciler.from_settings(settings, client, transport.events())
        checked, repaired = _run_windows(reconciler, loader, settings, fleet, end, runs, period, grace)
        total = meter.total_units()
        # A Scan, like a Query, is charged the sum of the sizes it read, rounded up to 4 KB (eventually consistent).
        scan = math.ceil(sum(item_size(item) for item in fleet.outbox) / BLOCK) * 0.5
        return CostRow(
            records=records,
            runs=runs,
            checked=checked,
            repaired_rides=repaired,
            requests={kind: count / runs for kind, count in meter.requests.items()},
            items={kind: count / runs for kind, count in meter.items.items()},
            units={kind: value / runs for kind, value in meter.units.items()},
            units_per_run=total / runs,
            # Every change is in the windows of two runs: its share of the reads is those of two checks.
            units_per_change=total / (checked / 2) if checked else 0.0,
            scan_units=scan,
            seconds=round(time.perf_counter() - started, 1),
        )
    finally:
        quiet()
        local.stop()


def _run_windows(
    reconciler: Reconciler,
    loader: Any,
    settings: ReconcilerSettings,
    fleet: Fleet,
    end: datetime,
    runs: int,
    period: timedelta,
    grace: timedelta,
) -> tuple[int, int]:
    """`runs` scheduled runs up to `end`: (changes checked, rides repaired).

    After each run the consumer's part is played on the unmetered client: the rides it republished are
    brought up to date, so a later window does not count them behind again.
    """
    checked = repaired = 0
    for number in range(runs):
        tick = end - period * (runs - 1 - number)
        report = reconciler.run(tick)
        checked += report.checked
        repaired += report.rides_behind
        # The consumer applies what was republished: those rides are no longer behind.
        span = window(tick, period, grace)
        done = [ride for ride, at in fleet.behind.items() if span.start <= at < span.end]
        for ride_id in done:
            loader.update_item(
                TableName=settings.ride_projection_table_name,
                Key={"rideId": {"S": ride_id}},
                UpdateExpression="SET #version = :version",
                ExpressionAttributeNames={"#version": "version"},
                ExpressionAttributeValues={":version": {"N": str(CHANGES_PER_RIDE)}},
            )
            del fleet.behind[ride_id]
    return checked, repaired


def render(rows: list[CostRow], console: Console) -> None:
    table = Table(title="reconciler reads (per run: mean over the runs; RCU from item sizes, documented rounding)")
    for column in ("outbox records", "runs", "changes checked / run", "requests / run", "items read / run"):
        table.add_column(column, justify="right" if column != "requests / run" else "left")
    for column in ("RCU / run", "RCU / ride change", "a Scan instead (RCU / run)", "rides repaired"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            f"{row.records:,}",
            str(row.runs),
            f"{row.checked / row.runs:.1f}",
            "\n".join(f"{kind}: {count:.2f}" for kind, count in sorted(row.requests.items())),
            "\n".join(f"{kind}: {count:.1f}" for kind, count in sorted(row.items.items())),
            f"{row.units_per_run:.2f}",
            f"{row.units_per_change:.3f}",
            f"{row.scan_units:,.0f}",
            str(row.repaired_rides),
        )
    console.print(table)
    for row in rows:
        console.print(
            f"{row.records:,} records: RCU per run by request kind "
            + ", ".join(f"{kind} {value:.2f}" for kind, value in sorted(row.units.items()))
            + f" ({row.seconds} s)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.reconcile_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, nargs="+", default=list(DEFAULT_SIZES), help="outbox table sizes")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="scheduled runs measured per size")
    parser.add_argument(
        "--behind", type=float, default=DEFAULT_BEHIND, help="share of rides whose last change the projection lacks"
    )
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)
    say = lambda line: console.print(f"[dim]{time.strftime('%H:%M:%S')} {line}[/]")  # noqa: E731
    rows = [measure(records, args.runs, args.behind, say) for records in args.records]
    render(rows, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
