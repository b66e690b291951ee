"""`python -m ops`: one entry point for every operation, against the local stack or a deployed one.

The local stack is found through its outputs file (`make local` writes .local/outputs.json); a deployed
stack through `--stack NAME`, with the region and credentials of the usual AWS environment. Commands that
write are dry runs unless given `--apply`.
"""

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import boto3
from rich.console import Console
from rich.table import Table

from ops import commands
from ops.commands import Report
from ops.target import Target

DEFAULT_OUTPUTS = Path(".local/outputs.json")


def instant(text: str) -> datetime:
    """An ISO 8601 instant; without an offset it is read as UTC."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m ops", description=__doc__)
    where = root.add_mutually_exclusive_group()
    where.add_argument("--stack", help="a deployed stack's name (region and credentials from the AWS environment)")
    where.add_argument("--outputs", type=Path, default=DEFAULT_OUTPUTS, help="the local stack's outputs file")
    root.add_argument("--region", help="the deployed stack's region (default: the AWS environment's)")
    sub = root.add_subparsers(dest="command", required=True)

    redrive = sub.add_parser("redrive", help="empty a dead-letter or quarantine queue safely")
    which = redrive.add_subparsers(dest="queue", required=True)
    dlq = which.add_parser("consumer-dlq", help="ConsumerDeadLetterQueue -> RideEventsQueue")
    quarantine = which.add_parser("quarantine", help="fixed outbox records -> the Pipe again, as new INSERTs")
    republish = sub.add_parser("republish", help="the events of changes committed in a window, from the outbox")
    replay = sub.add_parser("replay", help="the bus archive's events of a window, onto the bus")
    for windowed in (republish, replay):
        windowed.add_argument("--since", type=instant, required=True, help="ISO 8601 instant, inclusive")
        windowed.add_argument("--until", type=instant, required=True, help="ISO 8601 instant, exclusive")
    replay.add_argument("--name", help="the replay's name (default: one per window, so a rerun does not replay)")
    replay.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the replay to finish")
    reconcile = sub.add_parser("reconcile", help="one run of the reconciler, as the schedule would run it")
    reconcile.add_argument("--at", type=instant, help="when the schedule fires (default: now)")
    for writing in (dlq, quarantine, republish, replay, reconcile):
        writing.add_argument("--apply", action="store_true", help="write (default: a dry run that writes nothing)")
    sub.add_parser("audit", help="the end-to-end invariants on the stack's tables and queues; exit 1 if one broke")
    trace = sub.add_parser("trace", help="every hop's record of one ride, as a timeline")
    trace.add_argument("ride_id")
    return root


def target_of(args: argparse.Namespace) -> Target:
    if args.stack:
        return Target.from_stack(args.stack, boto3.session.Session(region_name=args.region))
    if not args.outputs.exists():
        raise SystemExit(f"no outputs file at {args.outputs}: start the local stack (make local) or pass --stack")
    return Target.from_outputs_file(args.outputs)


def run(args: argparse.Namespace, target: Target) -> Report:
    match args.command:
        case "redrive" if args.queue == "consumer-dlq":
            return commands.redrive_consumer_dlq(target, args.apply)
        case "redrive":
            return commands.redrive_quarantine(target, args.apply)
        case "republish":
            return commands.republish(target, args.since, args.until, args.apply)
        case "replay":
            return commands.replay(target, args.since, args.until, args.apply, args.name, args.timeout)
        case "reconcile":
            return commands.reconcile(target, args.at, args.apply)
        case "audit":
            return commands.audit(target)
        case _:
            return commands.trace(target, args.ride_id)


def render(report: Report, console: Console) -> None:
    table = Table(title=report.title, title_justify="left")
    for column in report.columns:
        table.add_column(column)
    for row in report.rows:
        table.add_row(*row)
    console.print(table)
    for note in report.notes:
        console.print(note)


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    args = parser().parse_args(argv)
    report = run(args, target_of(args))
    render(report, console or Console(file=sys.stdout))
    return 0 if report.ok else 1
