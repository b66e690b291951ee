"""Faults at the last hop, queue -> consumer: crash points between each design's steps, two consumers at once.

`instrument_*` put crash points between each design's steps, a `Turnstile` makes two consumers of one
message check before either writes, and an `EffectLog` records every effect written. A crash is a
`Crash`, a `BaseException`: like a killed process, nothing in the code under test catches it.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from local.chaos.gates import PRIMARY, SECOND, Turnstile
from local.chaos.plan import Crash, Fault, FaultPlan
from local.designs.baselines import CheckThenWriteConsumer, PowertoolsIdempotencyConsumer
from rideonce.dal.consumer import Applied, ApplyResult, EffectStore
from rideonce.logic.consumer import charge_for
from rideonce.models.consumer import ProcessedKey
from rideonce.models.events import RideEvent
from rideonce.models.ride import Money


def _replace(target: object, method: str, replacement: Callable[..., Any]) -> None:
    """Shadow a method with an instance attribute: only this object changes, its class and the others do not."""
    setattr(target, method, replacement)


class ConsumerContext(threading.local):
    """Per thread: which message is being handled, by which of two concurrent consumers, under which gate.

    `faults_allowed` is cleared for a delivery on one of a message's last two receives before the DLQ, so
    that a message parks only when the consumer itself keeps refusing it (see chaos.py).
    """

    subject: str = ""
    role: str = PRIMARY
    gate: "Turnstile | None" = None
    faults_allowed: bool = True

    def key(self) -> str:
        """The fault subject: the second consumer of a message has attempts of its own (threads race)."""
        return self.subject if self.role == PRIMARY else f"{self.subject}#{SECOND}"


@dataclass
class EffectLog:
    """Every effect write a design made, in order, recorded by wrappers on its effect writers.

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


def crash_after[T](plan: FaultPlan, context: ConsumerContext, fault: Fault, step: Callable[..., T]) -> Callable[..., T]:
    """`step`, then maybe a `Crash`: the point between `step` and whatever the design does next."""

    def stepped(*args: Any, **kwargs: Any) -> T:
        result = step(*args, **kwargs)
        if context.faults_allowed and plan.occurs(fault, context.key()):
            raise Crash(fault, context.key())
        return result

    return stepped


def gated[T](context: ConsumerContext, stage: str, step: Callable[..., T]) -> Callable[..., T]:
    """`step` through the thread's turnstile at `stage`, the first time only (a second read is free)."""

    def through(*args: Any, **kwargs: Any) -> T:
        gate = context.gate
        if gate is None or gate.passed(context.role, stage):
            return step(*args, **kwargs)
        passage = gate.read if stage == Turnstile.READ else gate.write
        return passage(context.role, lambda: step(*args, **kwargs))

    return through


def instrument_rideonce(store: EffectStore, plan: FaultPlan, context: ConsumerContext, log: EffectLog) -> None:
    """Our consumer's one step: one transaction that checks, applies and records together.

    Its check is that transaction, so the crash after the check follows it on every delivery, as the
    other designs' crash after their read does; the crash after the effect and the crash after the record
    are one point here, decided only when the transaction applied (as theirs, after a first application).
    So this design meets the same schedule.
    """
    apply = store.apply

    def recorded_apply(event: RideEvent, key: ProcessedKey, charge: Money | None, now: int) -> Applied:
        applied = apply(event, key, charge, now)
        if applied.result is ApplyResult.APPLIED:
            log.projection(event)
            if charge is not None:
                log.charge(event, charge.amount)
        return applied

    def apply_then_maybe_crash(event: RideEvent, key: ProcessedKey, charge: Money | None, now: int) -> Applied:
        applied = recorded_apply(event, key, charge, now)
        if context.faults_allowed:
            crashes = [Fault.CRASH_AFTER_READ]
            if applied.result is ApplyResult.APPLIED:
                crashes += [Fault.CRASH_AFTER_EFFECT, Fault.CRASH_AFTER_RECORD]
            for fault in crashes:
                if plan.occurs(fault, context.key()):
                    raise Crash(fault, context.key())
        return applied

    _replace(store, "apply", gated(context, Turnstile.WRITE, apply_then_maybe_crash))


def _record_effects(
    consumer: CheckThenWriteConsumer | PowertoolsIdempotencyConsumer,
    plan: FaultPlan,
    context: ConsumerContext,
    log: EffectLog,
) -> None:
    """The baselines' effect writers, recorded, with the crash between the projection and the charge."""
    put = consumer._put_projection
    charge = consumer._charge

    def recorded_put(event: RideEvent) -> None:
        put(event)
        log.projection(event)

    def recorded_charge(event: RideEvent) -> None:
        charge(event)
        money = charge_for(event)
        if money is not None:
            log.charge(event, money.amount)

    _replace(consumer, "_put_projection", crash_after(plan, context, Fault.CRASH_MID_EFFECT, recorded_put))
    _replace(consumer, "_charge", recorded_charge)
    effects = crash_after(plan, context, Fault.CRASH_AFTER_EFFECT, consumer._apply_effects)
    _replace(consumer, "_apply_effects", gated(context, Turnstile.WRITE, effects))


def instrument_check_then_write(
    consumer: CheckThenWriteConsumer, plan: FaultPlan, context: ConsumerContext, log: EffectLog
) -> None:
    """Check-then-write's steps: read the key, project, charge, record the key: four requests."""
    _record_effects(consumer, plan, context, log)
    read = crash_after(plan, context, Fault.CRASH_AFTER_READ, consumer._read_key)
    _replace(consumer, "_read_key", gated(context, Turnstile.READ, read))
    record = crash_after(plan, context, Fault.CRASH_AFTER_RECORD, consumer._record_key)
    _replace(consumer, "_record_key", record)


def instrument_powertools(
    consumer: PowertoolsIdempotencyConsumer, plan: FaultPlan, context: ConsumerContext, log: EffectLog
) -> None:
    """Powertools' steps: the INPROGRESS lock (its check), project, charge, the COMPLETED update."""
    _record_effects(consumer, plan, context, log)
    persistence = consumer.persistence
    lock = crash_after(plan, context, Fault.CRASH_AFTER_READ, persistence.save_inprogress)
    _replace(persistence, "save_inprogress", gated(context, Turnstile.READ, lock))
    success = crash_after(plan, context, Fault.CRASH_AFTER_RECORD, persistence.save_success)
    _replace(persistence, "save_success", success)
