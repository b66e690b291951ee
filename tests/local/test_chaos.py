"""Seeded faults at every hop of the local stack: rideonce keeps its promise, the usual designs do not.

A small fleet per seed (`local.chaos.runner.run`: the upstream once, then each consumer design on the same captured
deliveries and the same fault schedule). `python -m local.chaos` is the same run at full size. The two
faults that lose changes at the relay are rare at full size (a share of the rate); here they are raised so
that every seed loses some, and the reconciler, on its schedule in simulated time, must bring them back.
"""

import json
import os
from collections.abc import Iterator

import pytest

from local.chaos import runner as chaos
from local.chaos.plan import Fault
from local.chaos.report import ChaosReport
from local.designs import CHECK_THEN_WRITE, POWERTOOLS, RIDEONCE

pytestmark = pytest.mark.e2e

SEEDS = (1, 2, 3)
RIDES = 40
RATE = 0.3
RELAY_LOSSES = {Fault.PIPE_GIVES_UP: 0.2, Fault.STREAM_TRIMMED: 0.05}


@pytest.fixture(scope="module")
def reports() -> Iterator[dict[int, ChaosReport]]:
    """One run per seed, shared by the tests below; the local stack's environment is undone afterwards."""
    saved = dict(os.environ)
    try:
        yield {seed: chaos.run(seed=seed, rides=RIDES, rate=RATE, overrides=RELAY_LOSSES) for seed in SEEDS}
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.mark.parametrize("seed", SEEDS)
def test_rideonce_applies_every_change_exactly_once_in_order(reports: dict[int, ChaosReport], seed: int) -> None:
    report = reports[seed]
    ours = report.designs[RIDEONCE]
    # Then no duplicate effect, no lost event, no order violation, and every invariant held
    assert (ours.metrics.duplicate_effects, ours.metrics.lost_events, ours.metrics.order_violations) == (0, 0, 0)
    broken = [check for check in [*report.upstream_checks, *ours.checks] if not check.held]
    assert not broken, json.dumps([check.__dict__ for check in broken], indent=2)
    assert report.ok


@pytest.mark.parametrize("seed", SEEDS)
def test_every_hop_met_its_faults(reports: dict[int, ChaosReport], seed: int) -> None:
    report = reports[seed]
    injected = {
        fault: count["injected"]
        for faults in (report.upstream_faults, *(result.faults for result in report.designs.values()))
        for fault, count in faults.items()
    }
    # The kinds that fire per occurrence at rate 0.3 fired; crashes are rarer by design (see FaultRates)
    frequent = {
        Fault.CLIENT_RETRY,
        Fault.CONCURRENT_REQUESTS,
        Fault.API_CRASH_AFTER_COMMIT,
        Fault.PUT_EVENTS_DUPLICATE,
        Fault.PIPE_GIVES_UP,
        Fault.STREAM_TRIMMED,
        Fault.RULE_FIRES_TWICE,
        Fault.ARCHIVE_REPLAY,
        Fault.POISON_OUTBOX_ITEM,
        Fault.POISON_MESSAGE,
        Fault.OUT_OF_ORDER,
        Fault.NOT_DELETED,
        Fault.CONCURRENT_CONSUMERS,
    }
    assert all(injected[fault.value] > 0 for fault in frequent), injected
    hops = {row.hop: row for row in report.upstream_hops}
    # Extra deliveries at the Pipe (three kinds at 0.3) for the records it relayed (not those lost at the
    # relay), and at the rule (one kind at 0.3, so about 30% here)
    relayed = hops["stream -> Pipe -> bus"].received - report.designs[RIDEONCE].metrics.lost_at_relay
    assert hops["stream -> Pipe -> bus"].applied >= 1.3 * relayed
    assert hops["bus -> queue"].applied >= 1.2 * hops["bus -> queue"].received


@pytest.mark.parametrize("seed", SEEDS)
def test_the_reconciler_brings_back_what_the_relay_lost(reports: dict[int, ChaosReport], seed: int) -> None:
    report = reports[seed]
    ours = report.designs[RIDEONCE].metrics
    # Given changes the Pipe gave up on (pointers in its DLQ) or never read (trimmed from the stream)
    assert ours.lost_at_relay > 0
    pipe_dlq = next(check for check in report.upstream_checks if check.name.startswith("the Pipe DLQ"))
    assert pipe_dlq.held, pipe_dlq.detail
    # When the reconciler runs on its schedule, Then each of them took effect once, before any DLQ redrive
    assert ours.reconciler_runs > 0
    assert ours.republished >= ours.lost_at_relay
    assert (ours.repaired, ours.lost_before_redrive) == (ours.lost_at_relay, 0)
    # And every design met the same losses and the same reconciler
    assert {result.metrics.lost_at_relay for result in report.designs.values()} == {ours.lost_at_relay}
    assert all(result.metrics.reconciler_runs > 0 for result in report.designs.values())


def test_the_usual_designs_break_under_the_same_schedule(reports: dict[int, ChaosReport]) -> None:
    for design in (CHECK_THEN_WRITE, POWERTOOLS):
        duplicates = {seed: report.designs[design].metrics.duplicate_effects for seed, report in reports.items()}
        assert any(count > 0 for count in duplicates.values()), f"{design}: no duplicate effect in {duplicates}"
        assert any(not report.designs[design].ok for report in reports.values()), f"{design} held every invariant"
