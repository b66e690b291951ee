"""The one report of a run of the local pipeline, whichever command ran it and however it is shown.

What ran, what each hop received and passed on (and the duplicates it dropped, the messages it parked),
what each consumer design did to the effects, the invariants checked, and how long a change took from its
commit to its effect. `make demo` fills it from the local stack; `from_chaos_json` builds it from the file
`make chaos --json` writes. The renderers (terminal, JSON, HTML) read only this model, so the tables, the
file and the page always show the same numbers. Plain dataclasses, like the rest of local/; reading JSON
back validates them with pydantic (report/json_codec.py). Nothing here touches AWS or moto.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

OUR_DESIGN = "rideonce"
"""The consumer the project ships; any other design in a report is shown beside it, for comparison."""

EVERY_DESIGN = "all"
"""The `design` of a hop every design shares (everything upstream of the consumer)."""


@dataclass(frozen=True)
class RunInfo:
    """What ran: the command, its seed and sizes, when it finished and how long it took."""

    command: str
    seed: int
    finished_at: datetime
    seconds: float
    sizes: dict[str, int] = field(default_factory=dict)
    """Counts that size the run, by name: {"rides": 300, "ride changes": 1104}."""
    settings: dict[str, str] = field(default_factory=dict)
    """Options the run was given, as the user would type them: {"retry rate": "0.1"}."""


@dataclass(frozen=True)
class HopRow:
    """One hop of the pipeline: what came in, what it passed on, the duplicates it stopped, what it parked."""

    hop: str
    received: int
    passed_on: int
    """Passed to the next hop, or for the consumer: took effect (first-time applications)."""
    duplicates_dropped: int
    to_dead_letter: int = 0
    """Sent to a dead-letter or quarantine queue at this hop."""
    injected: int = 0
    """Extra deliveries or faults a fault plan added here (chaos); 0 when nothing was injected."""
    design: str = EVERY_DESIGN
    note: str = ""


@dataclass(frozen=True)
class DesignRow:
    """What one consumer design did to the effects: each number should be 0."""

    design: str
    duplicate_effects: int
    """Effects applied more than once (extra charges, extra projection writes)."""
    lost_events: int
    """Accepted changes that never took effect."""
    order_violations: int
    """Applications of a ride's older version after a newer one."""
    parked: int
    """Healthy ride events left in the dead-letter queue at the end."""

    @property
    def baseline(self) -> bool:
        """Shown for comparison: expected to break, so its checks do not fail the run."""
        return self.design != OUR_DESIGN


@dataclass(frozen=True)
class CheckRow:
    """One end-to-end invariant, for the shared hops (`scope` "upstream" or "all") or for one design."""

    name: str
    held: bool
    detail: str
    scope: str = EVERY_DESIGN


@dataclass(frozen=True)
class Histogram:
    """Counts of samples per bin; bin i holds edges[i] <= sample < edges[i + 1] (the last bin includes its end)."""

    edges: list[float]
    counts: list[int]


@dataclass(frozen=True)
class Latency:
    """Commit -> applied, in seconds: the samples summarised, so a report stays small at any size."""

    basis: str
    """How the seconds were measured (which clocks, what compressed them), shown beside the numbers."""
    count: int
    p50: float
    p90: float
    p99: float
    max: float
    histogram: Histogram

    @classmethod
    def from_samples(cls, samples: Sequence[float], basis: str, bins: int = 20) -> "Latency":
        """Summarise `samples` (seconds); raises ValueError when there are none, as no percentile exists."""
        if not samples:
            raise ValueError("no latency samples to summarise")
        return cls(
            basis=basis,
            count=len(samples),
            p50=round(percentile(samples, 0.50), 3),
            p90=round(percentile(samples, 0.90), 3),
            p99=round(percentile(samples, 0.99), 3),
            max=round(max(samples), 3),
            histogram=histogram(samples, bins),
        )


@dataclass(frozen=True)
class FaultRow:
    """One fault of a chaos plan in one scope: how often it was considered and how often injected."""

    fault: str
    scope: str
    rate: float
    evaluated: int
    injected: int


@dataclass(frozen=True)
class Measure:
    """Any other number the run measured (throughput, seconds per phase), labelled for a reader."""

    name: str
    value: float
    unit: str = ""


@dataclass(frozen=True)
class RunReport:
    run: RunInfo
    hops: list[HopRow]
    designs: list[DesignRow]
    checks: list[CheckRow]
    latency: Latency | None = None
    """None when the run recorded no commit and applied times (a chaos file has none)."""
    faults: list[FaultRow] = field(default_factory=list)
    measures: list[Measure] = field(default_factory=list)

    @property
    def baselines(self) -> list[str]:
        return [row.design for row in self.designs if row.baseline]

    @property
    def ok(self) -> bool:
        """Every check held, except those of baseline designs, which are there to show what breaks."""
        baselines = set(self.baselines)
        return all(check.held for check in self.checks if check.scope not in baselines)


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile: the smallest sample with at least `share` of the samples at or below it."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(share * len(ordered)))) - 1]


def histogram(samples: Sequence[float], bins: int = 20) -> Histogram:
    """About `bins` bins of one round width (1, 2, 2.5 or 5 times a power of ten) from 0 to the largest sample."""
    if not samples:
        raise ValueError("no samples")
    width = _round_width(max(max(samples), 1e-3) / bins)
    count = max(1, math.ceil(max(samples) / width))
    counts = [0] * count
    for sample in samples:
        counts[min(count - 1, max(0, int(sample // width)))] += 1
    return Histogram(edges=[round(index * width, 6) for index in range(count + 1)], counts=counts)


def _round_width(raw: float) -> float:
    power = 10.0 ** math.floor(math.log10(raw))
    return next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= raw)
