"""Two concurrent callers of one request or one message, lined up so the interleaving is certain.

Used at the API (two clients with one Idempotency-Key) and at the consumer (two consumers with one
message): whatever the scheduler does, both check before either writes, so a check-then-write design
meets its race on every run and a run replays exactly.
"""

import threading
from collections.abc import Callable

PRIMARY = "primary"

SECOND = "second"


class Turnstile:
    """Two concurrent callers of one request or one message, lined up: both check before either writes.

    The primary checks first, then the second; then the primary writes first, then the second: the
    interleaving that breaks a check-then-write design, made certain and repeatable instead of left to the
    scheduler (so a run replays exactly, and in-process calls, which never yield the GIL mid-request, still
    interleave). A caller that leaves early (it crashed, its message was poison, it had nothing to write)
    releases the other.
    """

    READ = "read"
    WRITE = "write"

    def __init__(self, timeout_seconds: float = 30.0) -> None:
        self._condition = threading.Condition()
        self._done: set[tuple[str, str]] = set()
        self._timeout = timeout_seconds
        self.timed_out = False

    def passed(self, role: str, stage: str) -> bool:
        with self._condition:
            return (role, stage) in self._done

    def read[T](self, role: str, step: Callable[[], T]) -> T:
        if role == SECOND:
            self._await(PRIMARY, self.READ)
        try:
            return step()
        finally:
            self._mark(role, self.READ)
            if role == PRIMARY:
                self._await(SECOND, self.READ)

    def write[T](self, role: str, step: Callable[[], T]) -> T:
        if role == SECOND:
            self._await(PRIMARY, self.WRITE)
        try:
            return step()
        finally:
            self._mark(role, self.WRITE)

    def leave(self, role: str) -> None:
        self._mark(role, "gone")

    def after(self, role: str) -> None:
        """Wait until `role` has left."""
        self._await(role, "gone")

    def _mark(self, role: str, stage: str) -> None:
        with self._condition:
            self._done.add((role, stage))
            self._condition.notify_all()

    def _await(self, role: str, stage: str) -> None:
        with self._condition:
            if not self._condition.wait_for(
                lambda: (role, stage) in self._done or (role, "gone") in self._done, self._timeout
            ):
                self.timed_out = True
