"""local.aws.messaging: the template's queues, buses and rules on moto, wired as CloudFormation would wire them."""

import json
from typing import Any

import boto3
import pytest

from local.aws.messaging import Messaging, create_messaging
from local.aws.template import Stack


@pytest.fixture
def messaging(stack: Stack) -> Messaging:
    return create_messaging(boto3.client("events"), boto3.client("sqs"), stack)


def receive_all(queue_url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    bodies: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return bodies
        bodies.extend(json.loads(message["Body"]) for message in batch)
        for message in batch:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def test_every_queue_bus_and_rule_of_the_template_exists(stack: Stack, messaging: Messaging) -> None:
    # Given the template's resources, created by create_messaging
    # When we list what moto holds
    queue_urls = set(boto3.client("sqs").list_queues().get("QueueUrls", []))
    bus_names = {bus["Name"] for bus in boto3.client("events").list_event_buses()["EventBuses"]}
    # Then every one of them is there, under the name the stack resolves
    assert set(messaging.queues) == set(stack.of_type("AWS::SQS::Queue"))
    assert set(messaging.queues.values()) <= queue_urls
    assert set(messaging.buses) == set(stack.of_type("AWS::Events::EventBus"))
    assert set(messaging.buses.values()) <= bus_names
    assert stack.ref("RideEventBus") == stack.properties("RideEventBus")["Name"]
    assert set(messaging.rules) == set(stack.of_type("AWS::Events::Rule"))


def test_queue_attributes_and_redrive_follow_the_template(stack: Stack, messaging: Messaging) -> None:
    # Given the consumer queue, whose dead-letter queue the template names through GetAtt
    sqs = boto3.client("sqs")
    url = messaging.queues["RideEventsQueue"]
    # When we read its attributes back
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    # Then they are the template's, and the redrive points at the created DLQ's real ARN
    template = stack.properties("RideEventsQueue")
    assert attributes["VisibilityTimeout"] == str(template["VisibilityTimeout"])
    assert attributes["MessageRetentionPeriod"] == str(template["MessageRetentionPeriod"])
    redrive = json.loads(attributes["RedrivePolicy"])
    dlq_url = messaging.queues["ConsumerDeadLetterQueue"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert redrive["deadLetterTargetArn"] == dlq_arn
    assert int(redrive["maxReceiveCount"]) == int(template["RedrivePolicy"]["maxReceiveCount"])


def test_rules_keep_their_pattern_bus_and_targets(stack: Stack, messaging: Messaging) -> None:
    # Given the quarantine rule on the ride bus
    events = boto3.client("events")
    bus = messaging.buses["RideEventBus"]
    name = stack.name_of("QuarantineRule")
    # When we describe it and list its targets
    described = events.describe_rule(Name=name, EventBusName=bus)
    targets = events.list_targets_by_rule(Rule=name, EventBusName=bus)["Targets"]
    # Then pattern, ARN and target are the template's, resolved to the created queue
    assert json.loads(described["EventPattern"]) == stack.properties("QuarantineRule")["EventPattern"]
    assert described["Arn"] == messaging.rules["QuarantineRule"] == stack.get_att("QuarantineRule", "Arn")
    assert [(target["Id"], target["Arn"]) for target in targets] == [
        ("quarantine", stack.get_att("QuarantineQueue", "Arn"))
    ]


def test_events_are_routed_by_the_template_rules(messaging: Messaging) -> None:
    # Given a ride event and a rejection, put on the ride bus the way the Pipe puts them (static source and
    # detail type, routed on the detail), and events no rule should take
    events = boto3.client("events")
    bus = messaging.buses["RideEventBus"]
    ride = {"metadata": {"source": "rideonce.rides", "eventType": "RideRequested"}}
    rejection = {"metadata": {"source": "rideonce.relay", "eventType": "OutboxRecordRejected"}}
    entries = [
        ("rideonce.outbox", "OutboxEvent", ride),
        ("rideonce.outbox", "OutboxEvent", rejection),
        ("rideonce.other", "OutboxEvent", ride),
        ("rideonce.outbox", "OutboxEvent", {"metadata": {"source": "rideonce.other", "eventType": "RideRequested"}}),
        ("rideonce.outbox", "OutboxEvent", {"metadata": {"source": "rideonce.rides", "eventType": "RideLost"}}),
    ]
    # When they are published
    response = events.put_events(
        Entries=[
            {"EventBusName": bus, "Source": source, "DetailType": detail_type, "Detail": json.dumps(detail)}
            for source, detail_type, detail in entries
        ]
    )
    # Then each lands only in the queue its rule targets, and an event no rule matches lands nowhere
    assert response["FailedEntryCount"] == 0
    assert [body["detail"] for body in receive_all(messaging.queues["RideEventsQueue"])] == [ride]
    assert [body["detail"] for body in receive_all(messaging.queues["QuarantineQueue"])] == [rejection]
    assert receive_all(messaging.queues["RuleDeadLetterQueue"]) == []
