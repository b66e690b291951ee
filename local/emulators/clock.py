"""The time the emulators and moto's SQS live in: one clock, given to each of them.

A `WallClock` follows this machine's time; scaled, it runs faster than the machine's (`scale` 0.01: a
120 s visibility timeout is over in 1.2 s), so the demo and `make local` need not wait for AWS's
timeouts. A `SimulatedClock` moves only when it is advanced, and sleeping on it advances it: a six-hour
wait costs nothing, and a run gives the same figures on any machine. Whatever reads the time in an
emulator, or in moto's SQS (local/aws/moto_patches.py installs the clock there), reads it here, so a
visibility timeout, a batching window and a retry backoff all elapse in the same time.

What the clock does not govern: the in-process functions read this machine's time (the consumer and the
reconciler take a clock of their own), and so do the rest of moto's services.
"""

import threading
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Epoch seconds."""
        ...

    def utc_now(self) -> datetime:
        """The same moment as an aware UTC datetime."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let `seconds` of this clock's time pass."""
        ...

    def sleep_until(self, moment: float) -> None:
        """Let this clock's time reach `moment` (epoch seconds); at once if it has."""
        ...


class WallClock:
    """This machine's time, running `1 / scale` times as fast from the moment the clock is made.

    At `scale` 1 it is the machine's time itself; below 1 every wait is shorter by that factor, and the
    clock runs ahead of the machine's by the same factor (after 10 s at 0.01 it is 1,000 s later here).
    """

    def __init__(self, scale: float = 1.0) -> None:
        if scale <= 0:
            raise ValueError(f"scale must be above 0 (a clock cannot run infinitely fast): {scale}")
        self.scale = scale
        self._origin = time.time()
        self._origin_monotonic = time.monotonic()

    def now(self) -> float:
        if self.scale == 1.0:
            return time.time()
        return self._origin + (time.monotonic() - self._origin_monotonic) / self.scale

    def utc_now(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds * self.scale)

    def sleep_until(self, moment: float) -> None:
        self.sleep(moment - self.now())


class SimulatedClock:
    """Epoch seconds that move only when advanced; a sleep advances the clock instead of waiting.

    One driver moves it (a simulation's loop, or the emulator that sleeps on it); it never goes back.
    """

    def __init__(self, start: float) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._now

    def utc_now(self) -> datetime:
        return datetime.fromtimestamp(self._now, UTC)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += max(0.0, seconds)

    def advance_to(self, moment: float) -> None:
        with self._lock:
            self._now = max(self._now, moment)

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def sleep_until(self, moment: float) -> None:
        self.advance_to(moment)
