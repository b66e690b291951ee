"""A local stack per test, started in this process, with its outputs file for the operations command.

The pipeline is stepped by the test (`Pipeline.run_until_quiet`), not by a thread, so a test can lose
events on purpose (relay them, then purge the queue) and know when every hop has finished.
"""

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from local.aws.stack import LocalStack
from local.emulators.clock import WallClock
from local.emulators.pipeline import Pipeline
from local.workload.traffic import ApiCaller
from ops import cli
from ops.commands import Report
from ops.target import Target


@dataclass
class Ops:
    """The local stack, its pipeline and API, and the operations command pointed at its outputs file."""

    local: LocalStack
    pipeline: Pipeline
    api: ApiCaller
    outputs_file: Path

    def run(self, *argv: str) -> Report:
        """`python -m ops --outputs FILE argv...`, answering the report it printed."""
        args = cli.parser().parse_args(["--outputs", str(self.outputs_file), *argv])
        return cli.run(args, cli.target_of(args))

    @property
    def target(self) -> Target:
        return Target.from_outputs_file(self.outputs_file)

    def relay_only(self) -> None:
        """Run the Pipe until the stream is read, then lose what it put on the bus: purge the consumer's queue."""
        while sum(pipe.poll() for pipe in self.pipeline.pipes) or any(pipe.busy() for pipe in self.pipeline.pipes):
            pass
        self.target.sqs().purge_queue(QueueUrl=self.target.outputs["RideEventsQueueUrl"])


@pytest.fixture
def ops(tmp_path: Path) -> Iterator[Ops]:
    saved = dict(os.environ)
    outputs_file = tmp_path / "outputs.json"
    local = LocalStack.start(outputs_file=outputs_file, environment_overrides={"POWERTOOLS_METRICS_DISABLED": "true"})
    pipeline = Pipeline(local, WallClock(0.01))
    try:
        yield Ops(local, pipeline, ApiCaller(local.stack, local.functions["ApiFunction"]), outputs_file)
    finally:
        pipeline.close()
        local.stop()
        os.environ.clear()
        os.environ.update(saved)
