"""Cold-start import cost of each handler module, as a ratio to boto3's, measured in the same run.

Each sample is a fresh interpreter that times one import, on the wall clock (perf_counter) and in CPU
time (process_time, which other processes on a shared machine disturb far less); the handlers and the
baselines alternate, so load touches both alike. Medians are reported. The handlers
run with the environment every function gets from the template's Globals, as in Lambda. Then the
enrichment's warm cost per record, on a 10-record batch like the ones the Pipe sends.
"""

import argparse
import statistics
import subprocess
import sys
import timeit
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

from local.aws.template import ROOT, load_raw

BASELINES = {
    "import boto3": "import boto3",
    'boto3.client("dynamodb")': 'import boto3; boto3.client("dynamodb", region_name="us-east-1")',
}
HANDLERS = (
    "rideonce.handlers.api",
    "rideonce.handlers.enrichment",
    "rideonce.handlers.consumer",
    "rideonce.handlers.reconciler",
)

_PROBE = (
    "import time; t, c = time.perf_counter(), time.process_time(); {code}; "
    "print(time.perf_counter() - t, time.process_time() - c)"
)


@cache
def function_environment() -> dict[str, str]:
    """The variables every function gets from the template's Globals (literal values: no Ref is used there)."""
    variables = load_raw()["Globals"]["Function"]["Environment"]["Variables"]
    return {name: str(value) for name, value in variables.items()}


def sample(code: str) -> tuple[float, float]:
    """Seconds one fresh interpreter spends on `code`: (wall, CPU)."""
    output = subprocess.run(  # noqa: S603
        [sys.executable, "-c", _PROBE.format(code=code)],
        cwd=ROOT,
        env={
            **function_environment(),
            "PYTHONPATH": str(ROOT / "functions"),
            "PATH": "/usr/bin:/bin",
            "AWS_DEFAULT_REGION": "us-east-1",
        },
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    wall, cpu = output.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def outbox_stream_batch(size: int = 10) -> list[dict[str, Any]]:
    """`size` INSERT records of real outbox items, several rides interleaved, as the Pipe hands them over."""
    from rideonce.dal.dynamo import to_item
    from rideonce.logic import events, rides
    from rideonce.models.requests import CreateRideRequest
    from rideonce.models.ride import Location, Money

    start = datetime(2026, 11, 22, 10, tzinfo=UTC)
    request = CreateRideRequest(rider_id="rider-1", pickup=Location(lat=1, lng=2), dropoff=Location(lat=3, lng=4))
    changes = []
    for number in range(size // 4 + 1):
        change = rides.request_ride(f"ride-{number}", request, start)
        changes.append(change)
        fare = Money(amount=Decimal("12.50"), currency="EUR")
        for action in ("accept", "start", "complete"):
            if action == "accept":
                change = rides.accept(change.ride, "driver", start)
            elif action == "start":
                change = rides.start(change.ride, start)
            else:
                change = rides.complete(change.ride, fare, start)
            changes.append(change)
    batch = []
    for sequence, change in enumerate(changes[:size]):
        item = to_item(
            events.outbox_record(change, start, "00-" + "1" * 32 + "-" + "2" * 16 + "-01", timedelta(days=7))
        )
        batch.append(
            {
                "eventID": f"{sequence:032x}",
                "eventName": "INSERT",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": {
                    "ApproximateCreationDateTime": 1795341600,
                    "NewImage": item,
                    "SequenceNumber": str(sequence),
                },
                "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/outbox/stream/2026-11-22T10:00:00.000",
            }
        )
    return batch


def enrichment_microseconds_per_record(repeats: int = 200) -> float:
    from local.aws.context import FakeLambdaContext
    from rideonce.handlers import enrichment

    batch = outbox_stream_batch()
    context: Any = FakeLambdaContext(function_name="EnrichmentFunction")
    events = enrichment.handler(batch, context)
    assert [event["metadata"]["source"] for event in events] == ["rideonce.rides"] * len(batch), "a record was rejected"
    runs = timeit.repeat(lambda: enrichment.handler(batch, context), number=10, repeat=repeats)
    return statistics.median(runs) / 10 / len(batch) * 1_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    codes = {**BASELINES, **{module: f"import {module}" for module in HANDLERS}}
    for code in codes.values():  # warm the file cache and the bytecode
        sample(code)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in codes}
    for _ in range(args.runs):
        for name, code in codes.items():
            times[name].append(sample(code))
    wall = {name: statistics.median(value[0] for value in values) for name, values in times.items()}
    cpu = {name: statistics.median(value[1] for value in values) for name, values in times.items()}
    print(f"median of {args.runs} fresh interpreters each ({sys.executable}); ratios as wall / CPU")
    for name in codes:
        ratios = ", ".join(f"{wall[name] / wall[b]:.2f} / {cpu[name] / cpu[b]:.2f} x {b}" for b in BASELINES)
        print(f"  {name:30s} {wall[name] * 1000:6.1f} ms wall {cpu[name] * 1000:6.1f} ms CPU   {ratios}")
    print(f"enrichment, warm: {enrichment_microseconds_per_record():.1f} us per record on a 10-record batch (median)")


if __name__ == "__main__":
    main()
