"""Reading a template's AWS::Pipes::Pipe into a `PipeConfig`, refusing what the local Pipe does not emulate.

For: the runner (local/emulators/pipes/runner.py) and anyone who needs a pipe's settings from the
translated template (chaos, the demo's report). What is emulated: a DynamoDB stream source, its
FilterCriteria on the record's `dynamodb` key, an optional Lambda enrichment and an event bus target with
static Source and DetailType after an enrichment. Refused when configured rather than ignored: input
templates, EnrichmentParameters, SNS dead-letter targets, any other source, enrichment or target, filter
fields other than `dynamodb` and operators Pipes lack. Accepted but simplified: ParallelizationFactor above
1 runs one batch at a time per shard. Not here: reading the stream, delivering, retrying (the other modules
of this package).

- A pattern may filter only the record's `dynamodb` key: the Pipes filtering page lists eventName,
  eventSource, eventSourceARN, eventID, eventVersion, awsRegion, invokeIdentityArn and eventSourceKey as
  fields that can't be used in patterns
  (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-pipes-event-filtering.html) and Lambda's
  DynamoDB page filters on `dynamodb` only (https://docs.aws.amazon.com/lambda/latest/dg/with-ddb-filtering.html).
- Operators Pipes do not support (anything-but with prefix, suffix, equals-ignore-case or wildcard:
  https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-create-pattern-operators.html; wildcard,
  absent from Lambda's filter rule syntax: https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventfiltering.html)
  and any operator `EventPattern` does not implement raise ValueError.
- An event bus target takes at most 10 events per batch, so BatchSize may not exceed it
  (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-pipes-batching-concurrency.html).
- A dynamic path (`$.x`) after an enrichment is refused: the documents say dynamic paths read "the event
  payload" and not what they read after an enrichment
  (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-pipes-event-target.html).
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from local.aws.template import Stack
from local.emulators.patterns import EventPattern
from local.emulators.pipes.paths import is_json_path, parse_json_path

EVENT_BUS_BATCH_LIMIT = 10
"""An event bus target takes at most 10 events per batch (PutEvents' limit), so BatchSize may not exceed it."""
DEFAULT_BATCH_SIZE = 100
BISECT = "AUTOMATIC_BISECT"

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

    Call it once the tables, queues and buses exist (local/aws/dynamodb.py, local/aws/messaging.py), so the stream,
    queue and bus ARNs in its properties are the local ones. A property the emulator cannot honour raises
    ValueError rather than being ignored.
    """
    return [_pipe_config(stack, logical_id) for logical_id in stack.of_type("AWS::Pipes::Pipe")]


def _pipe_config(stack: Stack, logical_id: str) -> PipeConfig:
    """One pipe: each part of its properties checked by its own step, then read into a PipeConfig."""
    props = stack.properties(logical_id)
    where = f"{logical_id}:"
    source_arn, stream, filters = _stream_source(props, where)
    bus_name, bus_parameters = _bus_target(props, where)
    enrichment = props.get("Enrichment")
    _refuse_dynamic_paths_after_enrichment(bus_parameters, enrichment, where)
    return PipeConfig(
        logical_id=logical_id,
        name=str(props.get("Name") or stack.name_of(logical_id)),
        arn=stack.get_att(logical_id, "Arn"),
        source_arn=source_arn,
        filters=filters,
        starting_position=str(stream["StartingPosition"]),
        batch_size=int(stream.get("BatchSize", DEFAULT_BATCH_SIZE)),
        batching_window_seconds=int(stream.get("MaximumBatchingWindowInSeconds", 0)),
        maximum_retry_attempts=int(stream.get("MaximumRetryAttempts", -1)),
        maximum_record_age_seconds=int(stream.get("MaximumRecordAgeInSeconds", -1)),
        on_partial_batch_item_failure=stream.get("OnPartialBatchItemFailure"),
        dead_letter_arn=stream.get("DeadLetterConfig", {}).get("Arn"),
        enrichment_function=_enrichment_function(stack, where, enrichment),
        target_arn=str(props["Target"]),
        event_bus_name=bus_name,
        detail_type=bus_parameters.get("DetailType"),
        source=bus_parameters.get("Source"),
        resources=tuple(str(resource) for resource in bus_parameters.get("Resources", [])),
        parallelization_factor=int(stream.get("ParallelizationFactor", 1)),
        desired_state=str(props.get("DesiredState", "RUNNING")),
    )


def _stream_source(props: Mapping[str, Any], where: str) -> tuple[str, Mapping[str, Any], tuple[str, ...]]:
    """The source's ARN, DynamoDBStreamParameters and filter patterns, each refused unless emulated.

    Checked here rather than when read, so a template the emulator cannot honour fails at configuration,
    before a record moves.
    """
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
    batch_size = int(stream.get("BatchSize", DEFAULT_BATCH_SIZE))
    if batch_size > EVENT_BUS_BATCH_LIMIT:
        raise ValueError(f"{where} BatchSize {batch_size} exceeds what an event bus target takes per batch (10)")
    return source_arn, stream, filters


def _bus_target(props: Mapping[str, Any], where: str) -> tuple[str, Mapping[str, Any]]:
    """The target bus's name and EventBridgeEventBusParameters; refused unless the target is an event bus.

    EnrichmentParameters are refused here too: they shape what reaches the target, and are not emulated.
    """
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
    return bus.group(1), bus_parameters


def _refuse_dynamic_paths_after_enrichment(bus_parameters: Mapping[str, Any], enrichment: Any, where: str) -> None:
    """ValueError for a dynamic path after an enrichment, or for a path the local Pipe cannot evaluate.

    AWS's target page says dynamic paths read "the event payload itself"; no document says what they read
    after an enrichment, so the emulator asks for a static value rather than guess.
    """
    for value in [bus_parameters.get("DetailType"), bus_parameters.get("Source"), *bus_parameters.get("Resources", [])]:
        if isinstance(value, str) and is_json_path(value):
            if enrichment is not None:
                raise ValueError(
                    f"{where} the target parameter {value} is a dynamic path after an enrichment: no AWS document "
                    "says whether it reads the enrichment's output or the source record; use a static value"
                )
            parse_json_path(value)


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
