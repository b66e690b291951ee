"""The end-to-end suite's target: a deployed stack when AWS_SAM_STACK_NAME names one, else the local stack.

`make test-deployed` sets AWS_SAM_STACK_NAME (and a region and credentials come from the usual AWS
environment); `make test` leaves it unset, so the same suite runs against a local stack started here,
found through the outputs file it writes.
"""

import os
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest

from local.aws.stack import LocalStack
from local.emulators.clock import WallClock
from local.emulators.http_api import make_handler, run_pipeline
from local.emulators.pipeline import Pipeline
from ops.target import Target

STACK_VARIABLE = "AWS_SAM_STACK_NAME"


def deployed_stack_name() -> str | None:
    return os.environ.get(STACK_VARIABLE) or None


@pytest.fixture(autouse=True)
def _offline_aws() -> None:
    """Replaces the suite-wide fake credentials: the target carries its own (real ones, or the local stack's)."""


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    stack_name = deployed_stack_name()
    if stack_name:
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        assert region, "set AWS_REGION (or AWS_DEFAULT_REGION) to the deployed stack's region"
        yield Target.from_stack(stack_name, boto3.session.Session(region_name=region))
        return
    yield from _local_target(tmp_path_factory.mktemp("local-target") / "outputs.json")


def _local_target(outputs_file: Path) -> Iterator[Target]:
    """The local stack with its HTTP API served and its pipeline running, as `make local` runs them."""
    saved = dict(os.environ)
    local = LocalStack.start(outputs_file=None, environment_overrides={"POWERTOOLS_METRICS_DISABLED": "true"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(local))
    stop = threading.Event()
    pipeline = Pipeline(local, WallClock(0.01))
    threads = [
        threading.Thread(target=server.serve_forever, daemon=True),
        threading.Thread(target=run_pipeline, args=(pipeline, stop), daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        local.write_outputs(outputs_file, api_url=f"http://127.0.0.1:{server.server_address[1]}")
        yield Target.from_outputs_file(outputs_file)
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        for thread in threads:
            thread.join(timeout=10)
        pipeline.close()
        local.stop()
        os.environ.clear()
        os.environ.update(saved)
