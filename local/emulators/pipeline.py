"""Everything AWS runs between the outbox table and the consumer's effects, stepped in this process.

moto stores the data and routes EventBridge events to SQS; what it does not run is driven here with
AWS's semantics: the Pipe (local/emulators/pipe.py), the SQS event source mapping
(local/emulators/event_source.py) and TTL deletion (local/emulators/ttl.py). `time_scale` compresses
waiting (visibility timeouts, batching windows): 0.01 turns the queue's 120 s visibility timeout into 1.2 s.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3

from local.aws.stack import LocalStack
from local.emulators.event_source import BatchOutcome, SqsPoller, sqs_mappings
from local.emulators.pipe import pipe_runners
from local.emulators.ttl import TtlSweeper, ttl_attributes


@dataclass
class ConsumerStats:
    batches: int = 0
    deliveries: int = 0
    succeeded: int = 0
    failed: int = 0
    invocation_errors: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, outcome: BatchOutcome) -> None:
        self.batches += 1
        self.deliveries += outcome.received
        self.succeeded += len(outcome.succeeded)
        self.failed += len(outcome.failed)
        if outcome.raised is not None:
            self.invocation_errors += 1
            self.errors.append(repr(outcome.raised))


class Pipeline:
    def __init__(
        self,
        local: LocalStack,
        time_scale: float = 0.01,
        on_batch: Callable[[str, BatchOutcome], None] | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        clock_offset: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.local = local
        stack = local.stack
        sqs = boto3.client("sqs")
        self._sqs = sqs
        now = lambda: time.time() + clock_offset()  # noqa: E731
        self.pipes = pipe_runners(stack, local.functions, time_scale=time_scale, now=now, on_event=on_event)
        self.pollers = {
            mapping.function_logical_id: SqsPoller(
                sqs,
                stack.ref(mapping.queue_logical_id),
                mapping,
                local.functions[mapping.function_logical_id].invoke,
                time_scale=time_scale,
            )
            for mapping in sqs_mappings(stack)
        }
        self.consumer_stats = {name: ConsumerStats() for name in self.pollers}
        self._on_batch = on_batch
        self.ttl = TtlSweeper(boto3.client("dynamodb"), ttl_attributes(stack), clock=now)

    def pump(self) -> int:
        """One round: the Pipe reads what the stream has, then each event source mapping drains its queue."""
        work = sum(pipe.poll() for pipe in self.pipes)
        for name, poller in self.pollers.items():
            while (outcome := poller.poll()) is not None:
                work += outcome.received
                self.consumer_stats[name].add(outcome)
                if self._on_batch:
                    self._on_batch(name, outcome)
        return work

    def in_flight(self) -> int:
        """Messages still on the consumer queues, visible or not (a deferred one is invisible for a while)."""
        total = 0
        for poller in self.pollers.values():
            attributes = self._sqs.get_queue_attributes(
                QueueUrl=poller.queue_url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
            total += int(attributes["ApproximateNumberOfMessages"]) + int(
                attributes["ApproximateNumberOfMessagesNotVisible"]
            )
        return total

    def run_until_quiet(self, timeout_seconds: float = 600, idle_sleep: float = 0.05) -> None:
        """Pump until the stream is read, every queue is empty and no message waits to be retried."""
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.pump() == 0 and self.in_flight() == 0 and not any(pipe.busy() for pipe in self.pipes):
                return
            time.sleep(idle_sleep)
        raise TimeoutError(f"the pipeline did not go quiet within {timeout_seconds} s")
