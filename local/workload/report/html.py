"""The report as one self-contained HTML page: inline CSS, charts as inline SVG data URIs, no script.

It opens from the file system, offline, in any browser, and can be mailed or attached to a ticket as one
file: nothing on the page refers to the network. Every number on it is also in a table below its chart,
so the page still reads when an image does not show.
"""

import base64
from collections.abc import Iterable, Sequence
from html import escape

from local.workload.report import charts
from local.workload.report.model import EVERY_DESIGN, RunReport

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       margin: 0 auto; max-width: 1180px; padding: 24px; color: #1f2328; background: #fff; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 32px 0 6px; }
.verdict { display: inline-block; padding: 4px 12px; border-radius: 4px; font-weight: 600; color: #fff; }
.held { background: #1a7f37; } .broke { background: #cf222e; }
dl.run { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 12px 0; }
dl.run dt { color: #59636e; } dl.run dd { margin: 0; }
p.caption { color: #59636e; margin: 0 0 8px; }
img.chart { width: 100%; height: auto; border: 1px solid #d1d9e0; border-radius: 6px; }
table { border-collapse: collapse; width: 100%; margin: 10px 0; font-size: 13px; }
th, td { border-bottom: 1px solid #d1d9e0; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } th.n { text-align: right; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
td.yes { color: #1a7f37; font-weight: 600; } td.no, td.bad { color: #cf222e; font-weight: 600; }
td.note { color: #59636e; }
"""


def render(report: RunReport) -> str:
    run = report.run
    title = f"rideonce: {run.command}, seed {run.seed}"
    verdict = "all invariants held" if report.ok else "an invariant broke"
    facts = [
        ("seed", str(run.seed)),
        ("finished", run.finished_at.isoformat(timespec="seconds")),
        ("took", f"{run.seconds:g} s"),
        *((name, str(value)) for name, value in run.sizes.items()),
        *run.settings.items(),
    ]
    if report.baselines:
        facts.append(("compared with", ", ".join(report.baselines) + " (baselines, expected to break)"))
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{escape(title)}</h1>",
        f'<span class="verdict {"held" if report.ok else "broke"}">{verdict}</span>',
        '<dl class="run">' + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts) + "</dl>",
        "</header>",
        *_hops(report),
        *_designs(report),
        *_latency(report),
        *_checks(report),
        *_faults(report),
        *_measures(report),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _hops(report: RunReport) -> list[str]:
    rows = [
        [
            escape(hop.hop),
            escape(hop.design),
            _n(hop.received),
            _n(hop.injected),
            _n(hop.duplicates_dropped),
            _n(hop.passed_on),
            _n(hop.to_dead_letter),
            _note(hop.note),
        ]
        for hop in report.hops
    ]
    headers = ["hop", "design", "in", "injected", "duplicates dropped", "out", "to DLQ", "note"]
    if all(hop.design == EVERY_DESIGN for hop in report.hops):
        headers, rows = _without(headers, rows, "design")
    if not any(hop.injected for hop in report.hops):
        headers, rows = _without(headers, rows, "injected")
    return [
        "<section><h2>Hop flow</h2>",
        '<p class="caption">What each hop received, passed on, and stopped: every duplicate a hop lets through '
        "must be dropped further on, and the consumer's out is each accepted change exactly once.</p>",
        _chart(charts.hop_flow(report.hops), "hop flow: in, out, duplicates dropped and to DLQ per hop"),
        _table(headers, rows),
        "</section>",
    ]


def _designs(report: RunReport) -> list[str]:
    rows = [
        [
            escape(row.design + (" (baseline)" if row.baseline else "")),
            *(_n(value, bad=value > 0) for value in (row.duplicate_effects, row.lost_events, row.order_violations)),
            _n(row.parked, bad=row.parked > 0),
        ]
        for row in report.designs
    ]
    return [
        "<section><h2>Effects per consumer design</h2>",
        '<p class="caption">Duplicate effects (a rider charged twice), lost events (an accepted change that never '
        "took effect), order violations (an older version applied after a newer one), healthy events parked "
        "in the DLQ. The promise is 0 in every column.</p>",
        _chart(charts.design_effects(report.designs), "effects per consumer design"),
        _table(["design", "duplicate effects", "lost events", "order violations", "parked in the DLQ"], rows),
        "</section>",
    ]


def _latency(report: RunReport) -> list[str]:
    latency = report.latency
    if latency is None:
        return [
            "<section><h2>Commit &rarr; applied latency</h2>",
            '<p class="caption">This run recorded no commit and applied times.</p></section>',
        ]
    values = (latency.p50, latency.p90, latency.p99, latency.max)
    return [
        "<section><h2>Commit &rarr; applied latency</h2>",
        f'<p class="caption">{latency.count} changes, from the outbox commit to the consumer\'s effect: '
        f"{escape(latency.basis)}.</p>",
        _chart(charts.latency_histogram(latency), "commit to applied latency histogram with percentiles"),
        _table(
            ["changes", "p50 (s)", "p90 (s)", "p99 (s)", "max (s)"],
            [[_n(latency.count), *(_n(round(v, 2)) for v in values)]],
        ),
        "</section>",
    ]


def _checks(report: RunReport) -> list[str]:
    rows = [
        [
            escape(check.name),
            escape(check.scope),
            '<td class="yes">yes</td>' if check.held else '<td class="no">NO</td>',
            _note(check.detail),
        ]
        for check in report.checks
    ]
    headers = ["invariant", "for", "held", "detail"]
    if len({check.scope for check in report.checks}) <= 1:
        headers, rows = _without(headers, rows, "for")
    return ["<section><h2>End-to-end invariants</h2>", _table(headers, rows), "</section>"]


def _faults(report: RunReport) -> list[str]:
    if not report.faults:
        return []
    rows = [[escape(f.fault), escape(f.scope), _n(f.rate), _n(f.evaluated), _n(f.injected)] for f in report.faults]
    return [
        "<section><h2>Faults injected</h2>",
        _table(["fault", "for", "rate", "evaluated", "injected"], rows),
        "</section>",
    ]


def _measures(report: RunReport) -> list[str]:
    if not report.measures:
        return []
    rows = [[escape(m.name), _n(m.value), escape(m.unit)] for m in report.measures]
    return ["<section><h2>Measured</h2>", _table(["measure", "value", "unit"], rows), "</section>"]


def _chart(svg: str, alt: str) -> str:
    data = base64.b64encode(svg.encode()).decode("ascii")
    return f'<img class="chart" alt="{escape(alt)}" src="data:image/svg+xml;base64,{data}">'


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = list(rows)
    numeric = {
        index for row in rows for index, cell in enumerate(row) if cell.startswith(('<td class="n"', '<td class="n '))
    }
    head = "".join(
        f"<th{' class="n"' if index in numeric else ''}>{escape(header)}</th>" for index, header in enumerate(headers)
    )
    body = "".join("<tr>" + "".join(_cell(cell) for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _without(headers: list[str], rows: list[list[str]], column: str) -> tuple[list[str], list[list[str]]]:
    index = headers.index(column)
    return headers[:index] + headers[index + 1 :], [row[:index] + row[index + 1 :] for row in rows]


def _cell(cell: str) -> str:
    """A cell already wrapped in <td> stays as it is; plain (escaped) text is wrapped."""
    return cell if cell.startswith("<td") else f"<td>{cell}</td>"


def _n(value: float, bad: bool = False) -> str:
    return f'<td class="n{" bad" if bad else ""}">{value:g}</td>'


def _note(text: str) -> str:
    return f'<td class="note">{escape(text)}</td>'
