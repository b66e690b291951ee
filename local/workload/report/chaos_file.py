"""The report of a chaos run, read from the JSON file `make chaos --json` writes (ChaosReport.as_json).

So a chaos run can write the same page as the demo without the runner knowing the report's model. The
file has no commit and applied times, so its report has no latency; and its hop rows give what a hop
parked only in their notes ("5 parked in the DLQ", "(2 DLQ pointers)", "2 rejections quarantined"),
which are read from there.
"""

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from local.workload.report.model import EVERY_DESIGN, CheckRow, DesignRow, FaultRow, HopRow, Measure, RunInfo, RunReport

_PARKED_IN_NOTES = (
    re.compile(r"(\d+) parked in the DLQ"),
    re.compile(r"\((\d+) DLQ pointers\)"),
    re.compile(r"(\d+) rejections quarantined"),
)


def from_chaos_json(data: Mapping[str, Any], finished_at: datetime | None = None) -> RunReport:
    """Build the report of one chaos run; `finished_at` defaults to now (the file does not say when it ran)."""
    designs: Mapping[str, Mapping[str, Any]] = data["designs"]
    seconds: Mapping[str, float] = data.get("seconds", {})
    run = RunInfo(
        command="make chaos",
        seed=int(data["seed"]),
        finished_at=finished_at or datetime.now(UTC),
        seconds=float(seconds.get("total", 0.0)),
        sizes={"rides": int(data["rides"]), "ride changes": int(data["changes"])},
        settings={"fault rate": str(data["rate"]), "transport": str(data["transport"])},
    )
    hop_rows = [*data["upstream_hops"], *(row for design in designs.values() for row in design["hops"])]
    return RunReport(
        run=run,
        hops=[_hop(row) for row in hop_rows],
        designs=[_design(name, design["metrics"]) for name, design in designs.items()],
        checks=[_check(check, "upstream") for check in data["upstream_checks"]]
        + [_check(check, name) for name, design in designs.items() for check in design["checks"]],
        latency=None,
        faults=_faults(data.get("upstream_faults", {}), "upstream")
        + [fault for name, design in designs.items() for fault in _faults(design.get("faults", {}), name)],
        measures=[Measure(f"seconds: {phase}", float(value), "s") for phase, value in seconds.items()],
    )


def _hop(row: Mapping[str, Any]) -> HopRow:
    note = str(row.get("note", ""))
    return HopRow(
        hop=str(row["hop"]),
        received=int(row["received"]),
        passed_on=int(row["applied"]),
        duplicates_dropped=int(row["dropped"]),
        to_dead_letter=sum(int(found) for pattern in _PARKED_IN_NOTES for found in pattern.findall(note)),
        injected=int(row.get("injected", 0)),
        design=str(row.get("design", EVERY_DESIGN)),
        note=note,
    )


def _design(name: str, metrics: Mapping[str, Any]) -> DesignRow:
    return DesignRow(
        design=name,
        duplicate_effects=int(metrics["duplicate_effects"]),
        lost_events=int(metrics["lost_events"]),
        order_violations=int(metrics["order_violations"]),
        parked=int(metrics["parked_healthy"]),
    )


def _check(check: Mapping[str, Any], scope: str) -> CheckRow:
    return CheckRow(name=str(check["name"]), held=bool(check["held"]), detail=str(check["detail"]), scope=scope)


def _faults(faults: Mapping[str, Mapping[str, float]], scope: str) -> list[FaultRow]:
    return [
        FaultRow(
            fault=fault,
            scope=scope,
            rate=float(counts["rate"]),
            evaluated=int(counts["evaluated"]),
            injected=int(counts["injected"]),
        )
        for fault, counts in faults.items()
    ]
