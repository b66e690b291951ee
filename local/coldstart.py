"""Cold-start import cost of each handler module, as a ratio to boto3's, measured in the same run.

Each sample is a fresh interpreter that times one import with perf_counter; the handlers and the
baselines alternate, so load on a shared machine touches both alike. Medians are reported.
"""

import argparse
import statistics
import subprocess
import sys

from local.template import ROOT

BASELINES = {
    "import boto3": "import boto3",
    'boto3.client("dynamodb")': 'import boto3; boto3.client("dynamodb", region_name="us-east-1")',
}
HANDLERS = ("rideonce.handlers.api", "rideonce.handlers.enrichment", "rideonce.handlers.consumer")

_PROBE = "import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"


def sample(code: str) -> float:
    output = subprocess.run(  # noqa: S603
        [sys.executable, "-c", _PROBE.format(code=code)],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "functions"), "PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    codes = {**BASELINES, **{module: f"import {module}" for module in HANDLERS}}
    for code in codes.values():  # warm the file cache and the bytecode
        sample(code)
    times: dict[str, list[float]] = {name: [] for name in codes}
    for _ in range(args.runs):
        for name, code in codes.items():
            times[name].append(sample(code))
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"median of {args.runs} fresh interpreters each ({sys.executable})")
    for name, value in medians.items():
        ratios = ", ".join(f"{value / medians[base]:.2f} x {base}" for base in BASELINES)
        print(f"  {name:32s} {value * 1000:7.1f} ms   {ratios}")


if __name__ == "__main__":
    main()
