"""What a handler printed as CloudWatch embedded-format metrics, read back for assertions."""

import json
from typing import Any


def metrics_emitted(output: str) -> dict[str, Any]:
    """The embedded-format metrics in `output`, by name (a metric recorded several times keeps its last list)."""
    values: dict[str, Any] = {}
    for line in output.splitlines():
        if '"_aws"' in line:
            blob = json.loads(line)
            for directive in blob["_aws"]["CloudWatchMetrics"]:
                for metric in directive["Metrics"]:
                    values[metric["Name"]] = blob[metric["Name"]]
    return values
