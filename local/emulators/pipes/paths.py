"""A Pipe target's dynamic path parameters (`$.detail.state`): recognised, parsed, evaluated on an item.

For: config.py, which checks a path when the pipe is configured, and target.py, which reads it from each
item. Only dot notation and array indexes are supported; wildcards and filters raise ValueError. Not here:
whether a path may be used at all (config.py refuses one after an enrichment) or input templates, which
are not emulated (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-pipes-event-target.html,
section "Dynamic path parameters").
"""

import re
from typing import Any

_PATH_STEP = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")


def is_json_path(value: str) -> bool:
    """A target parameter is dynamic when the whole value is a JSON path ("$.detail.state")."""
    return value.startswith(("$.", "$["))


def parse_json_path(path: str) -> tuple[str | int, ...]:
    """The steps of a Pipes JSON path: dot notation and array indexes, no wildcards or filters."""
    if not is_json_path(path):
        raise ValueError(f"{path!r} is not a JSON path (it must start with '$.')")
    steps: list[str | int] = []
    position = 1
    while position < len(path):
        match = _PATH_STEP.match(path, position)
        if match is None:
            raise ValueError(f"{path!r}: only dot notation and [index] are supported in a Pipe's JSON path")
        steps.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        position = match.end()
    return tuple(steps)


def evaluate_json_path(item: Any, path: str) -> Any:
    """The value at `path` in `item`; LookupError when the item has nothing there."""
    node = item
    for step in parse_json_path(path):
        found = (isinstance(step, int) and isinstance(node, list) and step < len(node)) or (
            isinstance(step, str) and isinstance(node, dict) and step in node
        )
        if not found:
            raise LookupError(f"{path} is not in the item")
        node = node[step]
    return node
