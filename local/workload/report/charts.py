"""The report's charts as SVG, drawn by matplotlib: hop flow, effects per design, commit -> applied latency.

matplotlib's object API (a Figure per chart, no pyplot) keeps no global state, so charts can be drawn
from any thread. Text stays text (`svg.fonttype` "none"): the SVG is small and the browser's fonts draw it.
A fixed hash salt and no date make the same report give the same bytes.
"""

import io
from collections.abc import Sequence
from contextlib import AbstractContextManager
from itertools import pairwise

import matplotlib as mpl
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from local.workload.report.model import EVERY_DESIGN, DesignRow, HopRow, Latency

_PALETTE = {
    "in": "#8da0cb",
    "out": "#66c2a5",
    "duplicates dropped": "#fc8d62",
    "to DLQ": "#e78ac3",
    "duplicate effects": "#d7301f",
    "lost events": "#7570b3",
    "order violations": "#e6ab02",
    "parked in the DLQ": "#a6761d",
}


def hop_flow(hops: Sequence[HopRow]) -> str:
    """Per hop, horizontal bars: what came in, what went out, the duplicates dropped, what went to a DLQ."""
    labels = [hop.hop if hop.design == EVERY_DESIGN else f"{hop.hop} ({hop.design})" for hop in hops]
    series = {
        "in": [hop.received for hop in hops],
        "out": [hop.passed_on for hop in hops],
        "duplicates dropped": [hop.duplicates_dropped for hop in hops],
        "to DLQ": [hop.to_dead_letter for hop in hops],
    }
    return _bar_chart(labels, series, height=1.0 + 0.62 * len(hops), xlabel="messages, records or requests")


def design_effects(designs: Sequence[DesignRow]) -> str:
    """Per consumer design, bars for each way an effect can go wrong; a design that holds shows only zeros."""
    labels = [row.design + (" (baseline)" if row.baseline else "") for row in designs]
    series = {
        "duplicate effects": [row.duplicate_effects for row in designs],
        "lost events": [row.lost_events for row in designs],
        "order violations": [row.order_violations for row in designs],
        "parked in the DLQ": [row.parked for row in designs],
    }
    return _bar_chart(labels, series, height=1.1 + 0.9 * len(designs), xlabel="events (0 is the promise)")


def _bar_chart(labels: list[str], series: dict[str, list[int]], height: float, xlabel: str) -> str:
    """One figure of grouped horizontal bars, as SVG: the shape both bar charts share."""
    with _style():
        figure = Figure(figsize=(11, height), layout="constrained")
        axes = figure.add_subplot()
        _grouped_bars(axes, labels, series)
        axes.set_xlabel(xlabel)
        return _svg(figure)


def latency_histogram(latency: Latency) -> str:
    """The commit -> applied histogram, with p50, p90, p99 and the worst marked."""
    edges, counts = latency.histogram.edges, latency.histogram.counts
    with _style():
        figure = Figure(figsize=(11, 3.6), layout="constrained")
        axes = figure.add_subplot()
        widths = [right - left for left, right in pairwise(edges)]
        axes.bar(edges[:-1], counts, width=widths, align="edge", color="#8da0cb", edgecolor="white")
        axes.set_xlabel("seconds from the commit to the effect")
        axes.set_ylabel("changes")
        for label, value, color in (
            ("p50", latency.p50, "#1b9e77"),
            ("p90", latency.p90, "#d95f02"),
            ("p99", latency.p99, "#7570b3"),
            ("max", latency.max, "#444444"),
        ):
            axes.axvline(value, color=color, linestyle="--", linewidth=1.2, label=f"{label} {value:.2f} s")
        axes.legend(loc="lower left", bbox_to_anchor=(0, 1), ncols=4, frameon=False)
        axes.spines[["top", "right"]].set_visible(False)
        return _svg(figure)


def _grouped_bars(axes: Axes, labels: Sequence[str], series: dict[str, list[int]]) -> None:
    """One row per label, one thin bar per series, each with its number (a 0 shows as "0", not as nothing)."""
    thickness = 0.8 / len(series)
    for index, (name, values) in enumerate(series.items()):
        positions = [row + (index - (len(series) - 1) / 2) * thickness for row in range(len(labels))]
        bars = axes.barh(positions, values, height=thickness, label=name, color=_PALETTE[name])
        axes.bar_label(bars, padding=2, fontsize=8)
    axes.set_yticks(range(len(labels)), labels)
    axes.invert_yaxis()
    # From 0, with room for the numbers; all zeros (the promise kept) still gives an axis from 0 to 1.
    axes.set_xlim(0, max(1, *(max(values, default=0) for values in series.values())) * 1.12)
    axes.legend(loc="lower left", bbox_to_anchor=(0, 1), ncols=len(series), frameon=False)
    axes.spines[["top", "right"]].set_visible(False)


def _style() -> AbstractContextManager[None]:
    return mpl.rc_context({"svg.fonttype": "none", "svg.hashsalt": "rideonce-report", "font.size": 10})


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()
