"""`make demo`: the whole pipeline on this machine, no Docker, no AWS account.

Starts the local stack, drives simulated rides through the API, runs the Pipe, the bus and the
consumer until quiet, replays the bus archive (every event arrives a second time and must be dropped),
then prints the run's report (per hop, the consumer's effects, commit -> applied latency, the end-to-end
invariants) and writes it as report.json and report.html. Exits 1 if an invariant broke.
"""

import argparse
import sys
import time
import uuid
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from local.aws.functions import send_output_to
from local.aws.stack import STATE_DIR, LocalStack
from local.emulators.clock import WallClock
from local.emulators.pipeline import Pipeline
from local.workload.invariants import check_all, queue_depths, scan
from local.workload.measure import BareBaseline
from local.workload.report import files, terminal
from local.workload.report.model import (
    OUR_DESIGN,
    CheckRow,
    DesignRow,
    HopRow,
    Latency,
    Measure,
    RunInfo,
    RunReport,
)
from local.workload.traffic import ApiCaller, Ledger, RideTraffic

PUMP_EVERY = 40
BARE_EVERY = 10
"""One API step in ten has its DynamoDB requests replayed bare right after (local/workload/measure.py)."""
CONSUMER_DEAD_LETTERS = ("RuleDeadLetterQueue", "ConsumerDeadLetterQueue")
"""Where an event the consumer side could not take ends: the rule's DLQ and the consumer queue's."""
RELAY_DEAD_LETTERS = ("PipeDeadLetterQueue", "QuarantineQueue")
"""Where the relay parks what it gave up on (a stream pointer) or could not read (a rejection event)."""
LATENCY_BASIS = (
    "the outbox record's committedAt to the processed key's processedAt, both this machine's wall clock; the demo "
    f"relays every {PUMP_EVERY} changes and waits {{time_scale}} s per simulated second, so these seconds are this "
    "run's, not AWS's"
)
"""What the demo's commit -> applied seconds are, printed beside them: this run's pacing, not AWS's."""


# The report is the demo's output: the handlers log errors only, emit no metrics, and what they print
# goes to .local/functions.log (`make local` shows both in the terminal).
QUIET_FUNCTIONS = {"POWERTOOLS_LOG_LEVEL": "ERROR", "POWERTOOLS_METRICS_DISABLED": "true"}


FUNCTION_OUTPUT = STATE_DIR / "functions.log"


def run(rides: int, seed: int, retry_rate: float, replay: bool, time_scale: float, console: Console) -> RunReport:
    FUNCTION_OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    with FUNCTION_OUTPUT.open("w") as output:
        send_output_to(output)
        local = LocalStack.start(environment_overrides=QUIET_FUNCTIONS)
        try:
            with Pipeline(local, WallClock(time_scale)) as pipeline:
                return _run(local, pipeline, rides, seed, retry_rate, replay, time_scale, console)
        finally:
            local.stop()
            send_output_to(None)


def _run(
    local: LocalStack,
    pipeline: Pipeline,
    rides: int,
    seed: int,
    retry_rate: float,
    replay: bool,
    time_scale: float,
    console: Console,
) -> RunReport:
    console.print(f"local stack on [bold]{local.endpoint}[/] (outputs in {STATE_DIR / 'outputs.json'})")
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    api = ApiCaller(local.stack, local.functions["ApiFunction"])
    traffic = RideTraffic(api, rides=rides, seed=seed, retry_rate=retry_rate)
    bare = BareBaseline(local)
    drive_started = time.perf_counter()
    segments = _drive(traffic, pipeline, bare, console)
    end_to_end = time.perf_counter() - drive_started - bare.seconds
    before_replay = Snapshot.take(local, pipeline)
    replayed, replay_seconds = 0, 0.0
    if replay:
        replay_started = time.perf_counter()
        replayed = _replay_archive(local, started_at - timedelta(minutes=1))
        pipeline.run_until_quiet()
        replay_seconds = time.perf_counter() - replay_started
    ttl_deleted = pipeline.ttl.sweep()
    after_replay = Snapshot.take(local, pipeline)
    hops = _hops(traffic, pipeline, before_replay, after_replay, replayed, ttl_deleted)
    bare.close()
    errors = api.stats.statuses.get(500, 0) + sum(s.invocation_errors for s in pipeline.consumer_stats.values())
    errors += sum(pipe.stats.enrichment_errors for pipe in pipeline.pipes)
    run_info = RunInfo(
        command="make demo",
        seed=seed,
        finished_at=datetime.now(UTC),
        seconds=round(time.perf_counter() - started, 1),
        sizes={"rides": rides, "ride changes": traffic.ledger.accepted_changes},
        settings={
            "retry rate": f"{retry_rate:g}",
            "archive replay": "yes" if replay else "no",
            "time scale": f"{time_scale:g}",
        },
    )
    measures = _measures(
        api.stats.seconds, end_to_end, (replayed, replay_seconds), traffic.ledger.accepted_changes, bare, segments
    )
    return _report(local, run_info, hops, traffic.ledger, after_replay, errors, measures)


def _drive(traffic: RideTraffic, pipeline: Pipeline, bare: BareBaseline, console: Console) -> list["Segment"]:
    """Every ride change through the API, the pipeline pumped every PUMP_EVERY changes, then drained."""
    api = traffic.api
    segments: list[Segment] = []
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("ride changes", total=traffic.total_changes)
        segment = Segment()
        steps = 0
        while not traffic.done():
            api_before, bare_before, bare_changes_before = api.stats.seconds, bare.seconds, bare.changes
            if steps % BARE_EVERY == 0:
                with bare.recording() as requests:
                    changes = traffic.step()
                bare.replay(requests, changes)
            else:
                changes = traffic.step()
            steps += 1
            if traffic.ledger.accepted_changes % PUMP_EVERY == 0:
                pipeline.pump()
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
    return segments


def _report(
    local: LocalStack,
    run_info: RunInfo,
    hops: list[HopRow],
    ledger: Ledger,
    after: "Snapshot",
    errors: int,
    measures: list[Measure],
) -> RunReport:
    """The run's report, its effects, latency and invariants read from the tables and queues as they ended."""
    outbox, keys = scan(local.stack, "OutboxTable"), scan(local.stack, "ProcessedKeysTable")
    samples = commit_to_applied(outbox, keys)
    basis = LATENCY_BASIS.format(time_scale=run_info.settings["time scale"])
    return RunReport(
        run=run_info,
        hops=hops,
        designs=[_our_design(outbox, keys, scan(local.stack, "RiderAccountsTable"), ledger, after)],
        checks=[CheckRow(check.name, check.held, check.detail) for check in check_all(local.stack, ledger, errors)],
        latency=Latency.from_samples(samples, basis=basis) if samples else None,
        measures=measures,
    )


def commit_to_applied(outbox: Iterable[Mapping[str, Any]], keys: Iterable[Mapping[str, Any]]) -> list[float]:
    """Seconds from each change's commit (its outbox record) to its first effect (its processed key)."""
    committed = {(str(item["rideId"]), int(item["version"])): str(item["committedAt"]) for item in outbox}
    samples = []
    for key in keys:
        at = committed.get((str(key["rideId"]), int(key["version"])))
        if at is not None:
            applied = datetime.fromisoformat(str(key["processedAt"]))
            samples.append(max(0.0, (applied - datetime.fromisoformat(at)).total_seconds()))
    return samples


def _our_design(
    outbox: Iterable[Mapping[str, Any]],
    keys: Iterable[Mapping[str, Any]],
    accounts: Iterable[Mapping[str, Any]],
    ledger: Ledger,
    after: "Snapshot",
) -> DesignRow:
    """The consumer's effects against the ledger: extra charges, changes never applied, versions out of order."""
    completed: dict[str, int] = defaultdict(int)
    for record in ledger.rides.values():
        completed[record.rider_id] += record.status == "COMPLETED"
    extra_charges = sum(
        max(0, int(account.get("chargeCount", 0)) - completed[str(account["riderId"])]) for account in accounts
    )
    applied = [(str(key["rideId"]), int(key["version"]), str(key["processedAt"])) for key in keys]
    changes_applied = {(ride, version) for ride, version, _ in applied}
    lost = {(str(item["rideId"]), int(item["version"])) for item in outbox} - changes_applied
    newest: dict[str, int] = {}
    out_of_order = 0
    # In the order they took effect (ties by version: one millisecond holds several): an older after a newer.
    for ride, version, _ in sorted(applied, key=lambda entry: (entry[2], entry[1])):
        out_of_order += version < newest.get(ride, 0)
        newest[ride] = max(version, newest.get(ride, 0))
    return DesignRow(
        OUR_DESIGN,
        duplicate_effects=extra_charges + len(applied) - len(changes_applied),
        lost_events=len(lost),
        order_violations=out_of_order,
        parked=after.parked,
    )


def _measures(
    api_seconds: float,
    end_to_end: float,
    replay: tuple[int, float],
    changes: int,
    bare: BareBaseline,
    segments: list["Segment"],
) -> list[Measure]:
    """The API's rate, and what it, the whole pipeline and the replay cost beside the bare moto requests of a change.

    `end_to_end` is the time from the first request to the last effect applied (before any archive
    replay), less the bare requests timed in between; `replay` is (events replayed, seconds until quiet).
    """
    per_change = api_seconds / max(1, changes)
    pipeline_per_change = end_to_end / max(1, changes)
    first, last = (segments[0], segments[-1]) if segments else (Segment(), Segment())
    measures = [
        Measure("API ride changes per second", round(changes / api_seconds, 1), "/s"),
        Measure("  first tenth of the run", first.rate if segments else 0.0, "/s"),
        Measure("  first tenth, time per change vs bare moto", first.ratio_to_bare, "x"),
        Measure("  last tenth of the run", last.rate if segments else 0.0, "/s"),
        Measure("  last tenth, time per change vs bare moto", last.ratio_to_bare, "x"),
        Measure("API time per ride change", round(per_change * 1000, 2), "ms"),
        Measure("  its bare moto requests", round(bare.seconds_per_change * 1000, 2), "ms"),
        Measure("  ratio to bare moto", round(per_change / bare.seconds_per_change, 2), "x"),
        Measure(
            "end-to-end time per ride change (first request to last effect applied)",
            round(pipeline_per_change * 1000, 2),
            "ms",
        ),
        Measure("  end-to-end ratio to bare moto", round(pipeline_per_change / bare.seconds_per_change, 2), "x"),
    ]
    replayed, replay_seconds = replay
    if replayed:
        per_event = replay_seconds / replayed
        measures += [
            Measure(
                "archive replay, time per replayed event (dropped as a duplicate)", round(per_event * 1000, 2), "ms"
            ),
            Measure("  replay ratio to bare moto", round(per_event / bare.seconds_per_change, 2), "x"),
        ]
    return measures


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
    parked: int
    """Messages in the rule's and the consumer's dead-letter queues."""
    relay_parked: int
    """Messages in the Pipe's dead-letter queue and the quarantine queue."""

    @classmethod
    def take(cls, local: LocalStack, pipeline: Pipeline) -> "Snapshot":
        stats = pipeline.consumer_stats["ConsumerFunction"]
        depths = queue_depths(local.stack, CONSUMER_DEAD_LETTERS + RELAY_DEAD_LETTERS)
        return cls(
            outbox_records=len(scan(local.stack, "OutboxTable")),
            deliveries=stats.deliveries,
            succeeded=stats.succeeded,
            failed=stats.failed,
            applied=len(scan(local.stack, "ProcessedKeysTable")),
            parked=sum(depths[name] for name in CONSUMER_DEAD_LETTERS),
            relay_parked=sum(depths[name] for name in RELAY_DEAD_LETTERS),
        )


def _hops(
    traffic: RideTraffic,
    pipeline: Pipeline,
    before: Snapshot,
    after: Snapshot,
    replayed: int,
    ttl_deleted: int,
) -> list[HopRow]:
    api = traffic.api.stats
    pipe = pipeline.pipes[0].stats
    consumer = pipeline.consumer_stats["ConsumerFunction"]
    return [
        HopRow(
            "client -> API",
            received=api.requests,
            passed_on=traffic.ledger.accepted_changes,
            duplicates_dropped=api.replays,
            note=f"{traffic.ledger.client_retries} client retries answered from stored responses",
        ),
        HopRow(
            "API -> outbox",
            received=traffic.ledger.accepted_changes,
            passed_on=before.outbox_records,
            duplicates_dropped=0,
            note="one TransactWriteItems per change",
        ),
        HopRow(
            "stream -> Pipe -> bus",
            received=pipe.records_read,
            passed_on=pipe.events_put,
            duplicates_dropped=0,
            to_dead_letter=before.relay_parked,
            note=f"{pipe.filtered_out} filtered, {pipe.batches} batches, {pipe.retries} retries, "
            f"{pipe.records_to_dlq} records to the DLQ",
        ),
        HopRow(
            "bus -> queue -> consumer",
            received=before.deliveries,
            passed_on=before.applied,
            duplicates_dropped=before.succeeded - before.applied,
            to_dead_letter=before.parked,
            note=f"{consumer.batches} batches; {before.failed} deliveries deferred or failed, then retried",
        ),
        HopRow(
            "archive replay -> consumer",
            received=after.deliveries - before.deliveries,
            passed_on=after.applied - before.applied,
            duplicates_dropped=(after.succeeded - before.succeeded) - (after.applied - before.applied),
            to_dead_letter=after.parked - before.parked,
            note=f"{replayed} archived events replayed onto the bus",
        ),
        HopRow(
            "TTL deletion",
            received=ttl_deleted,
            passed_on=0,
            duplicates_dropped=0,
            note="items expired for longer than the emulated lateness",
        ),
    ]


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
    parser.add_argument(
        "--report-dir", type=Path, default=STATE_DIR, help="where report.json and report.html go (default .local)"
    )
    args = parser.parse_args(argv)
    # Powertools warns when an invocation emitted no metric (a read, a replayed duplicate): expected here.
    warnings.filterwarnings("ignore", "No application metrics to publish")
    console = Console(width=None if sys.stdout.isatty() else 120)
    report = run(args.rides, args.seed, args.retry_rate, not args.no_replay, args.time_scale, console)
    terminal.render(report, console)
    json_path, html_path = files.write(report, args.report_dir)
    console.print(f"report written to {json_path} and {html_path} (`make report-screenshot` draws the page)")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
