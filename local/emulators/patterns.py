"""The one EventBridge event pattern engine: a pattern compiled once, then matched against events.

For: a Pipe's FilterCriteria (local/emulators/pipes/config.py compiles them; the source applies them), and
any test or tool that asks whether a rule of template.yaml matches an event, since moto's
`test_event_pattern` is a stub. Matching follows the pattern syntax page
(https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern.html), the arrays page
(https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns-arrays.html) and the operators
page (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html).

Not here: which fields or operators a given source may use (a Pipe's DynamoDB stream filters on `dynamodb`
only, and Pipes lack some operators: local/emulators/pipes/config.py refuses those), and the routing of
PutEvents to rule targets, which moto does itself.
"""

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Predicate = Callable[[Any], bool]


class EventPattern:
    """An EventBridge event pattern, matched as EventBridge (and so a Pipe's filter) matches it.

    moto's `test_event_pattern` is a stub, hence this. Supported: nested keys; arrays of exact values
    (strings, numbers compared numerically, booleans, null), where an event array matches when any of its
    elements does and arrays of objects are flattened; `prefix` and `suffix` (also with
    `equals-ignore-case`), `equals-ignore-case`, `wildcard`, `anything-but` (a value, a list of values, or a
    prefix, suffix, equals-ignore-case or wildcard), `numeric` (=, <, <=, >, >=), `exists`, and `$or`.
    Anything else (`cidr`, unknown operators, malformed patterns) raises ValueError when the pattern is
    compiled, so a filter the emulator cannot honour is never silently ignored.
    """

    def __init__(self, pattern: str | Mapping[str, Any]) -> None:
        parsed = json.loads(pattern) if isinstance(pattern, str) else pattern
        if not isinstance(parsed, Mapping):
            raise ValueError(f"an event pattern is a JSON object, not {pattern!r}")
        self.pattern: Mapping[str, Any] = parsed
        self._matches = _compile_object(parsed, ())

    def matches(self, event: Any) -> bool:
        return self._matches(event)


def _compile_object(pattern: Mapping[str, Any], path: tuple[str, ...]) -> Predicate:
    checks: list[Predicate] = []
    for key, value in pattern.items():
        if key == "$or":
            if not isinstance(value, list) or len(value) < 2 or not all(isinstance(v, Mapping) for v in value):
                raise ValueError(f"$or at {_dotted(path)} takes an array of at least two patterns")
            checks.append(_any_of([_compile_object(alternative, path) for alternative in value]))
        elif isinstance(value, Mapping):
            checks.append(_compile_object(value, (*path, key)))
        elif isinstance(value, list):
            checks.append(_compile_field(value, (*path, key)))
        else:
            raise ValueError(f"pattern field {_dotted((*path, key))} must be an object or an array, not {value!r}")
    return _all_of(checks)


def _all_of(checks: list[Predicate]) -> Predicate:
    return lambda event: all(check(event) for check in checks)


def _any_of(checks: list[Predicate]) -> Predicate:
    return lambda event: any(check(event) for check in checks)


def _compile_field(matchers: list[Any], path: tuple[str, ...]) -> Predicate:
    """One field: it matches when any matcher of its array matches any of the field's values."""
    if not matchers:
        raise ValueError(f"pattern field {_dotted(path)} has an empty array, which EventBridge refuses")
    presence: list[bool] = []
    value_checks: list[Predicate] = []
    for matcher in matchers:
        if isinstance(matcher, Mapping) and set(matcher) == {"exists"}:
            if not isinstance(matcher["exists"], bool):
                raise ValueError(f"exists at {_dotted(path)} takes true or false")
            presence.append(matcher["exists"])
        else:
            value_checks.append(_compile_value(matcher, path))

    def check(event: Any) -> bool:
        values = _leaves(event, path)
        if any(expected == bool(values) for expected in presence):
            return True
        return any(value_check(value) for value_check in value_checks for value in values)

    return check


def _leaves(node: Any, path: Sequence[str]) -> list[Any]:
    """The values at `path`, arrays flattened at every level, as EventBridge reads an event."""
    if isinstance(node, list):
        return [leaf for element in node for leaf in _leaves(element, path)]
    if not path:
        return [] if isinstance(node, dict) else [node]
    if isinstance(node, dict) and path[0] in node:
        return _leaves(node[path[0]], path[1:])
    return []


def _compile_value(matcher: Any, path: tuple[str, ...]) -> Predicate:
    if matcher is None or isinstance(matcher, str | bool | int | float):
        return lambda value: _same(value, matcher)
    if not isinstance(matcher, Mapping) or len(matcher) != 1:
        raise ValueError(f"pattern field {_dotted(path)}: {matcher!r} is not a value or a one-operator object")
    ((operator, argument),) = matcher.items()
    if operator in ("prefix", "suffix"):
        return _affix_check(operator, argument, path)
    if operator == "equals-ignore-case":
        text = _text_argument(operator, argument, path)
        return lambda value: isinstance(value, str) and value.casefold() == text.casefold()
    if operator == "wildcard":
        regex = _wildcard(_text_argument(operator, argument, path))
        return lambda value: isinstance(value, str) and regex.fullmatch(value) is not None
    if operator == "numeric":
        return _numeric_check(argument, path)
    if operator == "anything-but":
        return _anything_but(argument, path)
    raise ValueError(f"pattern field {_dotted(path)}: the {operator!r} operator is not supported locally")


def _affix_check(operator: str, argument: Any, path: tuple[str, ...]) -> Predicate:
    ignore_case = isinstance(argument, Mapping) and set(argument) == {"equals-ignore-case"}
    text = _text_argument(operator, argument["equals-ignore-case"] if ignore_case else argument, path)

    def check(value: Any) -> bool:
        if not isinstance(value, str):
            return False
        subject, affix = (value.casefold(), text.casefold()) if ignore_case else (value, text)
        return subject.startswith(affix) if operator == "prefix" else subject.endswith(affix)

    return check


def _numeric_check(argument: Any, path: tuple[str, ...]) -> Predicate:
    comparisons: dict[str, Callable[[float, float], bool]] = {
        "=": lambda a, b: a == b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    pairs = list(zip(argument[::2], argument[1::2], strict=True)) if isinstance(argument, list) else []
    if not pairs or any(op not in comparisons or not _is_number(bound) for op, bound in pairs):
        raise ValueError(f"numeric at {_dotted(path)} takes [operator, number, ...], not {argument!r}")
    return lambda value: _is_number(value) and all(comparisons[op](value, bound) for op, bound in pairs)


def _anything_but(argument: Any, path: tuple[str, ...]) -> Predicate:
    if isinstance(argument, Mapping):
        if len(argument) != 1:
            raise ValueError(f"anything-but at {_dotted(path)} takes one operator")
        ((operator, inner),) = argument.items()
        if operator not in ("prefix", "suffix", "equals-ignore-case", "wildcard"):
            raise ValueError(f"anything-but at {_dotted(path)} does not support {operator!r}")
        excluded = [_compile_value({operator: text}, path) for text in (inner if isinstance(inner, list) else [inner])]
        # Only strings can be excluded by a string operator; any other value is "anything but" them.
        return lambda value: not (isinstance(value, str) and any(check(value) for check in excluded))
    values = argument if isinstance(argument, list) else [argument]
    if not values or not all(v is None or isinstance(v, str | bool | int | float) for v in values):
        raise ValueError(f"anything-but at {_dotted(path)} takes a value or a list of values, not {argument!r}")
    return lambda value: not any(_same(value, excluded) for excluded in values)


def _same(value: Any, expected: Any) -> bool:
    if _is_number(expected):
        return _is_number(value) and value == expected
    if isinstance(expected, bool) or expected is None:
        return value is expected
    return isinstance(value, str) and value == expected


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text_argument(operator: str, argument: Any, path: tuple[str, ...]) -> str:
    if not isinstance(argument, str):
        raise ValueError(f"{operator} at {_dotted(path)} takes a string, not {argument!r}")
    return argument


def _wildcard(text: str) -> re.Pattern[str]:
    """`*` matches any run of characters; `\\*` is a literal star and `\\\\` a literal backslash."""
    parts: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text) and text[index + 1] in "*\\":
            parts.append(re.escape(text[index + 1]))
            index += 2
            continue
        parts.append(".*" if char == "*" else re.escape(char))
        index += 1
    return re.compile("".join(parts), re.DOTALL)


def _dotted(path: Sequence[str]) -> str:
    return ".".join(path) or "(top)"
