"""One consumer design behind the ConsumerFunction's Lambda handler, fed from the simulated queue under faults.

The handler runs unchanged, built by its own `batch_handler` with the design as its consumer (through
`FaultedConsumer`), the simulated queue's ChangeMessageVisibility and a batch processor that counts each
failed record; around it the consumer-side faults: redeliveries, two consumers of one
message, messages held back and crashes, decided by the same schedule for every design. Faults never
fire on one of a message's last two receives before the DLQ: at 30% per hop a healthy message would
otherwise park by bad luck alone, which says nothing about a design. A message parks only when the
consumer itself keeps refusing it, as with poison.
"""

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.batch.base import FailureResponse
from aws_lambda_powertools.utilities.batch.exceptions import ExceptionInfo

from local.aws.functions import LocalFunction
from local.chaos.bus_faults import Delivery
from local.chaos.consumer_faults import ChaosSteps, EffectLog, FaultedConsumer
from local.chaos.gates import PRIMARY, SECOND, Turnstile
from local.chaos.plan import Crash, Fault, FaultPlan
from local.chaos.reconcile import ReconcilerSchedule
from local.chaos.seams import RecordConsumer, batch_handler, handle_record
from local.chaos.simqueue import SimClock, SimMessage, SimQueue, SimSqs, lambda_record
from local.emulators.event_source import SqsMapping, failed_ids
from rideonce.dal.queue import MessageVisibility
from rideonce.logic.consumer import Verdict, parse_message

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

INVOCATION_SECONDS = 0.05
"""Simulated time one consumer invocation takes."""

HOLD_SECONDS = (20.0, 100.0)
"""How long a message held back (out of order) waits: under the visibility timeout, so successors retry once."""

QUIET_LIMIT = timedelta(days=30)


@dataclass
class DesignUnderTest:
    """A consumer design's two instances (the handler's and a second consumer's), each with its own steps."""

    name: str
    primary: RecordConsumer
    second: RecordConsumer
    primary_steps: ChaosSteps
    second_steps: ChaosSteps
    projection_table: str
    accounts_table: str
    log: EffectLog
    expected_failures: frozenset[str]
    """Record failures the design raises on purpose (the message is retried); anything else is unhandled."""


class FailureCounter(BatchProcessor):
    """The handler's batch processor, as deployed, telling `on_failure` of every record that failed."""

    def __init__(self, on_failure: Callable[[BaseException], None]) -> None:
        super().__init__(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        self._on_failure = on_failure

    def failure_handler(self, record: Any, exception: ExceptionInfo) -> FailureResponse:
        if exception[1] is not None:
            self._on_failure(exception[1])
        return super().failure_handler(record, exception)


@dataclass
class PhaseStats:
    deliveries: int = 0
    dropped: int = 0
    failed: int = 0
    crashed_invocations: int = 0
    not_deleted: int = 0
    concurrent_pairs: int = 0
    held_back: int = 0
    republished: int = 0
    """Deliveries of events the reconciler republished."""
    parked: int = 0
    first_effect: int = 0
    """Index in the design's effect log where the phase started."""
    failures: Counter[str] = field(default_factory=Counter)


class ConsumerRun:
    """One design behind the ConsumerFunction's handler, fed from a `SimQueue` with the consumer-side faults."""

    def __init__(
        self,
        design: DesignUnderTest,
        plan: FaultPlan,
        clock: SimClock,
        function: LocalFunction,
        mapping: SqsMapping,
        queue: SimQueue,
        schedule: ReconcilerSchedule | None = None,
    ) -> None:
        self.design = design
        self.schedule = schedule
        self._plan = plan
        self._clock = clock
        self._function = function
        self._mapping = mapping
        self.queue = queue
        self.phases: dict[str, PhaseStats] = {}
        self._phase = PhaseStats()
        self.unhandled: list[str] = []
        self._lock = threading.Lock()
        self.redriven_healthy = 0
        """Ride events (not poison) the final redrive took from the DLQ."""
        self.applied_before_redrive: int | None = None
        """Effect log entries before the redrive: what took effect with no manual step."""
        self._primary = FaultedConsumer(design.primary, design.primary_steps, self._verdict)
        self._second = FaultedConsumer(design.second, design.second_steps, self._verdict)
        visibility = MessageVisibility(cast("SQSClient", SimSqs(queue)))
        primary = self._primary
        self._handler = batch_handler(
            lambda record: handle_record(record, lambda: primary, lambda: visibility),
            FailureCounter(self._failure),
        )
        """The ConsumerFunction's handler with the design as its consumer, on the simulated queue."""

    @property
    def _last_faulty_receive(self) -> int:
        """Faults fire on a message's receives up to this one; its last two before the DLQ are fault-free."""
        return self.queue.max_receive_count - 2

    def _verdict(self, verdict: Verdict) -> None:
        with self._lock:
            self._phase.dropped += verdict is Verdict.DUPLICATE

    def _failure(self, error: BaseException) -> None:
        kind = type(error).__name__
        with self._lock:
            self._phase.failed += 1
            self._phase.failures[kind] += 1
            if kind not in self.design.expected_failures:
                self.unhandled.append(f"{kind}: {error}")

    def run_phase(self, name: str, deliveries: list[Delivery]) -> None:
        """Send `deliveries` (some held back), then run until the queue is empty."""
        self._phase = PhaseStats(first_effect=len(self.design.log.projections))
        self.phases[name] = self._phase
        self._send(deliveries)
        self._until_quiet()

    def _send(self, deliveries: list[Delivery]) -> None:
        """Onto the queue, some held back so later versions arrive first."""
        low, high = HOLD_SECONDS
        for delivery in deliveries:
            delay = 0.0
            if self._plan.occurs(Fault.OUT_OF_ORDER, delivery.subject):
                delay = low + (high - low) * self._plan.draw(Fault.OUT_OF_ORDER, delivery.subject, -1)
                self._phase.held_back += 1
            self.queue.send(delivery.body, delivery.subject, delivery.poison, delay)

    def redrive(self) -> None:
        """Move everything parked in the DLQ back to the queue (a message move task), then run until quiet."""
        assert self.queue.dead_letter is not None
        parked = self.queue.dead_letter.take_all()
        self.redriven_healthy = sum(not message.poison for message in parked)
        self.applied_before_redrive = len(self.design.log.projections)
        self.run_phase("DLQ redrive", [Delivery(m.body, m.subject, m.poison) for m in parked])

    def _until_quiet(self) -> None:
        deadline = self._clock.now() + QUIET_LIMIT.total_seconds()
        parked_before = self.queue.moved_to_dead_letter
        while True:
            if self.schedule is not None:
                republished = self.schedule.run_due()
                self._phase.republished += len(republished)
                self._send(republished)
            if self._clock.now() > deadline:
                raise RuntimeError(f"{self.design.name}: the consumer queue did not go quiet in {QUIET_LIMIT}")
            batch = self.queue.receive(self._mapping.batch_size)
            if not batch:
                tick = self.schedule.pending() if self.schedule is not None else None
                upcoming = [moment for moment in (self.queue.next_visible_at(), tick) if moment is not None]
                if not upcoming:
                    break
                self._clock.advance_to(min(upcoming))
                continue
            pairs = [
                message
                for message in batch
                if message.receive_count + 1 <= self._last_faulty_receive
                and self._plan.occurs(Fault.CONCURRENT_CONSUMERS, message.subject)
            ]
            alone = [message for message in batch if message not in pairs]
            if alone:
                self._settle(alone, self._invoke(alone))
            for message in pairs:
                self._concurrently(message)
            self._clock.advance(INVOCATION_SECONDS)
        self._phase.parked = self.queue.moved_to_dead_letter - parked_before

    def _invoke(self, messages: list[SimMessage], gate: Turnstile | None = None) -> set[str]:
        """One invocation of the function with these messages; the ids of those that must stay on the queue."""
        steps = self.design.primary_steps
        steps.gate = gate
        steps.faults_allowed = all(m.receive_count <= self._last_faulty_receive for m in messages)
        ids = [message.message_id for message in messages]
        with self._lock:
            self._phase.deliveries += len(messages)
        try:
            event = {"Records": [self._record(message) for message in messages]}
            response = self._function.invoke(event, handler=self._handler)
        except Crash:
            with self._lock:
                self._phase.crashed_invocations += 1
            return set(ids)
        except Exception as error:  # a function error: Lambda retries the whole batch
            with self._lock:
                self.unhandled.append(f"invocation failed: {type(error).__name__}: {error}")
            return set(ids)
        finally:
            steps.gate = None
        return self._failed_ids(response, ids)

    def _settle(self, messages: list[SimMessage], failed: set[str]) -> None:
        """Lambda's side of a partial batch response: delete what succeeded, unless the delete is lost."""
        for message in messages:
            if message.message_id in failed:
                continue
            if message.receive_count <= self._last_faulty_receive and self._plan.occurs(
                Fault.NOT_DELETED, message.subject
            ):
                self._phase.not_deleted += 1
                continue
            self.queue.delete(message)

    def _concurrently(self, message: SimMessage) -> None:
        """Two consumers with one message at once: the handler with it, and the design's second instance.

        One message received twice (its visibility timeout ran out under the first consumer, or SQS handed it
        to two receivers): only the newest receipt handle, the second consumer's, deletes it. So the message
        goes when the second consumer succeeds, and otherwise stays to be received again.
        """
        self._phase.concurrent_pairs += 1
        gate = Turnstile()
        self.queue.receive_again(message)
        second_deletes: list[bool] = []

        def primary() -> None:
            try:
                self._invoke([message], gate)  # its receipt handle is stale: it cannot delete the message
            except BaseException as error:  # a harness fault: reported, never left in a thread
                self.unhandled.append(f"primary consumer: {error!r}")
            finally:
                gate.leave(PRIMARY)

        def second() -> None:
            try:
                second_deletes.append(self._second_consumer(message, gate))
            except BaseException as error:  # a harness fault: reported, never left in a thread
                self.unhandled.append(f"second consumer: {error!r}")
            finally:
                gate.leave(SECOND)

        threads = [threading.Thread(target=primary), threading.Thread(target=second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if gate.timed_out:
            self.unhandled.append(f"the turnstile of {message.subject} timed out")
        self._settle([message], set() if second_deletes == [True] else {message.message_id})

    def _second_consumer(self, message: SimMessage, gate: Turnstile) -> bool:
        """The second consumer: parse and handle the message at record level; True when it would delete it."""
        steps = self.design.second_steps
        steps.gate = gate
        with self._lock:
            self._phase.deliveries += 1
        try:
            self._second.handle(parse_message(message.body))
        except Crash:
            with self._lock:
                self._phase.crashed_invocations += 1
            return False
        except Exception as error:  # the message stays for a retry
            self._failure(error)
            return False
        finally:
            steps.gate = None
        return True

    def _failed_ids(self, response: Any, ids: list[str]) -> set[str]:
        return failed_ids(response, ids, self._mapping.report_batch_item_failures)

    def _record(self, message: SimMessage) -> dict[str, Any]:
        return lambda_record(message, self._mapping.queue_arn)
