"""Event buses, rules with their targets, and SQS queues from the template, created on moto.

Created in dependency order (queues, then buses, then rules), each recording the Ref and GetAtt values
CloudFormation would give it, so later properties that point at them (a queue's RedrivePolicy, a rule's
EventBusName and target ARNs) resolve to the real local names.

moto then routes PutEvents to the rules' targets itself. Not here: archives and the Pipe's registration
(local/aws/stack.py), matching patterns outside moto (local/emulators/patterns.py), or running the SQS
event source (local/emulators/event_source.py).
"""

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from local.aws.template import Stack

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_sqs import SQSClient

# CloudFormation property -> SQS queue attribute, for every attribute CreateQueue accepts.
_QUEUE_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
    "RedriveAllowPolicy",
)
# The keys of an AWS::Events::Rule Target that PutTargets takes as they are.
_TARGET_KEYS = (
    "Id",
    "Arn",
    "RoleArn",
    "Input",
    "InputPath",
    "InputTransformer",
    "RetryPolicy",
    "DeadLetterConfig",
    "SqsParameters",
)


@dataclass(frozen=True)
class Messaging:
    """What was created, by logical id: queue URLs, bus names and rule ARNs."""

    queues: dict[str, str]
    buses: dict[str, str]
    rules: dict[str, str]


def create_messaging(events: "EventBridgeClient", sqs: "SQSClient", stack: Stack) -> Messaging:
    """Every queue, bus and rule of the stack, in the order their references need."""
    queues = create_queues(sqs, stack)
    buses = create_event_buses(events, stack)
    return Messaging(queues=queues, buses=buses, rules=create_rules(events, stack))


def create_queues(sqs: "SQSClient", stack: Stack) -> dict[str, str]:
    """Every AWS::SQS::Queue; return {logical id: queue URL}.

    Redrive policies are set once every queue exists, since a dead-letter queue may come later in the
    template than the queue that names it.
    """
    urls: dict[str, str] = {}
    for logical_id in stack.of_type("AWS::SQS::Queue"):
        props = stack.properties(logical_id)
        name = props.get("QueueName") or _generated_queue_name(stack, logical_id, props)
        attributes = {key: _attribute_text(props[key]) for key in _QUEUE_ATTRIBUTES if key in props}
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]  # type: ignore[arg-type]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        stack.set_attribute(logical_id, "Ref", url)
        stack.set_attribute(logical_id, "QueueUrl", url)
        stack.set_attribute(logical_id, "QueueName", name)
        stack.set_attribute(logical_id, "Arn", arn)
        urls[logical_id] = url
    for logical_id, url in urls.items():
        redrive = stack.properties(logical_id).get("RedrivePolicy")
        if redrive:
            sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": _attribute_text(redrive)})
    return urls


def create_queue_like(sqs: "SQSClient", source_url: str, name: str, dead_letter_url: str | None = None) -> str:
    """A fresh queue with `source_url`'s attributes; its redrive policy, if any, to `dead_letter_url` instead.

    Scratch space shaped like the template's queue, as `create_table_like` is for tables; the URL.
    """
    attributes = sqs.get_queue_attributes(QueueUrl=source_url, AttributeNames=["All"])["Attributes"]
    copied = {key: value for key, value in attributes.items() if key in _QUEUE_ATTRIBUTES}
    url = sqs.create_queue(QueueName=name, Attributes=copied)["QueueUrl"]
    if "RedrivePolicy" in attributes and dead_letter_url is not None:
        policy = json.loads(attributes["RedrivePolicy"])
        target = sqs.get_queue_attributes(QueueUrl=dead_letter_url, AttributeNames=["QueueArn"])["Attributes"]
        policy["deadLetterTargetArn"] = target["QueueArn"]
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": json.dumps(policy)})
    return url


def create_event_buses(events: "EventBridgeClient", stack: Stack) -> dict[str, str]:
    """Every AWS::Events::EventBus; return {logical id: bus name}."""
    names: dict[str, str] = {}
    for logical_id in stack.of_type("AWS::Events::EventBus"):
        props = stack.properties(logical_id)
        name = props.get("Name") or stack.name_of(logical_id)
        arn = events.create_event_bus(Name=name)["EventBusArn"]
        stack.set_attribute(logical_id, "Ref", name)
        stack.set_attribute(logical_id, "Name", name)
        stack.set_attribute(logical_id, "Arn", arn)
        names[logical_id] = name
    return names


def create_rules(events: "EventBridgeClient", stack: Stack) -> dict[str, str]:
    """Every AWS::Events::Rule with its targets; return {logical id: rule ARN}."""
    arns: dict[str, str] = {}
    for logical_id in stack.of_type("AWS::Events::Rule"):
        props = stack.properties(logical_id)
        name = props.get("Name") or stack.name_of(logical_id)
        bus = props.get("EventBusName", "default")
        rule: dict[str, Any] = {"Name": name, "EventBusName": bus, "State": props.get("State", "ENABLED")}
        if "EventPattern" in props:
            pattern = props["EventPattern"]
            rule["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
        for key in ("ScheduleExpression", "Description", "RoleArn"):
            if key in props:
                rule[key] = props[key]
        arn = events.put_rule(**rule)["RuleArn"]
        targets = [{key: target[key] for key in _TARGET_KEYS if key in target} for target in props.get("Targets", [])]
        if targets:
            response = events.put_targets(Rule=name, EventBusName=bus, Targets=targets)  # type: ignore[arg-type]
            if response.get("FailedEntryCount"):
                raise RuntimeError(f"{logical_id}: targets were refused: {response.get('FailedEntries')}")
        # CloudFormation's Ref of a rule on a custom bus is "bus|rule".
        stack.set_attribute(logical_id, "Ref", name if bus == "default" else f"{bus}|{name}")
        stack.set_attribute(logical_id, "Arn", arn)
        arns[logical_id] = arn
    return arns


def _generated_queue_name(stack: Stack, logical_id: str, props: dict[str, Any]) -> str:
    """CloudFormation's generated name; a FIFO queue's must end in .fifo."""
    name = stack.name_of(logical_id)
    return f"{name}.fifo" if _attribute_text(props.get("FifoQueue", False)) == "true" else name


def _attribute_text(value: Any) -> str:
    """SQS takes every attribute as a string: booleans lower-case, policies as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)
