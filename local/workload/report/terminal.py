"""The report as rich tables in a terminal: what `make demo` prints at the end of a run.

Columns that would be empty for every row (the design of a demo's hops, faults injected) are left out,
so a demo's tables read as they did before this model and a chaos run's carry what it adds.
"""

from rich.console import Console
from rich.table import Table

from local.workload.report.model import EVERY_DESIGN, CheckRow, RunReport


def render(report: RunReport, console: Console) -> None:
    run = report.run
    sizes = ", ".join(f"{value} {name}" for name, value in run.sizes.items())
    console.print(f"[bold]rideonce: {run.command}[/], seed {run.seed}, {sizes}, {run.seconds:g} s")
    console.print(_hops(report, "per hop"))
    if report.measures:
        console.print(_measures(report))
    if report.faults:
        console.print(_faults(report))
    console.print(_designs(report))
    if report.latency is not None:
        latency = report.latency
        console.print(
            f"commit -> applied ({latency.count} changes): p50 {latency.p50:.2f} s, p90 {latency.p90:.2f} s, "
            f"p99 {latency.p99:.2f} s, max {latency.max:.2f} s [dim]({latency.basis})[/]"
        )
    console.print(_checks(report))
    console.print(verdict(report))


def verdict(report: RunReport) -> str:
    """One line: every invariant held or not; baselines, when present, are named as the comparison they are."""
    if not report.ok:
        return "[bold red]an invariant broke[/]"
    if report.baselines:
        return f"[bold green]all invariants held[/] (baselines shown for comparison: {', '.join(report.baselines)})"
    return "[bold green]all invariants held[/]"


def _hops(report: RunReport, title: str) -> Table:
    by_design = any(hop.design != EVERY_DESIGN for hop in report.hops)
    injected = any(hop.injected for hop in report.hops)
    table = Table(title=title)
    numbers = ["in", *(["injected"] if injected else []), "duplicates dropped", "out", "to DLQ"]
    for column in ("hop", *(["design"] if by_design else []), *numbers, "note"):
        table.add_column(column, justify="right" if column in numbers else "left")
    for hop in report.hops:
        table.add_row(
            hop.hop,
            *([hop.design] if by_design else []),
            str(hop.received),
            *([str(hop.injected)] if injected else []),
            str(hop.duplicates_dropped),
            str(hop.passed_on),
            str(hop.to_dead_letter),
            hop.note,
        )
    return table


def _measures(report: RunReport) -> Table:
    table = Table(title="measured")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for measure in report.measures:
        table.add_row(measure.name, f"{measure.value:g} {measure.unit}".strip())
    return table


def _faults(report: RunReport) -> Table:
    scopes = list(dict.fromkeys(fault.scope for fault in report.faults))
    table = Table(title="faults (evaluated -> injected)")
    table.add_column("fault")
    table.add_column("rate", justify="right")
    for scope in scopes:
        table.add_column(scope, justify="right")
    cells: dict[str, dict[str, str]] = {}
    rates: dict[str, float] = {}
    for fault in report.faults:
        cells.setdefault(fault.fault, {})[fault.scope] = f"{fault.evaluated} -> {fault.injected}"
        rates[fault.fault] = fault.rate
    for name, by_scope in cells.items():
        table.add_row(name, f"{rates[name]:.4g}", *(by_scope.get(scope, "") for scope in scopes))
    return table


def _designs(report: RunReport) -> Table:
    table = Table(title="effects per consumer design (each should be 0)")
    table.add_column("design")
    for column in ("duplicate effects", "lost events", "order violations", "parked in the DLQ"):
        table.add_column(column, justify="right")
    for row in report.designs:
        table.add_row(
            row.design + (" (baseline)" if row.baseline else ""),
            *(_count(value) for value in (row.duplicate_effects, row.lost_events, row.order_violations, row.parked)),
        )
    return table


def _checks(report: RunReport) -> Table:
    scoped = len({check.scope for check in report.checks}) > 1
    table = Table(title="end-to-end invariants")
    table.add_column("invariant")
    if scoped:
        table.add_column("for")
    table.add_column("held")
    table.add_column("detail")
    for check in report.checks:
        table.add_row(check.name, *([check.scope] if scoped else []), _held(check), check.detail)
    return table


def _count(value: int) -> str:
    return str(value) if value == 0 else f"[red]{value}[/]"


def _held(check: CheckRow) -> str:
    return "[green]yes[/]" if check.held else "[red]NO[/]"
