"""One consumer design behind the ConsumerFunction's Lambda handler, fed from moto's queue under faults.

The handler runs unchanged, built by its own `batch_handler` with the design as its consumer (through
`FaultedConsumer`), an SQS client for its ChangeMessageVisibility and a batch processor that counts each
failed record. It is invoked by the SQS event source emulator (local/emulators/event_source.py) on a
copy of the template's consumer queue and DLQ, in simulated time (the clock moto's SQS reads); through
the event source's hooks come the consumer-side faults: redeliveries, two consumers of one message,
messages held back and crashes, decided by the same schedule for every design. Faults never
fire on one of a message's last two receives before the DLQ: at 30% per hop a healthy message would
otherwise park by bad luck alone, which says nothing about a design. A message parks only when the
consumer itself keeps refusing it, as with poison.
"""

import heapq
import itertools
import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.batch.base import FailureResponse
from aws_lambda_powertools.utilities.batch.exceptions import ExceptionInfo

from local.aws.functions import LocalFunction
from local.chaos.bus_faults import Delivery, committed_at
from local.chaos.consumer_faults import ChaosSteps, EffectLog, FaultedConsumer
from local.chaos.gates import PRIMARY, SECOND, Turnstile
from local.chaos.plan import Crash, Fault, FaultPlan
from local.chaos.reconcile import ReconcilerSchedule
from local.chaos.seams import RecordConsumer, batch_handler, handle_record
from local.emulators.clock import SimulatedClock
from local.emulators.event_source import Invoke, SqsMapping, SqsPoller, failed_ids, receive_again
from rideonce.dal.queue import MessageVisibility
from rideonce.logic.consumer import Verdict, parse_message

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

INVOCATION_SECONDS = 0.05
"""Simulated time one consumer invocation takes."""

HOLD_SECONDS = (20.0, 100.0)
"""How long a message held back (out of order) waits before it is sent: under the visibility timeout, so
successors retry once. Fractional, so held back by the run, not by SQS's DelaySeconds (whole seconds)."""

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
    """One design behind the ConsumerFunction's handler, invoked by the SQS event source on moto's queue with the
    consumer-side faults; `sqs` reaches moto (the event source's client and the handler's)."""

    def __init__(
        self,
        design: DesignUnderTest,
        plan: FaultPlan,
        clock: SimulatedClock,
        function: LocalFunction,
        mapping: SqsMapping,
        sqs: "SQSClient",
        queues: tuple[str, str],
        schedule: ReconcilerSchedule | None = None,
    ) -> None:
        """`queues`: the URLs of the consumer queue (the one `mapping` names) and of its DLQ."""
        self.design = design
        self.schedule = schedule
        self._plan = plan
        self._clock = clock
        self._sqs = sqs
        self.queue_url, self.dead_letter_url = queues
        self.phases: dict[str, PhaseStats] = {}
        self._phase = PhaseStats()
        self.unhandled: list[str] = []
        self._lock = threading.Lock()
        self.redriven_healthy = 0
        """Ride events (not poison) the final redrive took from the DLQ."""
        self.applied_before_redrive: int | None = None
        """Effect log entries before the redrive: what took effect with no manual step."""
        self.sent: dict[str, Delivery] = {}
        """Every message sent to the queue, by MessageId (which it keeps in the DLQ)."""
        self._held: list[tuple[float, int, Delivery]] = []
        self._order = itertools.count()
        self._receives: dict[str, int] = {}
        """Receives of the messages in the batch being handled, a second consumer's included."""
        self._primary = FaultedConsumer(design.primary, design.primary_steps, self._verdict)
        self._second = FaultedConsumer(design.second, design.second_steps, self._verdict)
        visibility = MessageVisibility(sqs)
        primary = self._primary
        handler = batch_handler(
            lambda record: handle_record(record, lambda: primary, lambda: visibility),
            FailureCounter(self._failure),
        )
        """The ConsumerFunction's handler with the design as its consumer."""
        redrive = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["RedrivePolicy"])
        self.max_receive_count = int(json.loads(redrive["Attributes"]["RedrivePolicy"])["maxReceiveCount"])
        self.poller = SqsPoller(
            sqs,
            self.queue_url,
            mapping,
            lambda event: function.invoke(event, handler=handler),
            clock=clock,
            around_invoke=self._around_invoke,
            settles=self._settles,
        )

    @property
    def _last_faulty_receive(self) -> int:
        """Faults fire on a message's receives up to this one; its last two before the DLQ are fault-free."""
        return self.max_receive_count - 2

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

    def run_phase(self, name: str, deliveries: list[Delivery], at_commit: bool = False) -> None:
        """Send `deliveries` (some held back), then run until the queue is empty.

        `at_commit`: each delivery reaches the queue when the change it carries was committed (by the
        clock, which started with the upstream), as on AWS, where no event precedes its commit; otherwise
        all at once, as a replay or a redrive sends them.
        """
        self._phase = PhaseStats(first_effect=len(self.design.log.projections))
        self.phases[name] = self._phase
        self._send(deliveries, at_commit)
        self._until_quiet()

    def _send(self, deliveries: list[Delivery], at_commit: bool = False) -> None:
        """Onto the queue, now or at their commit, some held back so later versions arrive first."""
        low, high = HOLD_SECONDS
        now = self._clock.now()
        for delivery in deliveries:
            committed = committed_at(delivery.body) if at_commit else None
            arrival = max(now, committed or now)
            if self._plan.occurs(Fault.OUT_OF_ORDER, delivery.subject):
                arrival += low + (high - low) * self._plan.draw(Fault.OUT_OF_ORDER, delivery.subject, -1)
                self._phase.held_back += 1
            if arrival > now:
                heapq.heappush(self._held, (arrival, next(self._order), delivery))
            else:
                self._send_now(delivery)

    def _send_now(self, delivery: Delivery) -> None:
        sent = self._sqs.send_message(QueueUrl=self.queue_url, MessageBody=delivery.body)
        self.sent[sent["MessageId"]] = delivery

    def _release_held(self) -> None:
        """Send every delivery whose moment has come (held back, or not yet committed), in their moments' order."""
        now = self._clock.now()
        while self._held and self._held[0][0] <= now:
            self._send_now(heapq.heappop(self._held)[2])

    def parked(self) -> list[Delivery]:
        """What the DLQ holds, read and left there (each read hides it for the DLQ's visibility timeout)."""
        return [self.sent[message["MessageId"]] for message in self._read_dead_letters(delete=False)]

    def redrive(self) -> None:
        """Move everything parked in the DLQ back to the queue (a message move task), then run until quiet."""
        parked = [self.sent[message["MessageId"]] for message in self._read_dead_letters(delete=True)]
        self.redriven_healthy = sum(not delivery.poison for delivery in parked)
        self.applied_before_redrive = len(self.design.log.projections)
        self.run_phase("DLQ redrive", parked)

    def _read_dead_letters(self, delete: bool) -> list[Any]:
        messages: list[Any] = []
        while received := self._sqs.receive_message(
            QueueUrl=self.dead_letter_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", []):
            messages += received
            if delete:
                self._sqs.delete_message_batch(
                    QueueUrl=self.dead_letter_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(received)],
                )
        return messages

    def _dead_letter_depth(self) -> int:
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self.dead_letter_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def _until_quiet(self) -> None:
        """The event source invokes as soon as a message is visible; in between the clock jumps to whatever
        comes next: a message visible again, a held-back delivery, a reconciler tick."""
        deadline = self._clock.now() + QUIET_LIMIT.total_seconds()
        parked_before = self._dead_letter_depth()
        while True:
            if self.schedule is not None:
                republished = self.schedule.run_due()
                self._phase.republished += len(republished)
                self._send(republished)
            self._release_held()
            now = self._clock.now()
            if now > deadline:
                raise RuntimeError(f"{self.design.name}: the consumer queue did not go quiet in {QUIET_LIMIT}")
            # A batch whenever a message is visible; only an empty receive asks when one will be, a scan of
            # the whole queue that a poll before every batch would repeat.
            if self.poller.poll() is not None:
                continue
            due = self.poller.next_batch_at(whole_window=False)
            if due is not None and due <= now:
                raise RuntimeError(f"{self.design.name}: a message due at {due} was not received at {now}")
            tick = self.schedule.pending() if self.schedule is not None else None
            held = self._held[0][0] if self._held else None
            upcoming = [moment for moment in (due, tick, held) if moment is not None]
            if not upcoming:
                break
            self._clock.advance_to(min(upcoming))
        self._phase.parked = self._dead_letter_depth() - parked_before

    def _around_invoke(self, event: dict[str, Any], invoke: Invoke) -> dict[str, Any]:
        """One batch as Lambda hands it over, under the faults: the records one consumer alone has go to the
        function in one invocation; each record two consumers have at once goes to the function and to the
        design's second instance on threads of their own. The answer merges their partial batch responses."""
        records: list[dict[str, Any]] = event["Records"]
        self._receives = {r["messageId"]: int(r["attributes"]["ApproximateReceiveCount"]) for r in records}
        pairs = [
            record
            for record in records
            if self._receives[record["messageId"]] + 1 <= self._last_faulty_receive
            and self._plan.occurs(Fault.CONCURRENT_CONSUMERS, self._subject(record))
        ]
        alone = [record for record in records if record not in pairs]
        failed: set[str] = set()
        if alone:
            failed |= self._invoke(alone, invoke)
        for record in pairs:
            failed |= self._concurrently(record, invoke)
        self._clock.advance(INVOCATION_SECONDS)
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in sorted(failed)]}

    def _subject(self, record: dict[str, Any]) -> str:
        return self.sent[record["messageId"]].subject

    def _invoke(self, records: list[dict[str, Any]], invoke: Invoke, gate: Turnstile | None = None) -> set[str]:
        """One invocation of the function with these records; the ids of those that must stay on the queue."""
        steps = self.design.primary_steps
        steps.gate = gate
        steps.faults_allowed = all(self._receives[r["messageId"]] <= self._last_faulty_receive for r in records)
        ids = [record["messageId"] for record in records]
        with self._lock:
            self._phase.deliveries += len(records)
        try:
            response = invoke({"Records": records})
        except Crash:  # a killed invocation: Lambda retries the whole batch
            with self._lock:
                self._phase.crashed_invocations += 1
            return set(ids)
        except Exception as error:  # a function error: Lambda retries the whole batch
            with self._lock:
                self.unhandled.append(f"invocation failed: {type(error).__name__}: {error}")
            return set(ids)
        finally:
            steps.gate = None
        return failed_ids(response, ids, self.poller.mapping.report_batch_item_failures)

    def _settles(self, record: dict[str, Any]) -> bool:
        """Lambda's delete of a message the function processed, unless the fault plan loses it."""
        if self._receives.get(record["messageId"], 0) <= self._last_faulty_receive and self._plan.occurs(
            Fault.NOT_DELETED, self._subject(record)
        ):
            self._phase.not_deleted += 1
            return False
        return True

    def _concurrently(self, record: dict[str, Any], invoke: Invoke) -> set[str]:
        """Two consumers with one message at once: the handler with it, and the design's second instance.

        One message received twice (its visibility timeout ran out under the first consumer, or SQS handed it
        to two receivers): only the newest receipt handle, the second consumer's, deletes it. So the message
        goes when the second consumer succeeds, and otherwise stays to be received again.
        """
        self._phase.concurrent_pairs += 1
        gate = Turnstile()
        message_id = record["messageId"]
        receive_again(self.poller.mapping.queue_arn, message_id)
        self._receives[message_id] += 1
        second_deletes: list[bool] = []

        def primary() -> None:
            try:
                self._invoke([record], invoke, gate)  # its receipt handle is stale: it cannot delete the message
            except BaseException as error:  # a harness fault: reported, never left in a thread
                self.unhandled.append(f"primary consumer: {error!r}")
            finally:
                gate.leave(PRIMARY)

        def second() -> None:
            try:
                second_deletes.append(self._second_consumer(record, gate))
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
            self.unhandled.append(f"the turnstile of {self._subject(record)} timed out")
        return set() if second_deletes == [True] else {message_id}

    def _second_consumer(self, record: dict[str, Any], gate: Turnstile) -> bool:
        """The second consumer: parse and handle the message at record level; True when it would delete it."""
        steps = self.design.second_steps
        steps.gate = gate
        with self._lock:
            self._phase.deliveries += 1
        try:
            self._second.handle(parse_message(record["body"]))
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
