"""Faults at the last hop, queue -> consumer, through the seams the designs and the handler declare.

- `ChaosSteps` is a design's `Steps` (local/designs/steps.py): a crash where the design says it may die
  between two requests, a `Turnstile` at its check and its writes so that two consumers of one message
  both check before either writes, and an `EffectLog` entry for every effect it wrote.
- `FaultedConsumer` is what the ConsumerFunction's record handler is given as its `RecordConsumer`: the
  design, with a crash after parsing and one after the record was handled, before SQS deletes it.

One `ChaosSteps` per design instance: the handler's (the primary) and the second consumer's each have
their own role, gate and subject, so nothing passes between threads on the side. A crash is a `Crash`,
a `BaseException`: like a killed process, nothing in the code under test catches it.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from local.chaos.gates import PRIMARY, SECOND, Turnstile
from local.chaos.plan import Crash, Fault, FaultPlan
from local.chaos.seams import CrashPoint, RecordConsumer
from rideonce.logic.consumer import Verdict
from rideonce.models.events import RideEvent

CRASHES = {
    CrashPoint.AFTER_CHECK: Fault.CRASH_AFTER_READ,
    CrashPoint.MID_EFFECT: Fault.CRASH_MID_EFFECT,
    CrashPoint.AFTER_EFFECT: Fault.CRASH_AFTER_EFFECT,
    CrashPoint.AFTER_RECORD: Fault.CRASH_AFTER_RECORD,
}
"""The fault that may fire at each point a design declares."""


@dataclass
class EffectLog:
    """Every effect write a design made, in order, as its steps reported them.

    The order check reads this, not timestamps: it is what was actually applied, and when.
    """

    projections: list[tuple[str, int]] = field(default_factory=list)
    charges: list[tuple[str, int, Decimal]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def projection(self, event: RideEvent) -> None:
        with self._lock:
            self.projections.append((event.data.ride_id, event.data.version))

    def charge(self, event: RideEvent, amount: Decimal) -> None:
        with self._lock:
            self.charges.append((event.data.ride_id, event.data.version, amount))


class ChaosSteps:
    """One design instance's steps under the fault plan: the primary consumer's, or the second's.

    `subject` is the event being handled (set by `FaultedConsumer`); `gate` the turnstile while two
    consumers hold one message; `faults_allowed` is cleared for a delivery on one of a message's last two
    receives before the DLQ, so that a message parks only when the consumer itself keeps refusing it.
    """

    def __init__(self, plan: FaultPlan, log: EffectLog, role: str) -> None:
        self._plan = plan
        self._log = log
        self.role = role
        self.subject = ""
        self.gate: Turnstile | None = None
        self.faults_allowed = True

    def key(self) -> str:
        """The fault subject: the second consumer of a message has attempts of its own (threads race)."""
        return self.subject if self.role == PRIMARY else f"{self.subject}#{SECOND}"

    def crash_at(self, fault: Fault) -> None:
        """Maybe a `Crash` here: `fault`'s next attempt for this subject, decided by the plan."""
        if self.faults_allowed and self._plan.occurs(fault, self.key()):
            raise Crash(fault, self.key())

    def check[T](self, run: Callable[[], T]) -> T:
        return self._through(Turnstile.READ, run)

    def write[T](self, run: Callable[[], T]) -> T:
        return self._through(Turnstile.WRITE, run)

    def reached(self, point: CrashPoint) -> None:
        self.crash_at(CRASHES[point])

    def projected(self, event: RideEvent) -> None:
        self._log.projection(event)

    def charged(self, event: RideEvent, amount: Decimal) -> None:
        self._log.charge(event, amount)

    def _through[T](self, stage: str, run: Callable[[], T]) -> T:
        """`run` through the turnstile at `stage`, the first time only (a second read is free)."""
        gate = self.gate
        if gate is None or gate.passed(self.role, stage):
            return run()
        passage = gate.read if stage == Turnstile.READ else gate.write
        return passage(self.role, run)


class FaultedConsumer:
    """A design instance as the record handler meets it: maybe a crash after parsing, the design, maybe a
    crash once the record was handled (before SQS deletes it); `on_verdict` counts what it answered."""

    def __init__(self, design: RecordConsumer, steps: ChaosSteps, on_verdict: Callable[[Verdict], None]) -> None:
        self._design = design
        self.steps = steps
        self._on_verdict = on_verdict

    def handle(self, event: RideEvent) -> Verdict:
        self.steps.subject = event.metadata.idempotency_key
        self.steps.crash_at(Fault.CRASH_AFTER_PARSE)
        verdict = self._design.handle(event)
        self._on_verdict(verdict)
        self.steps.crash_at(Fault.CRASH_BEFORE_DELETE)
        return verdict
