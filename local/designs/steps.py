"""The seam every consumer design declares: the points between its requests, where a harness acts.

A design calls its `Steps` around its check and its effect writes, after each effect, and at each point
where an invocation may die between two requests. Without a harness (`NO_STEPS`) every call is a plain
pass-through, so the design does exactly its requests. With one (local/chaos/consumer_faults.py), two
consumers of one message are lined up at `check` and `write`, a crash may be injected at `reached`, and
`projected` / `charged` record every effect the design wrote.
"""

from collections.abc import Callable
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from rideonce.models.events import RideEvent


class CrashPoint(StrEnum):
    """Where an invocation can die between two of a design's requests (each design passes those it has)."""

    AFTER_CHECK = "after-check"
    """After the design read whether the event was applied (ours: after its one transaction)."""
    MID_EFFECT = "mid-effect"
    """Between two effect writes: none in a one-transaction design."""
    AFTER_EFFECT = "after-effect"
    """After the last effect write, before the proof that the event was applied."""
    AFTER_RECORD = "after-record"
    """After the proof (processed key, COMPLETED record), before the handler reports the record."""


class Steps(Protocol):
    def check[T](self, run: Callable[[], T]) -> T:
        """`run` is the design's check (whether the event was applied, or the lock that says so)."""
        ...

    def write[T](self, run: Callable[[], T]) -> T:
        """`run` writes the effects (for a one-transaction design: checks, applies and records at once)."""
        ...

    def reached(self, point: CrashPoint) -> None:
        """The design is at `point`; a harness may end the invocation here."""
        ...

    def projected(self, event: RideEvent) -> None:
        """The design wrote `event`'s ride projection."""
        ...

    def charged(self, event: RideEvent, amount: Decimal) -> None:
        """The design charged `event`'s rider `amount`."""
        ...


class _NoSteps:
    def check[T](self, run: Callable[[], T]) -> T:
        return run()

    def write[T](self, run: Callable[[], T]) -> T:
        return run()

    def reached(self, point: CrashPoint) -> None:
        return None

    def projected(self, event: RideEvent) -> None:
        return None

    def charged(self, event: RideEvent, amount: Decimal) -> None:
        return None


NO_STEPS: Steps = _NoSteps()
"""Every step runs as it is: what a design does outside a harness."""
