"""What a chaos run found: the rows per hop, the effects and invariants per design, as tables and as JSON.

The report holds numbers only; `render` prints it with rich, `ChaosReport.as_json` is what `--json` writes.
"""

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from local.chaos.plan import FAULTS, Hop
from local.designs import RIDEONCE
from local.workload.invariants import Check


@dataclass
class HopRow:
    """One hop for one design (upstream hops are shared: design "all"): what came in and what became of it."""

    hop: str
    design: str
    received: int
    injected: int
    """Extra deliveries or faults the schedule added at this hop."""
    dropped: int
    """Duplicates stopped at this hop."""
    applied: int
    """What this hop passed on or took effect: accepted changes, records, events, first-time effects."""
    note: str = ""


@dataclass
class EffectMetrics:
    duplicate_effects: int
    extra_charges: int
    extra_projection_writes: int
    lost_events: int
    order_violations: int
    parked_healthy: int
    unhandled: int
    lost_before_redrive: int = 0
    """Outbox records not applied before the final DLQ redrive (a person's step on AWS)."""
    parked_healthy_before_redrive: int = 0
    """Ride events in the DLQ before that redrive (on AWS the consumer DLQ alarm fires)."""
    lost_at_relay: int = 0
    """Changes the Pipe gave up on or never read (the same for every design)."""
    repaired: int = 0
    """Of those, applied: only the reconciler's republished events carry them."""
    reconciler_runs: int = 0
    republished: int = 0
    """Events the reconciler put on the bus again (a lost change's successors too)."""


@dataclass
class DesignResult:
    name: str
    hops: list[HopRow]
    faults: dict[str, dict[str, float]]
    metrics: EffectMetrics
    checks: list[Check]
    seconds: float
    failures: dict[str, int]
    unhandled: list[str]

    @property
    def ok(self) -> bool:
        return all(check.held for check in self.checks)


@dataclass
class ChaosReport:
    seed: int
    rate: float
    rides: int
    changes: int
    transport: str
    rates: dict[str, float]
    upstream_hops: list[HopRow]
    upstream_checks: list[Check]
    upstream_faults: dict[str, dict[str, float]]
    designs: dict[str, DesignResult]
    seconds: dict[str, float]

    @property
    def ok(self) -> bool:
        """The upstream and rideonce held every invariant (the baselines are expected not to)."""
        upstream = all(check.held for check in self.upstream_checks)
        return upstream and (RIDEONCE not in self.designs or self.designs[RIDEONCE].ok)

    def as_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "designs": {name: {**asdict(result), "ok": result.ok} for name, result in self.designs.items()},
            "ok": self.ok,
        }


EFFECT_ROWS = (
    ("duplicate effects", "duplicate_effects"),
    ("  extra charges", "extra_charges"),
    ("  extra projection writes", "extra_projection_writes"),
    ("lost events (never applied)", "lost_events"),
    ("order violations (older after newer)", "order_violations"),
    ("healthy events parked in the DLQ", "parked_healthy"),
    ("unhandled exceptions", "unhandled"),
    ("not applied before the DLQ redrive", "lost_before_redrive"),
    ("healthy events parked before the DLQ redrive", "parked_healthy_before_redrive"),
    ("changes lost at the relay", "lost_at_relay"),
    ("  repaired by the reconciler (applied)", "repaired"),
    ("reconciler runs", "reconciler_runs"),
    ("  events republished", "republished"),
)
"""The effects table's rows: label, `EffectMetrics` attribute."""


def render(report: ChaosReport, console: Console) -> None:
    """The report as terminal tables: faults, hops, effects, invariants, then what broke and the verdict."""
    console.print(
        f"[bold]rideonce chaos run[/]: seed {report.seed}, rate {report.rate}, {report.rides} rides, "
        f"{report.changes} ride changes, transport {report.transport}"
    )
    for table in (_faults_table(report), _hops_table(report), _effects_table(report), _invariants_table(report)):
        console.print(table)
    for name, result in report.designs.items():
        for check in result.checks:
            if not check.held:
                console.print(f"  [dim]{name}: {check.name}: {check.detail}[/]")
    for check in report.upstream_checks:
        if not check.held:
            console.print(f"  [dim]upstream: {check.name}: {check.detail}[/]")
    console.print("seconds: " + ", ".join(f"{key} {value}" for key, value in report.seconds.items()))
    verdict = (
        "[bold green]rideonce held every invariant[/]" if report.ok else "[bold red]rideonce broke an invariant[/]"
    )
    console.print(verdict)


def _faults_table(report: ChaosReport) -> Table:
    names = list(report.designs)
    faults = Table(title="faults injected per hop (evaluated -> injected)")
    faults.add_column("hop")
    faults.add_column("fault")
    faults.add_column("rate", justify="right")
    faults.add_column("upstream", justify="right")
    for name in names:
        faults.add_column(name, justify="right")
    for fault, spec in FAULTS.items():
        rate = f"{report.rates[fault.value]:.4g}"
        if spec.hop is Hop.QUEUE_TO_CONSUMER:
            cells = ["", *(_count(report.designs[name].faults[fault.value]) for name in names)]
        else:
            cells = [_count(report.upstream_faults[fault.value]), *("" for _ in names)]
        faults.add_row(spec.hop.value, fault.value, rate, *cells)
    return faults


def _hops_table(report: ChaosReport) -> Table:
    hops = Table(title="per hop: received, injected, dropped, applied")
    for column in ("hop", "design", "received", "injected", "dropped", "applied", "note"):
        hops.add_column(column, justify="right" if column in ("received", "injected", "dropped", "applied") else "left")
    for row in [*report.upstream_hops, *(row for result in report.designs.values() for row in result.hops)]:
        hops.add_row(
            row.hop, row.design, str(row.received), str(row.injected), str(row.dropped), str(row.applied), row.note
        )
    return hops


def _effects_table(report: ChaosReport) -> Table:
    effects = Table(title="effects per design")
    effects.add_column("measure")
    for name in report.designs:
        effects.add_column(name, justify="right")
    for label, attribute in EFFECT_ROWS:
        effects.add_row(label, *(str(getattr(result.metrics, attribute)) for result in report.designs.values()))
    return effects


def _invariants_table(report: ChaosReport) -> Table:
    names = list(report.designs)
    invariants = Table(title="end-to-end invariants")
    invariants.add_column("invariant")
    invariants.add_column("upstream (shared)")
    for name in names:
        invariants.add_column(name)
    for check in report.upstream_checks:
        invariants.add_row(check.name, _held(check), *("" for _ in names))
    for index, check in enumerate(next(iter(report.designs.values())).checks if report.designs else []):
        invariants.add_row(check.name, "", *(_held(report.designs[name].checks[index]) for name in names))
    return invariants


def _count(count: Mapping[str, float]) -> str:
    return f"{int(count['evaluated'])} -> {int(count['injected'])}"


def _held(check: Check) -> str:
    return "[green]yes[/]" if check.held else "[red]NO[/]"
