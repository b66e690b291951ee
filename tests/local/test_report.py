"""The run report: one model, read back from its JSON, built from a chaos file, drawn as tables and as a page.

The page is checked as a person sees it: headless Chromium (the Debian package) screenshots it, and the
PNG must be a real drawing, not a blank or an error page.
"""

import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console

from local import report as report_command
from local.workload.report import html, terminal
from local.workload.report.chaos_file import from_chaos_json
from local.workload.report.files import write
from local.workload.report.json_codec import from_json, to_json
from local.workload.report.model import (
    CheckRow,
    DesignRow,
    HopRow,
    Latency,
    Measure,
    RunInfo,
    RunReport,
    histogram,
    percentile,
)
from local.workload.report.screenshot import WINDOW, screenshot

CHAOS_FILE = Path(__file__).parent / "data" / "chaos-report.json"
"""What `make chaos ARGS="--rides 30 --workers 1 --json ..."` wrote, seed 1: the file from_chaos_json reads."""


def demo_like_report(held: bool = True) -> RunReport:
    samples = [0.2, 0.4, 0.4, 0.5, 0.7, 0.9, 1.1, 1.3, 2.0, 6.5]
    return RunReport(
        run=RunInfo(
            command="make demo",
            seed=7,
            finished_at=datetime(2026, 11, 23, 19, 0, tzinfo=UTC),
            seconds=42.5,
            sizes={"rides": 3, "ride changes": 10},
            settings={"retry rate": "0.1", "archive replay": "yes"},
        ),
        hops=[
            HopRow("client -> API", received=12, passed_on=10, duplicates_dropped=2, note="2 client retries"),
            HopRow("bus -> queue -> consumer", received=11, passed_on=10, duplicates_dropped=1, to_dead_letter=0),
            HopRow("archive replay -> consumer", received=10, passed_on=0, duplicates_dropped=10, note="<b>x</b> & y"),
        ],
        designs=[DesignRow("rideonce", duplicate_effects=0, lost_events=0, order_violations=0, parked=0)],
        checks=[
            CheckRow("no rider charged twice or missed", True, "charged 40.00 EUR for 2 completed rides"),
            CheckRow("each ride's versions were applied in increasing order", held, "0 rides out of order"),
        ],
        latency=Latency.from_samples(samples, basis="wall clock of this machine"),
        measures=[Measure("API ride changes per second", 21.5, "/s")],
    )


def test_percentiles_are_nearest_rank_and_the_histogram_holds_every_sample() -> None:
    # Given ten samples
    samples = [0.2, 0.4, 0.4, 0.5, 0.7, 0.9, 1.1, 1.3, 2.0, 6.5]
    # When they are summarised
    latency = Latency.from_samples(samples, basis="test")
    # Then each percentile is a sample with at least that share at or below it
    assert (latency.p50, latency.p90, latency.p99, latency.max) == (0.7, 2.0, 6.5, 6.5)
    assert percentile([5.0], 0.99) == 5.0
    # And the histogram counts every sample once, in bins of one round width from 0 past the worst
    bins = latency.histogram
    assert sum(bins.counts) == latency.count == 10
    assert bins.edges[0] == 0
    assert bins.edges[-1] >= 6.5
    widths = {round(right - left, 6) for left, right in pairwise(bins.edges)}
    assert widths == {0.5}
    assert bins.counts[0] == 3
    assert bins.counts[-1] == 1
    # A sample on the last edge falls in the last bin, not outside
    assert sum(histogram([0.0, 1.0, 2.0], bins=2).counts) == 3
    with pytest.raises(ValueError, match="no latency samples"):
        Latency.from_samples([], basis="test")


def test_the_json_file_reads_back_as_the_same_report() -> None:
    # Given a report
    report = demo_like_report()
    # When it is written as JSON and read back
    text = to_json(report)
    # Then it is the same report, and the file says the verdict for readers that want only that
    assert from_json(text) == report
    assert json.loads(text)["ok"] is True
    # And a file of another shape is refused, not half read
    broken = json.loads(text)
    broken["hops"][0]["received"] = "many"
    with pytest.raises(ValueError, match="received"):
        from_json(json.dumps(broken))


def test_a_baseline_breaking_its_checks_is_the_comparison_but_ours_breaking_one_fails_the_run() -> None:
    # Given a chaos file in which the baselines broke invariants and rideonce held them all
    report = from_chaos_json(json.loads(CHAOS_FILE.read_text()))
    # Then the run holds, as `make chaos` said of the same file
    assert report.ok is json.loads(CHAOS_FILE.read_text())["ok"] is True
    assert report.baselines == ["check-then-write", "powertools"]
    assert any(not check.held for check in report.checks if check.scope == "check-then-write")
    # When one of rideonce's checks is marked broken, the run fails
    broken = [replace(check, held=False) if check.scope == "rideonce" else check for check in report.checks]
    assert not replace(report, checks=broken).ok


def test_a_chaos_file_becomes_the_same_hops_designs_and_checks() -> None:
    # Given the file `make chaos --json` writes
    data = json.loads(CHAOS_FILE.read_text())
    # When the report is built from it
    report = from_chaos_json(data, finished_at=datetime(2026, 11, 23, 19, 22, tzinfo=UTC))
    # Then what ran is the chaos run's seed and sizes
    assert (report.run.command, report.run.seed) == ("make chaos", 1)
    assert report.run.sizes == {"rides": 30, "ride changes": 108}
    assert report.run.seconds == data["seconds"]["total"]
    # And every hop row is there, upstream first, with the consumer hops per design
    assert len(report.hops) == len(data["upstream_hops"]) + sum(len(d["hops"]) for d in data["designs"].values())
    consumer = next(hop for hop in report.hops if hop.hop == "queue -> consumer" and hop.design == "rideonce")
    source = data["designs"]["rideonce"]["hops"][0]
    assert (consumer.received, consumer.duplicates_dropped, consumer.passed_on) == (
        source["received"],
        source["dropped"],
        source["applied"],
    )
    # And what a hop parked, which the file gives only in the note, is read from it
    parked = int(re.search(r"(\d+) parked in the DLQ", source["note"]).group(1))  # type: ignore[union-attr]
    assert consumer.to_dead_letter == parked
    relay = next(hop for hop in report.hops if hop.hop == "stream -> Pipe -> bus")
    assert relay.to_dead_letter == 2  # "2 rejections quarantined", no DLQ pointers in this run
    # And each design's effects are the file's metrics
    rows = {row.design: row for row in report.designs}
    for name, design in data["designs"].items():
        metrics = design["metrics"]
        assert (rows[name].duplicate_effects, rows[name].lost_events, rows[name].order_violations) == (
            metrics["duplicate_effects"],
            metrics["lost_events"],
            metrics["order_violations"],
        )
    assert rows["check-then-write"].duplicate_effects > 0
    assert rows["rideonce"].duplicate_effects == 0
    # And no latency is invented: the file has no commit or applied times
    assert report.latency is None
    assert {fault.scope for fault in report.faults} == {"upstream", *data["designs"]}


def test_the_terminal_tables_say_whether_every_invariant_held() -> None:
    # Given a report whose checks held, and one where a check broke
    console = Console(record=True, width=160)
    # When each is printed
    terminal.render(demo_like_report(), console)
    held = console.export_text()
    console = Console(record=True, width=160)
    terminal.render(demo_like_report(held=False), console)
    broke = console.export_text()
    # Then the hops, the effects, the latency and the verdict are there
    assert "client -> API" in held
    assert "duplicates dropped" in held
    assert "p50 0.70 s, p90 2.00 s, p99 6.50 s, max 6.50 s" in held
    assert held.rstrip().endswith("all invariants held")
    assert broke.rstrip().endswith("an invariant broke")


def test_the_page_is_one_file_that_needs_no_network(tmp_path: Path) -> None:
    # Given a report with a note that looks like markup
    report = demo_like_report()
    # When the page and the JSON are written
    json_path, html_path = write(report, tmp_path)
    page = html_path.read_text()
    # Then nothing on the page refers to the network: styles inline, charts as data URIs, no script
    assert not re.search(r"https?:", page)
    assert "<link" not in page
    assert "<script" not in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 3
    assert all(source.startswith("data:image/svg+xml;base64,") for source in sources)
    # And it says the verdict, the numbers, and shows the note as text, not markup
    assert "all invariants held" in page
    assert "p99 (s)" in page
    assert "&lt;b&gt;x&lt;/b&gt; &amp; y" in page
    assert from_json(json_path.read_text()) == report


def test_a_report_without_latency_says_so_instead_of_drawing_an_empty_chart() -> None:
    page = html.render(replace(demo_like_report(), latency=None))
    assert "recorded no commit and applied times" in page
    assert len(re.findall(r'src="data:image/svg\+xml', page)) == 2


def test_chromium_draws_the_page(tmp_path: Path) -> None:
    # Given the page of a chaos run (the widest report: three designs, fifteen hops)
    _, page = write(from_chaos_json(json.loads(CHAOS_FILE.read_text())), tmp_path)
    # When headless Chromium loads it from the file system and screenshots it
    png = screenshot(page, tmp_path / "report.png")
    # Then the PNG is the window's size and a real drawing: many colours, not one flat fill or an error page
    with Image.open(png) as image:
        assert image.size == WINDOW
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
    assert colours is not None
    assert len(colours) > 50
    background = max(colours)[0]
    assert background < image.size[0] * image.size[1] * 0.95


@pytest.mark.parametrize("content", [None, "{}", "not json"])
def test_a_chaos_file_that_is_missing_or_not_a_chaos_report_is_refused_with_its_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None
) -> None:
    # Given a path with no file, an empty JSON object, or text that is not JSON
    chaos = tmp_path / "chaos.json"
    if content is not None:
        chaos.write_text(content)
    # When the screenshot command is asked to draw it
    with pytest.raises(SystemExit) as exit_:
        report_command.main(["--chaos", str(chaos)])
    # Then it stops with a usage error naming the file, and writes no page
    assert exit_.value.code == 2
    assert f"--chaos {chaos}: not a file `make chaos --json` wrote" in capsys.readouterr().err
    assert not chaos.with_suffix(".html").exists()
