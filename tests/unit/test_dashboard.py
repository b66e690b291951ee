"""The operations dashboard graphs only metrics that exist: AWS's own, or ones the functions emit.

A metric name the code never emits would draw an empty graph forever, and nobody would notice.
Body syntax: https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/CloudWatch-Dashboard-Body-Structure.html
"""

import json
import re
from pathlib import Path
from typing import Any

import pytest

from local.aws.template import ROOT, load_raw
from rideonce.handlers import consumer, enrichment
from rideonce.observability import METRIC_NAMESPACE

PENDING = {"ConsumerLagMilliseconds"}
"""Graphed before the consumer emits it: milliseconds from an event's occurredAt to its application."""
PLACEHOLDER = re.compile(r"\$\{([^}!]+)\}")


def dashboard() -> tuple[str, dict[str, Any]]:
    """The dashboard body as written (with ${...} placeholders), and parsed with each placeholder filled."""
    template = load_raw()
    (dashboards,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    body = dashboards["Properties"]["DashboardBody"]["Fn::Sub"]
    return body, json.loads(PLACEHOLDER.sub("x", body))


def graphed() -> list[tuple[str, str]]:
    """(namespace, metric name) of every metric a widget draws."""
    _, body = dashboard()
    found = []
    for widget in body["widgets"]:
        for metric in widget.get("properties", {}).get("metrics", []):
            names = [part for part in metric if isinstance(part, str)]
            # Every metric spelled out: no "." or "..." shorthand for the previous row's values.
            assert "." not in names
            assert "..." not in names
            found.append((names[0], names[1]))
    return found


def emitted() -> set[str]:
    """Metric names the functions emit: string literals in the modules that call add_metric."""
    names: set[str] = set()
    for path in Path(ROOT, "functions").rglob("*.py"):
        source = path.read_text()
        if "add_metric(" in source:
            names |= set(re.findall(r'"([A-Z][A-Za-z]+)"', source))
    return names


def test_every_graphed_metric_is_aws_or_emitted_by_a_function() -> None:
    # Given the metrics the functions emit
    known = emitted()
    # When the dashboard's metrics are read
    # Then each is an AWS metric or one of ours that some function emits (or the one announced as pending)
    ours = [(namespace, name) for namespace, name in graphed() if not namespace.startswith("AWS/")]
    assert {namespace for namespace, _ in ours} == {METRIC_NAMESPACE}
    unknown = {name for _, name in ours} - known - PENDING
    assert not unknown, f"graphed but never emitted: {sorted(unknown)}"


def test_every_metric_a_function_emits_is_graphed() -> None:
    # Given the metric names passed to add_metric in the functions
    called: set[str] = set()
    for path in Path(ROOT, "functions").rglob("*.py"):
        called |= set(re.findall(r'add_metric\(name="([A-Za-z]+)"', path.read_text()))
    # and the names passed through a constant
    called |= set(consumer._METRIC.values()) | {enrichment.SKIPPED_METRIC}
    # Then the dashboard draws each of them
    assert called - {name for _, name in graphed()} == set()


@pytest.mark.parametrize("hop", ["API", "Pipe", "consumer", "lag", "dead-letter", "reconciler"])
def test_each_hop_has_a_graph(hop: str) -> None:
    _, body = dashboard()
    titles = [widget["properties"].get("title", "") for widget in body["widgets"] if widget["type"] == "metric"]
    assert any(hop.lower() in title.lower() for title in titles), titles


def test_the_lag_is_graphed_as_percentiles_of_milliseconds() -> None:
    _, body = dashboard()
    (lag,) = [w for w in body["widgets"] if "ConsumerLagMilliseconds" in json.dumps(w)]
    stats = {metric[-1]["stat"] for metric in lag["properties"]["metrics"]}
    assert {"p50", "p99", "Maximum"} <= stats


def test_every_placeholder_names_a_resource_or_a_pseudo_parameter() -> None:
    body, _ = dashboard()
    resources = set(load_raw()["Resources"])
    for name in PLACEHOLDER.findall(body):
        assert name.startswith("AWS::") or name.split(".")[0] in resources, name
