"""The turnstile lines up two concurrent callers of one request or one message: both check before either writes.

Whatever the scheduler does, so a check-then-write race happens on every run, and a run replays exactly.
"""

import threading
import time
from collections.abc import Callable

from local.chaos.gates import PRIMARY, SECOND, Turnstile


def run_both(gate: Turnstile, primary: Callable[[], None], second: Callable[[], None]) -> None:
    """Each caller in its own thread, the second started first; each leaves the gate when done."""

    def caller(role: str, work: Callable[[], None]) -> None:
        try:
            work()
        finally:
            gate.leave(role)

    threads = [
        threading.Thread(target=caller, args=(SECOND, second)),
        threading.Thread(target=caller, args=(PRIMARY, primary)),
    ]
    for thread in threads:
        thread.start()
        time.sleep(0.05)  # the second is well ahead of the primary
    for thread in threads:
        thread.join(timeout=10)


def test_both_callers_read_before_either_writes_the_primary_first_each_time() -> None:
    gate = Turnstile(timeout_seconds=5)
    order: list[str] = []

    def check_then_write(role: str) -> Callable[[], None]:
        def work() -> None:
            gate.read(role, lambda: order.append(f"{role} read"))
            gate.write(role, lambda: order.append(f"{role} write"))

        return work

    # When both run at once, the second starting first
    run_both(gate, check_then_write(PRIMARY), check_then_write(SECOND))
    # Then the interleaving that breaks check-then-write, every time
    assert order == [f"{PRIMARY} read", f"{SECOND} read", f"{PRIMARY} write", f"{SECOND} write"]
    assert not gate.timed_out


def test_a_caller_that_leaves_early_releases_the_other() -> None:
    gate = Turnstile(timeout_seconds=5)
    order: list[str] = []

    def second() -> None:
        gate.read(SECOND, lambda: order.append("second read"))
        gate.write(SECOND, lambda: order.append("second write"))

    # When the primary leaves without reading (it crashed, its message was poison)
    run_both(gate, lambda: None, second)
    # Then the second goes on alone, without waiting out the timeout
    assert order == ["second read", "second write"]
    assert not gate.timed_out


def test_a_caller_that_never_comes_is_reported_as_a_timeout() -> None:
    gate = Turnstile(timeout_seconds=0.2)
    # When the second waits for a primary that never reads nor leaves
    gate.read(SECOND, lambda: None)
    # Then it went on after the timeout, and the gate says so
    assert gate.timed_out
    assert gate.passed(SECOND, Turnstile.READ)
