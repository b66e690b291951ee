"""The report as a JSON file, and back: the file a script or a later run reads, in the model's own shape.

pydantic validates the dataclasses on the way back, so a file from another version fails loudly instead of
filling a report with wrong types. `ok` is written beside the model for readers that only want the verdict;
reading ignores it, as the model derives it.
"""

import json
from typing import Any

from pydantic import TypeAdapter

from local.workload.report.model import RunReport

_ADAPTER = TypeAdapter(RunReport)


def as_dict(report: RunReport) -> dict[str, Any]:
    """The report as JSON-ready data: numbers, strings, lists, ISO 8601 instants."""
    data: dict[str, Any] = _ADAPTER.dump_python(report, mode="json")
    return data | {"ok": report.ok}


def to_json(report: RunReport) -> str:
    return json.dumps(as_dict(report), indent=2) + "\n"


def from_dict(data: dict[str, Any]) -> RunReport:
    return _ADAPTER.validate_python({key: value for key, value in data.items() if key != "ok"})


def from_json(text: str) -> RunReport:
    loaded = json.loads(text)
    if not isinstance(loaded, dict):
        raise ValueError("a report file holds one JSON object")
    return from_dict(loaded)
