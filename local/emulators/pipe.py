"""The EventBridge Pipe, which moto accepts but never runs, emulated on AWS's documented behaviour only.

One `PipeRunner` runs one `AWS::Pipes::Pipe` of the shape template.yaml uses: a DynamoDB stream source,
an optional Lambda enrichment and an event bus target. Each behaviour below is the document's; the table
in docs/aws-behaviour.md ("The Pipe") lists them with their addresses.

- Every shard is read through `dynamodbstreams` (describe_stream, one iterator per shard from
  StartingPosition, get_records), a parent shard to its end before its children; order is kept per shard
  (eb-pipes-dynamodb: https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-pipes-dynamodb.html).
- FilterCriteria: records no pattern matches are consumed, never batched. A pattern may filter only the
  record's `dynamodb` key: the Pipes filtering page lists eventName, eventSource, eventSourceARN, eventID,
  eventVersion, awsRegion, invokeIdentityArn and eventSourceKey as fields that can't be used in patterns
  (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-pipes-event-filtering.html) and Lambda's
  DynamoDB page filters on `dynamodb` only
  (https://docs.aws.amazon.com/lambda/latest/dg/with-ddb-filtering.html). Any other field, an operator
  Pipes do not support (anything-but with prefix, suffix, equals-ignore-case or wildcard:
  https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html; wildcard,
  absent from Lambda's filter rule syntax: https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventfiltering.html)
  and any operator `EventPattern` does not implement raise ValueError when the pipe is configured.
- Batches of at most BatchSize, sent when full or MaximumBatchingWindowInSeconds after their first record
  (waits on the runner's clock, local/emulators/clock.py); an event bus target takes at most 10, and more
  than 10 items from the enrichment fail the batch without invoking the target
  (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-pipes-batching-concurrency.html).
- The enrichment gets the batch as a bare JSON array of records, with what moto's records lack
  (`eventSourceARN`; ApproximateCreationDateTime in epoch seconds). Its answer "", {} or [] invokes no
  target and the batch succeeds (https://docs.aws.amazon.com/eventbridge/latest/userguide/pipes-enrichment.html);
  a JSON object or an array of them is put, one event each, Detail = the item. Nothing else is documented
  (null included), so anything else fails the batch loudly.
- Target parameters: Source and DetailType are static strings when an enrichment is configured; a dynamic
  path (`$.x`) is refused there, because the documents say dynamic paths read "the event payload" and not
  what they read after an enrichment (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-pipes-event-target.html).
  Without an enrichment a path reads the record.
- A PutEvents partial failure retries only the remainder, through the whole pipe, enrichment included
  (batching page, "Partial batch failure"). Failed entries are mapped back to records by the `eventID`
  the enrichment's items carry, which that page asks enrichments to include; when a failed item carries
  none of the batch's eventIDs the whole batch is the remainder. Entries that succeeded are not put again
  unless they belong to a record in the remainder.
- A failed batch (enrichment error, PutEvents failure): with AUTOMATIC_BISECT a batch of two or more is
  halved and each half tried in order (halving does not count as a retry); otherwise it is retried, with a
  backoff, up to MaximumRetryAttempts (-1: until its records are too old). Records older than
  MaximumRecordAgeInSeconds (against `now`) are not sent again
  (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-pipes-error-troubleshooting.html).
- A batch out of retries or out of age goes to the DeadLetterConfig SQS queue (without one it is
  discarded), and only then does its shard move on. The message is a pointer, not the records:
  `context` (partnerResourceArn, condition), `version`, `timestamp` and `DDBStreamBatchInfo` (shard, first
  and last sequence numbers, arrival times, batch size, stream ARN), the shape of Lambda's documented
  on-failure record for DynamoDB streams
  (https://docs.aws.amazon.com/lambda/latest/dg/services-dynamodb-errors.html); the Pipes pages document
  no shape of their own. The condition is "RetryAttemptsExhausted" for retries; AWS documents no name
  for records past their maximum age, so that message has no condition. A person redrives from the
  outbox table (README), which outlives the 24 h stream.

Refused when configured rather than ignored: input templates, EnrichmentParameters, SNS dead-letter
targets, any other source, enrichment or target. Accepted but simplified: ParallelizationFactor above 1
runs one batch at a time per shard (stricter order than AWS). Not modelled: the 6 MB payload limit and
the throttling AWS applies to a failing pipe beyond the retry backoff here (1 s doubling to 30 s, an
emulator choice: AWS documents none).
"""

import base64
import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError

from local.aws.functions import LocalFunction
from local.aws.template import Stack
from local.emulators.clock import Clock, WallClock

if TYPE_CHECKING:
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_dynamodbstreams.type_defs import RecordTypeDef
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef
    from mypy_boto3_sqs import SQSClient

LOG = logging.getLogger(__name__)

EVENT_BUS_BATCH_LIMIT = 10
"""An event bus target takes at most 10 events per batch (PutEvents' limit), so BatchSize may not exceed it."""
DEFAULT_BATCH_SIZE = 100
GET_RECORDS_LIMIT = 1000
SHARD_REFRESH_SECONDS = 10.0
RETRY_BACKOFF_SECONDS = 1.0
RETRY_BACKOFF_MAX_SECONDS = 30.0
BISECT = "AUTOMATIC_BISECT"
RETRIES_EXHAUSTED = "RetryAttemptsExhausted"

_SOURCE_PARAMETERS = {"FilterCriteria", "DynamoDBStreamParameters"}
_STREAM_PARAMETERS = {
    "StartingPosition",
    "BatchSize",
    "MaximumBatchingWindowInSeconds",
    "MaximumRetryAttempts",
    "MaximumRecordAgeInSeconds",
    "OnPartialBatchItemFailure",
    "DeadLetterConfig",
    "ParallelizationFactor",
}
_BUS_PARAMETERS = {"DetailType", "Source", "Resources"}


# ---------------------------------------------------------------- event patterns


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
    raise ValueError(f"pattern field {_dotted(path)}: the {operator!r} operator is not supported by the local Pipe")


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


# ---------------------------------------------------------------- dynamic path parameters

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


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class PipeConfig:
    """One AWS::Pipes::Pipe from a DynamoDB stream to an event bus, as the translated template sets it."""

    logical_id: str
    name: str
    arn: str
    source_arn: str
    filters: tuple[str, ...]
    starting_position: str
    batch_size: int
    batching_window_seconds: int
    maximum_retry_attempts: int
    maximum_record_age_seconds: int
    on_partial_batch_item_failure: str | None
    dead_letter_arn: str | None
    enrichment_function: str | None
    target_arn: str
    event_bus_name: str
    detail_type: str | None
    source: str | None
    resources: tuple[str, ...] = ()
    parallelization_factor: int = 1
    desired_state: str = "RUNNING"

    @property
    def bisect(self) -> bool:
        return self.on_partial_batch_item_failure == BISECT

    def patterns(self) -> list[EventPattern]:
        return [EventPattern(text) for text in self.filters]


def pipe_configs(stack: Stack) -> list[PipeConfig]:
    """Every AWS::Pipes::Pipe of the translated template.

    Call it once the tables, queues and buses exist (local.dynamodb, local.eventbridge), so the stream,
    queue and bus ARNs in its properties are the local ones. A property the emulator cannot honour raises
    ValueError rather than being ignored.
    """
    return [_pipe_config(stack, logical_id) for logical_id in stack.of_type("AWS::Pipes::Pipe")]


def _pipe_config(stack: Stack, logical_id: str) -> PipeConfig:
    props = stack.properties(logical_id)
    where = f"{logical_id}:"
    source_arn = str(props["Source"])
    if not re.fullmatch(r"arn:[^:]+:dynamodb:[^:]*:[^:]*:table/[^/]+/stream/.+", source_arn):
        raise ValueError(f"{where} only a DynamoDB stream source is emulated, not {source_arn}")
    source_parameters = props.get("SourceParameters", {})
    _refuse_unknown(where + " SourceParameters", source_parameters, _SOURCE_PARAMETERS)
    stream = source_parameters.get("DynamoDBStreamParameters", {})
    _refuse_unknown(where + " DynamoDBStreamParameters", stream, _STREAM_PARAMETERS)
    filters = tuple(str(entry["Pattern"]) for entry in source_parameters.get("FilterCriteria", {}).get("Filters", []))
    for pattern in filters:
        refuse_undocumented_stream_filter(EventPattern(pattern).pattern, where)
    starting_position = str(stream.get("StartingPosition", ""))
    if starting_position not in ("TRIM_HORIZON", "LATEST"):
        raise ValueError(f"{where} StartingPosition must be TRIM_HORIZON or LATEST, not {starting_position!r}")
    on_failure = stream.get("OnPartialBatchItemFailure")
    if on_failure not in (None, BISECT):
        raise ValueError(f"{where} OnPartialBatchItemFailure {on_failure!r} is not {BISECT}")
    dead_letter_arn = stream.get("DeadLetterConfig", {}).get("Arn")
    if dead_letter_arn is not None and not str(dead_letter_arn).startswith("arn:aws:sqs:"):
        raise ValueError(f"{where} only an SQS dead-letter queue is emulated, not {dead_letter_arn}")
    if "EnrichmentParameters" in props:
        raise ValueError(f"{where} EnrichmentParameters (input templates, HTTP parameters) are not emulated")
    target_arn = str(props["Target"])
    bus = re.fullmatch(r"arn:[^:]+:events:[^:]*:[^:]*:event-bus/(.+)", target_arn)
    if bus is None:
        raise ValueError(f"{where} only an event bus target is emulated, not {target_arn}")
    target_parameters = props.get("TargetParameters", {})
    _refuse_unknown(where + " TargetParameters", target_parameters, {"EventBridgeEventBusParameters"})
    bus_parameters = target_parameters.get("EventBridgeEventBusParameters", {})
    _refuse_unknown(where + " EventBridgeEventBusParameters", bus_parameters, _BUS_PARAMETERS)
    enrichment = props.get("Enrichment")
    for value in [bus_parameters.get("DetailType"), bus_parameters.get("Source"), *bus_parameters.get("Resources", [])]:
        if isinstance(value, str) and is_json_path(value):
            if enrichment is not None:
                raise ValueError(
                    f"{where} the target parameter {value} is a dynamic path after an enrichment: no AWS document "
                    "says whether it reads the enrichment's output or the source record; use a static value"
                )
            parse_json_path(value)
    batch_size = int(stream.get("BatchSize", DEFAULT_BATCH_SIZE))
    if batch_size > EVENT_BUS_BATCH_LIMIT:
        raise ValueError(f"{where} BatchSize {batch_size} exceeds what an event bus target takes per batch (10)")
    return PipeConfig(
        logical_id=logical_id,
        name=str(props.get("Name") or stack.name_of(logical_id)),
        arn=stack.get_att(logical_id, "Arn"),
        source_arn=source_arn,
        filters=filters,
        starting_position=starting_position,
        batch_size=batch_size,
        batching_window_seconds=int(stream.get("MaximumBatchingWindowInSeconds", 0)),
        maximum_retry_attempts=int(stream.get("MaximumRetryAttempts", -1)),
        maximum_record_age_seconds=int(stream.get("MaximumRecordAgeInSeconds", -1)),
        on_partial_batch_item_failure=on_failure,
        dead_letter_arn=dead_letter_arn,
        enrichment_function=_enrichment_function(stack, where, enrichment),
        target_arn=target_arn,
        event_bus_name=bus.group(1),
        detail_type=bus_parameters.get("DetailType"),
        source=bus_parameters.get("Source"),
        resources=tuple(str(resource) for resource in bus_parameters.get("Resources", [])),
        parallelization_factor=int(stream.get("ParallelizationFactor", 1)),
        desired_state=str(props.get("DesiredState", "RUNNING")),
    )


def _enrichment_function(stack: Stack, where: str, arn: Any) -> str | None:
    """The logical id of the Lambda function the Enrichment ARN names (qualifier or not)."""
    if arn is None:
        return None
    match = re.fullmatch(r"arn:[^:]+:lambda:[^:]*:[^:]*:function:([^:]+)(:[^:]+)?", str(arn))
    if match is None:
        raise ValueError(f"{where} only a Lambda function enrichment is emulated, not {arn}")
    by_name: dict[str, str] = {}
    for logical_id in stack.of_type("AWS::Lambda::Function"):
        by_name[str(stack.ref(logical_id))] = logical_id
        explicit = stack.properties(logical_id).get("FunctionName")
        if explicit:
            by_name[str(explicit)] = logical_id
    if match.group(1) not in by_name:
        raise ValueError(f"{where} the enrichment {arn} is not a function of this template")
    return by_name[match.group(1)]


def refuse_undocumented_stream_filter(pattern: Mapping[str, Any], where: str = "") -> None:
    """ValueError unless the pattern filters on the record's `dynamodb` key alone (through `$or` too).

    The Pipes filtering page lists the fields a poller adds (eventName, eventSource, eventSourceARN, eventID,
    awsRegion, ...) as fields that can't be used in patterns, and Lambda's DynamoDB filtering page says a
    DynamoDB source filters on the `dynamodb` key only; AWS may reject or ignore anything else.
    """
    for key, value in pattern.items():
        if key == "$or":
            for alternative in value:
                refuse_undocumented_stream_filter(alternative, where)
        elif key != "dynamodb":
            raise ValueError(
                f"{where} filter field {key!r}: a DynamoDB stream source filters on the `dynamodb` key only "
                "(eb-pipes-event-filtering, with-ddb-filtering)".strip()
            )
        else:
            _refuse_operators_pipes_lack(value, where)


def _refuse_operators_pipes_lack(node: Any, where: str) -> None:
    """The operators page marks anything-but with prefix, suffix, equals-ignore-case or wildcard as not
    supported by Pipes, and Lambda's filter rule syntax (which Pipes filtering follows) has no wildcard."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "wildcard" or (key == "anything-but" and isinstance(value, Mapping)):
                raise ValueError(f"{where} filter operator {key} {json.dumps(value)}: not supported by Pipes".strip())
            _refuse_operators_pipes_lack(value, where)
    elif isinstance(node, list):
        for element in node:
            _refuse_operators_pipes_lack(element, where)


def _refuse_unknown(where: str, section: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(section) - known)
    if unknown:
        raise ValueError(f"{where} {', '.join(unknown)} not emulated by the local Pipe")


# ---------------------------------------------------------------- the runner


@dataclass
class PipeStats:
    """What the Pipe did, for the demo report. `events_put` counts re-puts: it exceeds the records on retries."""

    records_read: int = 0
    filtered_out: int = 0
    batches: int = 0
    enrichment_invocations: int = 0
    enrichment_errors: int = 0
    empty_enrichments: int = 0
    events_put: int = 0
    put_failures: int = 0
    retries: int = 0
    bisections: int = 0
    records_expired: int = 0
    dlq_messages: int = 0
    records_to_dlq: int = 0
    records_discarded: int = 0


@dataclass
class _Batch:
    records: list[dict[str, Any]]
    attempts: int = 0  # attempts made on batches holding these records, parents before a bisection included
    retries: int = 0  # retries of exactly these records, what MaximumRetryAttempts limits
    not_before: float = 0.0  # the clock's time of the next attempt
    error: str | None = None  # why the last attempt failed


@dataclass
class _Shard:
    shard_id: str
    parent_id: str | None
    iterator: str | None  # None once the shard is closed and read to its end
    last_sequence: str | None = None
    buffer: list[dict[str, Any]] = field(default_factory=list)
    buffered_since: float | None = None
    pending: deque[_Batch] = field(default_factory=deque)

    @property
    def finished(self) -> bool:
        return self.iterator is None and not self.buffer and not self.pending


class _BatchFailure(Exception):
    """The batch did not reach the bus whole; the message says why, for logs.

    `remainder` is set when part of the batch did reach the bus: the records still to deliver.
    """

    def __init__(self, message: str, remainder: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.remainder = remainder


class TargetFailed(_BatchFailure):
    """Raised by an `around_delivery` hook instead of delivering: the attempt failed as a target error does
    (retried, bisected, then given up to the dead-letter queue)."""


AroundDelivery = Callable[[list[dict[str, Any]], Callable[[], None]], None]
"""Called for every attempt with the batch's records and the attempt itself: it delivers by calling the
attempt (once, or more to deliver the batch again) or fails the attempt by raising `TargetFailed`."""


class PipeRunner:
    """Runs one Pipe: `poll()` in a foreground loop, `run_until_quiet()` to drain, `run_forever()` in a thread.

    `enrich` is the enrichment function's invocation (e.g. `LocalFunction.invoke`); it gets the bare JSON
    array of records. Record age, the batching window and the retry backoff are measured on `clock` (the
    clock moto was given, which stamps the stream records); `time_scale` multiplies the two waits only,
    and 0 skips them (for a caller that runs its pipe on this machine's time and must never wait).
    `on_event` gets one dict per event the bus accepted (see `describe_forwarded`), `on_dead_letter` each
    dead-letter message body.
    `around_delivery` is the seam for faults at the target (see `AroundDelivery`); without it every
    attempt delivers once.
    """

    def __init__(
        self,
        config: PipeConfig,
        enrich: Callable[[Any], Any] | None = None,
        *,
        streams: "DynamoDBStreamsClient | None" = None,
        events: "EventBridgeClient | None" = None,
        sqs: "SQSClient | None" = None,
        clock: Clock | None = None,
        time_scale: float = 1.0,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        on_dead_letter: Callable[[dict[str, Any]], None] | None = None,
        around_delivery: AroundDelivery | None = None,
    ) -> None:
        if config.enrichment_function is not None and enrich is None:
            raise ValueError(f"{config.logical_id} enriches with {config.enrichment_function}: pass its invoke")
        self.config = config
        self.stats = PipeStats()
        self._enrich = enrich
        self._streams = streams or boto3.client("dynamodbstreams")
        self._events = events or boto3.client("events")
        self._sqs = sqs or boto3.client("sqs")
        self._clock: Clock = clock or WallClock()
        self._time_scale = time_scale
        self._on_event = on_event
        self._on_dead_letter = on_dead_letter
        self._around_delivery = around_delivery
        self._patterns = config.patterns()
        self._lock = threading.RLock()
        self._shards: dict[str, _Shard] = {}
        self._discovered_at = 0.0
        self._dlq_url = (
            self._sqs.get_queue_url(QueueName=config.dead_letter_arn.rsplit(":", 1)[1])["QueueUrl"]
            if config.dead_letter_arn
            else None
        )
        # Iterators are taken now, as AWS takes them when the pipe is created: LATEST means "from here".
        self._discover(initial=True)

    # ------------------------------------------------------------ public API

    def poll(self) -> int:
        """Do everything that is due now; return how much (records read or attempted), 0 when nothing was.

        Per shard: read new records, form the batches that are due and send them one after another, until
        the stream has nothing more, a batch waits for its window, or a batch failed (its retry, or its
        halves, come at a later poll, so one call never loops on a failing batch).
        """
        with self._lock:
            if self.config.desired_state == "STOPPED":
                return 0
            if time.monotonic() - self._discovered_at >= SHARD_REFRESH_SECONDS:
                self._discover(initial=False)
            work = 0
            for shard in list(self._shards.values()):
                if not self._may_read(shard):
                    continue
                while True:
                    done, failed = self._step(shard)
                    work += done
                    if done == 0 or failed:
                        break
            return work

    def next_due(self) -> float | None:
        """The clock's time when a waiting batch is due (its window closes, or its retry comes); None: none waits."""
        with self._lock:
            moments = []
            for shard in self._shards.values():
                if shard.pending:
                    moments.append(shard.pending[0].not_before)
                elif shard.buffered_since is not None:
                    moments.append(shard.buffered_since + self.config.batching_window_seconds * self._time_scale)
            return min(moments, default=None)

    def busy(self) -> bool:
        """Records are waiting for their batch, or a batch for its retry: the pipe is not quiet yet."""
        with self._lock:
            return any(shard.buffer or shard.pending for shard in self._shards.values())

    def run_until_quiet(self, timeout_seconds: float = 60.0, idle_sleep: float = 0.02) -> PipeStats:
        """Poll until the stream has nothing new and nothing waits; TimeoutError if that takes too long.

        With MaximumRetryAttempts -1 and no MaximumRecordAgeInSeconds a failing batch never settles (as in
        AWS, where it blocks its shard until DynamoDB trims the record), so the timeout is what ends it.
        """
        deadline = time.monotonic() + timeout_seconds
        while True:
            work = self.poll()
            if work == 0 and not self.busy():
                return self.stats
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.config.name} did not go quiet within {timeout_seconds} s: {self.stats}")
            if work == 0:
                self._idle(idle_sleep)

    def _idle(self, idle_sleep: float) -> None:
        """Wait for the next due batch on the clock; a real pause when nothing is due yet (a batch in reading)."""
        due = self.next_due()
        if due is None or due <= self._clock.now():
            time.sleep(idle_sleep)
        else:
            self._clock.sleep_until(due)

    def run_forever(self, stop: threading.Event, idle_sleep: float = 0.25) -> None:
        """Poll until `stop` is set, for a background thread; AWS polls an idle shard four times a second."""
        while not stop.is_set():
            try:
                work = self.poll()
            except Exception:
                LOG.exception("pipe %s: poll failed; trying again", self.config.name)
                work = 0
            if work == 0:
                stop.wait(idle_sleep)

    # ------------------------------------------------------------ shards and reading

    def _discover(self, initial: bool) -> None:
        """Track the stream's shards; ones that appear later are read from their start (they are new)."""
        self._discovered_at = time.monotonic()
        arguments: dict[str, Any] = {"StreamArn": self.config.source_arn}
        while True:
            description = self._streams.describe_stream(**arguments)["StreamDescription"]
            for shard in description.get("Shards", []):
                shard_id = shard["ShardId"]
                if shard_id in self._shards:
                    continue
                position = self.config.starting_position if initial else "TRIM_HORIZON"
                iterator = self._streams.get_shard_iterator(
                    StreamArn=self.config.source_arn,
                    ShardId=shard_id,
                    ShardIteratorType=position,  # type: ignore[arg-type]
                ).get("ShardIterator")
                self._shards[shard_id] = _Shard(shard_id, shard.get("ParentShardId"), iterator)
            last = description.get("LastEvaluatedShardId")
            if not last:
                return
            arguments["ExclusiveStartShardId"] = last

    def _may_read(self, shard: _Shard) -> bool:
        parent = self._shards.get(shard.parent_id) if shard.parent_id else None
        return parent is None or parent.finished

    def _step(self, shard: _Shard) -> tuple[int, bool]:
        """One move on a shard: read, form a due batch, attempt the batch at its head. (work, failed)."""
        work = 0
        if not shard.pending:
            if len(shard.buffer) < self.config.batch_size and shard.iterator is not None:
                work += self._read(shard)
            if self._batch_due(shard):
                size = self.config.batch_size
                shard.pending.append(_Batch(shard.buffer[:size]))
                del shard.buffer[:size]
                shard.buffered_since = self._clock.now() if shard.buffer else None
                self.stats.batches += 1
        if shard.pending and shard.pending[0].not_before <= self._clock.now():
            attempted, failed = self._attempt(shard)
            return work + attempted, failed
        return work, False

    def _read(self, shard: _Shard) -> int:
        assert shard.iterator is not None
        try:
            page = self._streams.get_records(ShardIterator=shard.iterator, Limit=GET_RECORDS_LIMIT)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ExpiredIteratorException":
                raise
            # Real iterators expire after 15 minutes; carry on after the last record read.
            shard.iterator = self._fresh_iterator(shard)
            page = self._streams.get_records(ShardIterator=shard.iterator, Limit=GET_RECORDS_LIMIT)
        shard.iterator = page.get("NextShardIterator")
        for raw in page["Records"]:
            record = self._as_pipe_record(raw)
            shard.last_sequence = record["dynamodb"]["SequenceNumber"]
            self.stats.records_read += 1
            if self._patterns and not any(pattern.matches(record) for pattern in self._patterns):
                self.stats.filtered_out += 1
                continue
            if not shard.buffer:
                shard.buffered_since = self._clock.now()
            shard.buffer.append(record)
        return len(page["Records"])

    def _fresh_iterator(self, shard: _Shard) -> str:
        position: dict[str, Any] = {"StreamArn": self.config.source_arn, "ShardId": shard.shard_id}
        if shard.last_sequence is None:
            position["ShardIteratorType"] = self.config.starting_position
        else:
            position.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=shard.last_sequence)
        return self._streams.get_shard_iterator(**position)["ShardIterator"]

    def _as_pipe_record(self, raw: "RecordTypeDef") -> dict[str, Any]:
        """The record as the Pipe hands it on: JSON, epoch-second timestamps, base64 binaries, the stream ARN."""

        def plain(value: Any) -> Any:
            if isinstance(value, datetime):
                return int(value.timestamp())
            if isinstance(value, bytes | bytearray):
                return base64.b64encode(value).decode()
            raise TypeError(f"{type(value).__name__} in a stream record")

        record: dict[str, Any] = json.loads(json.dumps(raw, default=plain))
        record["eventSourceARN"] = self.config.source_arn
        return record

    def _batch_due(self, shard: _Shard) -> bool:
        if not shard.buffer:
            return False
        if len(shard.buffer) >= self.config.batch_size or shard.iterator is None:
            return True
        window = self.config.batching_window_seconds * self._time_scale
        return shard.buffered_since is not None and self._clock.now() - shard.buffered_since >= window

    # ------------------------------------------------------------ one attempt

    def _attempt(self, shard: _Shard) -> tuple[int, bool]:
        batch = shard.pending[0]
        expired = self._expired(batch.records)
        if expired:
            old = {id(record) for record in expired}
            batch.records = [record for record in batch.records if id(record) not in old]
            self.stats.records_expired += len(expired)
            age = self.config.maximum_record_age_seconds
            reason = f"older than MaximumRecordAgeInSeconds ({age} s); last error: {batch.error or 'none'}"
            self._dead_letter(shard, expired, None, reason)
            if not batch.records:
                shard.pending.popleft()
                return len(expired), False
        batch.attempts += 1
        attempted = len(expired) + len(batch.records)
        try:
            if self._around_delivery is None:
                self._deliver(shard, batch)
            else:
                self._around_delivery(list(batch.records), lambda: self._deliver(shard, batch))
        except _BatchFailure as failure:
            LOG.info("pipe %s: batch of %d failed: %s", self.config.name, len(batch.records), failure)
            if failure.remainder is not None:
                # Part of the batch reached the bus: only the remainder is tried again, through the enrichment.
                batch.records = failure.remainder
            self._failed(shard, batch, str(failure))
            return attempted, True
        shard.pending.popleft()
        return attempted, False

    def _expired(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        limit = self.config.maximum_record_age_seconds
        if limit < 0:
            return []
        now = self._clock.now()
        return [record for record in records if now - _created_at(record) > limit]

    def _deliver(self, shard: _Shard, batch: _Batch) -> None:
        """Enrich, then put every item on the bus; _BatchFailure unless the bus accepted all of them."""
        items = self._enriched(batch.records)
        if len(items) > EVENT_BUS_BATCH_LIMIT:
            raise _BatchFailure(
                f"the enrichment returned {len(items)} items; an event bus target takes at most "
                f"{EVENT_BUS_BATCH_LIMIT} per batch, so the target was not invoked"
            )
        entries = [self._entry(item) for item in items]
        if not entries:
            return
        try:
            response = self._events.put_events(Entries=entries)
        except ClientError as error:
            self.stats.put_failures += len(entries)
            raise _BatchFailure(f"PutEvents failed: {error}") from error
        failed: list[int] = []
        for index, (entry, result, item) in enumerate(zip(entries, response["Entries"], items, strict=True)):
            if result.get("ErrorCode") or not result.get("EventId"):
                failed.append(index)
                continue
            self.stats.events_put += 1
            if self._on_event is not None:
                self._on_event(
                    {
                        "pipe": self.config.name,
                        "shardId": shard.shard_id,
                        "eventId": result["EventId"],
                        "eventBusName": self.config.event_bus_name,
                        "source": entry["Source"],
                        "detailType": entry["DetailType"],
                        "detail": item,
                        "attempt": batch.attempts,
                    }
                )
        if failed:
            self.stats.put_failures += len(failed)
            reasons = "; ".join(
                f"{response['Entries'][index].get('ErrorCode')}: {response['Entries'][index].get('ErrorMessage')}"
                for index in failed
            )
            raise _BatchFailure(
                f"PutEvents failed {len(failed)} of {len(entries)} entries: {reasons}",
                remainder=self._remainder(batch.records, [items[index] for index in failed]),
            )

    @staticmethod
    def _remainder(records: list[dict[str, Any]], failed_items: list[Any]) -> list[dict[str, Any]]:
        """The records behind the failed items, tied back by the `eventID` each item carries.

        AWS's partial batch failure page: the Pipe retries "the remainder of the payload" through the whole
        pipe, enrichment included, and for DynamoDB sources identifies records by `eventID`, which "need to be
        included in any array payload returned by the enrichment". A failed item without the `eventID` of a
        record of this batch cannot be tied back, so the whole batch is the remainder (as an unidentifiable
        item fails the whole batch on the Pipes DynamoDB page). Stream order is kept.
        """
        by_id = {record.get("eventID"): record for record in records}
        wanted = {item.get("eventID") if isinstance(item, dict) else None for item in failed_items}
        if not wanted <= by_id.keys() - {None}:
            return list(records)
        return [record for record in records if record.get("eventID") in wanted]

    def _enriched(self, records: list[dict[str, Any]]) -> list[Any]:
        """The items for the target: the enrichment's answer (JSON in, JSON out, as Lambda), or the records.

        An answer of "", {} or [] means "invoke no target" (AWS's enrichment page), and the batch succeeds.
        Any other answer that is not a JSON object or an array of them is refused: a null answer, a bare
        string or number is not documented as an event bus target's input.
        """
        if self._enrich is None:
            return list(records)
        self.stats.enrichment_invocations += 1
        try:
            answer = json.loads(json.dumps(self._enrich(json.loads(json.dumps(records)))))
        except Exception as error:  # a function error, whatever the handler raised
            self.stats.enrichment_errors += 1
            name = self.config.enrichment_function
            raise _BatchFailure(f"enrichment {name} failed: {type(error).__name__}: {error}") from error
        if answer in ("", {}, []):
            self.stats.empty_enrichments += 1
            return []
        items = answer if isinstance(answer, list) else [answer]
        if not all(isinstance(item, dict) for item in items):
            raise _BatchFailure(
                f"the enrichment answered {json.dumps(answer)[:80]}: the local Pipe emulates only a JSON object, "
                'an array of them, or an empty answer ("", {}, [])'
            )
        return items

    def _entry(self, item: Any) -> "PutEventsRequestEntryTypeDef":
        entry: PutEventsRequestEntryTypeDef = {
            "EventBusName": self.config.event_bus_name,
            "Source": self._parameter(self.config.source, item, f"Pipe {self.config.name}"),
            "DetailType": self._parameter(self.config.detail_type, item, "Event from aws:dynamodb"),
            "Detail": json.dumps(item),
        }
        if self.config.resources:
            entry["Resources"] = [self._parameter(resource, item, "") for resource in self.config.resources]
        return entry

    def _parameter(self, value: str | None, item: Any, default: str) -> str:
        """A static target parameter, or the item's value at its JSON path (a string, or a number as text)."""
        if value is None:
            return default
        if not is_json_path(value):
            return value
        try:
            found = evaluate_json_path(item, value)
        except LookupError as error:
            raise _BatchFailure(f"target parameter {value}: {error}") from error
        if isinstance(found, str):
            return found
        if isinstance(found, bool | int | float):
            return json.dumps(found)
        raise _BatchFailure(f"target parameter {value} is {json.dumps(found)[:80]}, not a string")

    # ------------------------------------------------------------ failures

    def _failed(self, shard: _Shard, batch: _Batch, reason: str) -> None:
        """Bisect, retry later, or give the batch up to the dead-letter queue; the shard waits meanwhile."""
        batch.error = reason
        if self.config.bisect and len(batch.records) > 1:
            half = (len(batch.records) + 1) // 2
            shard.pending.popleft()
            shard.pending.appendleft(_Batch(batch.records[half:], attempts=batch.attempts, error=reason))
            shard.pending.appendleft(_Batch(batch.records[:half], attempts=batch.attempts, error=reason))
            self.stats.bisections += 1
            return
        limit = self.config.maximum_retry_attempts
        if limit < 0 or batch.retries < limit:
            batch.retries += 1
            self.stats.retries += 1
            backoff = min(RETRY_BACKOFF_SECONDS * 2 ** (batch.retries - 1), RETRY_BACKOFF_MAX_SECONDS)
            batch.not_before = self._clock.now() + backoff * self._time_scale
            return
        shard.pending.popleft()
        self._dead_letter(shard, batch.records, RETRIES_EXHAUSTED, reason)

    def _dead_letter(self, shard: _Shard, records: list[dict[str, Any]], condition: str | None, reason: str) -> None:
        """A pointer to the records in the stream, never the records: a person redrives from the outbox table.

        `condition` is None for records past MaximumRecordAgeInSeconds: AWS documents no condition name for
        that case, so the emulator sends none rather than invent one.
        """
        first, last = records[0], records[-1]
        context: dict[str, Any] = {"partnerResourceArn": self.config.arn}
        if condition is not None:
            context["condition"] = condition
        body: dict[str, Any] = {
            "context": context,
            "version": "1.0",
            "timestamp": _iso(self._clock.now()),
            "DDBStreamBatchInfo": {
                "shardId": shard.shard_id,
                "startSequenceNumber": first["dynamodb"]["SequenceNumber"],
                "endSequenceNumber": last["dynamodb"]["SequenceNumber"],
                "approximateArrivalOfFirstRecord": _iso(_created_at(first)),
                "approximateArrivalOfLastRecord": _iso(_created_at(last)),
                "batchSize": len(records),
                "streamArn": self.config.source_arn,
            },
        }
        LOG.warning(
            "pipe %s: %d records dead-lettered (%s): %s", self.config.name, len(records), condition or "age", reason
        )
        if self._dlq_url is None:
            self.stats.records_discarded += len(records)
        else:
            self._sqs.send_message(QueueUrl=self._dlq_url, MessageBody=json.dumps(body))
            self.stats.dlq_messages += 1
            self.stats.records_to_dlq += len(records)
        if self._on_dead_letter is not None:
            self._on_dead_letter(body)


def pipe_runners(
    stack: Stack,
    local_functions: Mapping[str, LocalFunction],
    *,
    clock: Clock | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> list[PipeRunner]:
    """A runner for every Pipe of the stack, each enriching through its template function run in-process."""
    return [
        PipeRunner(
            config,
            local_functions[config.enrichment_function].invoke if config.enrichment_function else None,
            clock=clock,
            on_event=on_event,
        )
        for config in pipe_configs(stack)
    ]


def describe_forwarded(event: Mapping[str, Any]) -> str:
    """One log line for an event the Pipe put on the bus; a later attempt may repeat an earlier put."""
    detail = event.get("detail")
    metadata = detail.get("metadata") if isinstance(detail, dict) else None
    key = metadata.get("idempotencyKey") if isinstance(metadata, dict) else None
    event_type = metadata.get("eventType") if isinstance(metadata, dict) else None
    line = f"pipe {event['pipe']}: {event_type or '?'} as {event['detailType']} ({event['source']})"
    line += f" -> {event['eventBusName']}"
    line += f" id={event['eventId']}"
    if key:
        line += f" key={key}"
    if event.get("attempt", 1) > 1:
        line += f" [attempt {event['attempt']}: may repeat an event already put]"
    return line


def _created_at(record: Mapping[str, Any]) -> float:
    value = record.get("dynamodb", {}).get("ApproximateCreationDateTime")
    return float(value) if isinstance(value, int | float) else 0.0


def _iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
