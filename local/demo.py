"""`make demo`: the whole pipeline on this machine, no Docker, no AWS account.

Starts the local stack, drives simulated rides through the API, runs the Pipe, the bus and the
consumer until quiet, replays the bus archive (every event arrives a second time and must be dropped),
then prints a report per hop and the end-to-end invariants. Exits 1 if an invariant broke.
"""

import argparse
import json
import sys
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from local.aws.functions import send_output_to
from local.aws.stack import STATE_DIR, LocalStack
from local.emulators.clock import WallClock
from local.emulators.pipeline import Pipeline
from local.workload.invariants import check_all, scan
from local.workload.measure import BareBaseline
from local.workload.traffic import ApiCaller, RideTraffic

PUMP_EVERY = 40


@dataclass
class Report:
    rides: int
    seed: int
    hops: list[dict[str, Any]] = field(default_factory=list)
    rates: dict[str, float] = field(default_factory=dict)
    invariants: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check["held"] for check in self.invariants)


# The report is the demo's output: the handlers log errors only, emit no metrics, and what they print
# goes to .local/functions.log (`make local` shows both in the terminal).
QUIET_FUNCTIONS = {"POWERTOOLS_LOG_LEVEL": "ERROR", "POWERTOOLS_METRICS_DISABLED": "true"}


FUNCTION_OUTPUT = STATE_DIR / "functions.log"


def run(rides: int, seed: int, retry_rate: float, replay: bool, time_scale: float, console: Console) -> Report:
    FUNCTION_OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    with FUNCTION_OUTPUT.open("w") as output:
        send_output_to(output)
        local = LocalStack.start(environment_overrides=QUIET_FUNCTIONS)
        try:
            with Pipeline(local, WallClock(time_scale)) as pipeline:
                return _run(local, pipeline, rides, seed, retry_rate, replay, console)
        finally:
            local.stop()
            send_output_to(None)


def _run(
    local: LocalStack, pipeline: Pipeline, rides: int, seed: int, retry_rate: float, replay: bool, console: Console
) -> Report:
    console.print(f"local stack on [bold]{local.endpoint}[/] (outputs in {STATE_DIR / 'outputs.json'})")
    started_at = datetime.now(UTC)
    api = ApiCaller(local.stack, local.functions["ApiFunction"])
    traffic = RideTraffic(api, rides=rides, seed=seed, retry_rate=retry_rate)
    bare = BareBaseline(local)
    segments: list[Segment] = []
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("ride changes", total=traffic.total_changes)
        segment = Segment()
        while not traffic.done():
            api_before, bare_before, bare_changes_before = api.stats.seconds, bare.seconds, bare.changes
            changes = traffic.step()
            if traffic.ledger.accepted_changes % PUMP_EVERY == 0:
                pipeline.pump()
                bare.sample()
            segment.add(
                changes, api.stats.seconds - api_before, bare.seconds - bare_before, bare.changes - bare_changes_before
            )
            progress.update(task, advance=changes)
            if segment.changes >= max(50, traffic.total_changes // 10):
                segments.append(segment)
                segment = Segment()
        progress.update(task, total=traffic.ledger.accepted_changes, completed=traffic.ledger.accepted_changes)
        drain = progress.add_task("pipeline draining", total=None)
        pipeline.run_until_quiet()
        progress.update(drain, total=1, completed=1)
    before_replay = Snapshot.take(local, pipeline)
    replayed = 0
    if replay:
        replayed = _replay_archive(local, started_at - timedelta(minutes=1))
        pipeline.run_until_quiet()
    ttl_deleted = pipeline.ttl.sweep()
    report = Report(rides=rides, seed=seed)
    _hops(report, traffic, pipeline, before_replay, Snapshot.take(local, pipeline), replayed, ttl_deleted)
    bare.close()
    per_change = api.stats.seconds / max(1, traffic.ledger.accepted_changes)
    report.rates = {
        "changes_per_second": round(traffic.ledger.accepted_changes / api.stats.seconds, 1),
        "first_segment_changes_per_second": segments[0].rate if segments else 0.0,
        "first_segment_ratio_to_bare_moto": segments[0].ratio_to_bare if segments else 0.0,
        "last_segment_changes_per_second": segments[-1].rate if segments else 0.0,
        "last_segment_ratio_to_bare_moto": segments[-1].ratio_to_bare if segments else 0.0,
        "ms_per_change": round(per_change * 1000, 2),
        "bare_moto_ms_per_change": round(bare.seconds_per_change * 1000, 2),
        "ratio_to_bare_moto": round(per_change / bare.seconds_per_change, 2),
    }
    errors = api.stats.statuses.get(500, 0) + sum(s.invocation_errors for s in pipeline.consumer_stats.values())
    errors += sum(pipe.stats.enrichment_errors for pipe in pipeline.pipes)
    report.invariants = [asdict(check) for check in check_all(local.stack, traffic.ledger, errors)]
    return report


def _replay_archive(local: LocalStack, since: datetime) -> int:
    """Replay everything archived since `since` onto the same bus, as an operator would after an incident."""
    # moto replays synchronously inside StartReplay, which takes a while for thousands of events: wait
    # for it instead of letting botocore time out and retry a call that already started the replay.
    events = boto3.client("events", config=Config(read_timeout=900, retries={"max_attempts": 1}))
    archive = local.archives["RideEventArchive"]
    archive_arn = local.stack.get_att("RideEventArchive", "Arn")
    count = int(events.describe_archive(ArchiveName=archive).get("EventCount", 0))
    events.start_replay(
        ReplayName=f"demo-replay-{uuid.uuid4().hex[:12]}",
        EventSourceArn=archive_arn,
        EventStartTime=since,
        EventEndTime=datetime.now(UTC) + timedelta(minutes=1),
        Destination={"Arn": local.stack.get_att("RideEventBus", "Arn")},
    )
    return count


@dataclass
class Segment:
    """About a tenth of the run: its API rate, and the bare moto calls sampled during it."""

    changes: int = 0
    seconds: float = 0.0
    bare_seconds: float = 0.0
    bare_changes: int = 0

    def add(self, changes: int, seconds: float, bare_seconds: float, bare_changes: int) -> None:
        self.changes += changes
        self.seconds += seconds
        self.bare_seconds += bare_seconds
        self.bare_changes += bare_changes

    @property
    def rate(self) -> float:
        return round(self.changes / self.seconds, 1)

    @property
    def ratio_to_bare(self) -> float:
        if not self.bare_changes:
            return 0.0
        return round((self.seconds / self.changes) / (self.bare_seconds / self.bare_changes), 2)


@dataclass(frozen=True)
class Snapshot:
    """The consumer's counters at one moment, so the replay's share can be told apart."""

    outbox_records: int
    deliveries: int
    succeeded: int
    failed: int
    applied: int

    @classmethod
    def take(cls, local: LocalStack, pipeline: Pipeline) -> "Snapshot":
        stats = pipeline.consumer_stats["ConsumerFunction"]
        return cls(
            outbox_records=len(scan(local.stack, "OutboxTable")),
            deliveries=stats.deliveries,
            succeeded=stats.succeeded,
            failed=stats.failed,
            applied=len(scan(local.stack, "ProcessedKeysTable")),
        )


def _hops(
    report: Report,
    traffic: RideTraffic,
    pipeline: Pipeline,
    before: Snapshot,
    after: Snapshot,
    replayed: int,
    ttl_deleted: int,
) -> None:
    api = traffic.api.stats
    pipe = pipeline.pipes[0].stats
    consumer = pipeline.consumer_stats["ConsumerFunction"]
    report.hops = [
        {
            "hop": "client -> API",
            "in": api.requests,
            "duplicates dropped": api.replays,
            "out": traffic.ledger.accepted_changes,
            "note": f"{traffic.ledger.client_retries} client retries answered from stored responses",
        },
        {
            "hop": "API -> outbox",
            "in": traffic.ledger.accepted_changes,
            "duplicates dropped": 0,
            "out": before.outbox_records,
            "note": "one TransactWriteItems per change",
        },
        {
            "hop": "stream -> Pipe -> bus",
            "in": pipe.records_read,
            "duplicates dropped": 0,
            "out": pipe.events_put,
            "note": f"{pipe.filtered_out} filtered, {pipe.batches} batches, {pipe.retries} retries, "
            f"{pipe.records_to_dlq} to DLQ",
        },
        {
            "hop": "bus -> queue -> consumer",
            "in": before.deliveries,
            "duplicates dropped": before.succeeded - before.applied,
            "out": before.applied,
            "note": f"{consumer.batches} batches; {before.failed} deliveries deferred or failed, then retried",
        },
        {
            "hop": "archive replay -> consumer",
            "in": after.deliveries - before.deliveries,
            "duplicates dropped": (after.succeeded - before.succeeded) - (after.applied - before.applied),
            "out": after.applied - before.applied,
            "note": f"{replayed} archived events replayed onto the bus",
        },
        {
            "hop": "TTL deletion",
            "in": ttl_deleted,
            "duplicates dropped": 0,
            "out": 0,
            "note": "items expired for longer than the emulated lateness",
        },
    ]


def render(report: Report, console: Console) -> None:
    hops = Table(title=f"rideonce local run: {report.rides} rides, seed {report.seed}")
    for column in ("hop", "in", "duplicates dropped", "out", "note"):
        hops.add_column(column, justify="right" if column in ("in", "duplicates dropped", "out") else "left")
    for hop in report.hops:
        hops.add_row(*(str(hop[column]) for column in ("hop", "in", "duplicates dropped", "out", "note")))
    console.print(hops)
    rates = report.rates
    console.print(
        f"API: {rates['changes_per_second']} ride changes/s "
        f"(first tenth {rates['first_segment_changes_per_second']}"
        f" = {rates['first_segment_ratio_to_bare_moto']} x bare, "
        f"last tenth {rates['last_segment_changes_per_second']}"
        f" = {rates['last_segment_ratio_to_bare_moto']} x bare); "
        f"{rates['ms_per_change']} ms per change = "
        f"{rates['ratio_to_bare_moto']} x its bare moto calls ({rates['bare_moto_ms_per_change']} ms)"
    )
    invariants = Table(title="end-to-end invariants")
    invariants.add_column("invariant")
    invariants.add_column("held")
    invariants.add_column("detail")
    for check in report.invariants:
        invariants.add_row(check["name"], "[green]yes[/]" if check["held"] else "[red]NO[/]", check["detail"])
    console.print(invariants)
    console.print("[bold green]all invariants held[/]" if report.ok else "[bold red]an invariant broke[/]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument("--rides", type=int, default=300, help="rides to simulate (default 300)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--retry-rate", type=float, default=0.1, help="share of requests a client retries")
    parser.add_argument("--no-replay", action="store_true", help="skip the archive replay")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=0.01,
        help="the clock's scale: real seconds per second of AWS's waits (visibility timeouts, windows)",
    )
    parser.add_argument("--json", type=Path, default=STATE_DIR / "demo-report.json")
    args = parser.parse_args(argv)
    # Powertools warns when an invocation emitted no metric (a read, a replayed duplicate): expected here.
    warnings.filterwarnings("ignore", "No application metrics to publish")
    console = Console(width=None if sys.stdout.isatty() else 120)
    report = run(args.rides, args.seed, args.retry_rate, not args.no_replay, args.time_scale, console)
    render(report, console)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(asdict(report) | {"ok": report.ok}, indent=2, default=str) + "\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
