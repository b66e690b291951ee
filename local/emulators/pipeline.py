"""Everything AWS runs between the outbox table and the consumer's effects, stepped in this process.

moto stores the data and routes EventBridge events to SQS; what it does not run is driven here with
AWS's semantics: the Pipe (local/emulators/pipes/), the SQS event source mapping
(local/emulators/event_source.py) and TTL deletion (local/emulators/ttl.py), all on one clock, which
moto's SQS reads too while the pipeline is open (`with Pipeline(...)`, or `close()`). A `WallClock(0.01)`
compresses waiting: the queue's 120 s visibility timeout is over in 1.2 s; a `SimulatedClock` makes it
cost nothing, the pipeline moving the clock to the next moment something is due when it has nothing to do.

Not here: how each hop behaves (its own module), building the account (local/aws/), or faults (chaos
builds its runners over the seams they declare, local/chaos/seams.py).
"""

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from local.aws.moto_patches import clock_installed
from local.aws.stack import LocalStack
from local.aws.transport import Transport
from local.emulators.clock import Clock, WallClock
from local.emulators.event_source import BatchOutcome, SqsPoller, sqs_mappings
from local.emulators.pipes.runner import pipe_runners
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


DEMO_SCALE = 0.01
"""The clock's scale when none is given: the demo's, AWS's waits a hundred times shorter."""


class Pipeline:
    def __init__(
        self,
        local: LocalStack,
        clock: Clock | None = None,
        on_batch: Callable[[str, BatchOutcome], None] | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.local = local
        self.clock: Clock = clock or WallClock(DEMO_SCALE)
        self._installed = ExitStack()
        self._installed.enter_context(clock_installed(self.clock))
        stack = local.stack
        # The Pipe, the event source mapping and TTL are AWS's own services, not clients of its public
        # endpoints: they reach moto in-process, while the functions keep going through AWS_ENDPOINT_URL.
        transport = Transport(in_process=True)
        sqs = transport.sqs()
        self._sqs = sqs
        self.pipes = pipe_runners(stack, local.functions, clock=self.clock, on_event=on_event, transport=transport)
        self.pollers = {
            mapping.function_logical_id: SqsPoller(
                sqs,
                stack.ref(mapping.queue_logical_id),
                mapping,
                local.functions[mapping.function_logical_id].invoke,
                clock=self.clock,
            )
            for mapping in sqs_mappings(stack)
        }
        self.consumer_stats = {name: ConsumerStats() for name in self.pollers}
        self._on_batch = on_batch
        self.ttl = TtlSweeper(transport.dynamodb(), ttl_attributes(stack), clock=self.clock)

    def close(self) -> None:
        """moto's SQS reads the clock it read before this pipeline was made."""
        self._installed.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

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
        """Pump until the stream is read, every queue is empty and no message waits to be retried.

        Between rounds that found nothing to do, the clock sleeps until the next moment something is due
        (a batch's window or retry, a message visible again); `timeout_seconds` is this machine's time.
        """
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.pump() == 0 and self.in_flight() == 0 and not any(pipe.busy() for pipe in self.pipes):
                return
            self._idle(idle_sleep)
        raise TimeoutError(f"the pipeline did not go quiet within {timeout_seconds} s")

    def next_due(self) -> float | None:
        """The clock's next moment something is due: a Pipe batch, or a message visible on a consumer queue."""
        moments = [pipe.next_due() for pipe in self.pipes]
        moments += [poller.next_visible_at() for poller in self.pollers.values()]
        return min((moment for moment in moments if moment is not None), default=None)

    def _idle(self, idle_sleep: float) -> None:
        due = self.next_due()
        if due is None or due <= self.clock.now():
            time.sleep(idle_sleep)  # a record on its way through the stream: a real pause
        else:
            self.clock.sleep_until(due)
