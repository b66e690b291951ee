"""Alarms reach a person: the alarm topic's key lets CloudWatch publish, and an email can be subscribed.

CloudWatch cannot publish to a topic encrypted with the AWS managed key; a customer managed key must
grant cloudwatch.amazonaws.com kms:Decrypt and kms:GenerateDataKey*:
https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services
"""

import fnmatch
from typing import Any

import pytest

from local.aws.template import Stack


def deployed(stack: Stack) -> dict[str, dict[str, Any]]:
    """The resources CloudFormation would create with the stack's parameters (resource Conditions applied)."""
    return {
        logical_id: resource
        for logical_id, resource in stack.resources.items()
        if "Condition" not in resource or stack.condition(resource["Condition"])
    }


def statements_for(policy: dict[str, Any], service: str) -> list[dict[str, Any]]:
    def services(statement: dict[str, Any]) -> list[str]:
        principal = statement.get("Principal", {})
        named = principal.get("Service", []) if isinstance(principal, dict) else []
        return [named] if isinstance(named, str) else named

    return [s for s in policy["Statement"] if s["Effect"] == "Allow" and service in services(s)]


def allows(statements: list[dict[str, Any]], action: str) -> bool:
    """Whether any statement's Action (a string or a list, wildcards allowed) covers `action`."""
    for statement in statements:
        actions = statement["Action"]
        patterns = [actions] if isinstance(actions, str) else actions
        if any(fnmatch.fnmatchcase(action, pattern) for pattern in patterns):
            return True
    return False


def test_the_alarm_topic_is_encrypted_with_a_rotating_customer_managed_key(template_stack_cfn: dict[str, Any]) -> None:
    # Given the template as CloudFormation receives it
    resources = template_stack_cfn["Resources"]
    # When the alarm topic's key is followed
    key_ref = resources["AlarmTopic"]["Properties"]["KmsMasterKeyId"]
    # Then it is a key of this stack (not alias/aws/sns), with rotation on
    assert isinstance(key_ref, dict), f"the topic's key is {key_ref!r}, not a key of this stack"
    key_id = key_ref.get("Ref") or key_ref["Fn::GetAtt"][0]
    assert resources[key_id]["Type"] == "AWS::KMS::Key"
    assert resources[key_id]["Properties"]["EnableKeyRotation"] is True


def test_the_keys_policy_lets_cloudwatch_encrypt_for_the_topic(template_stack_cfn: dict[str, Any]) -> None:
    # Given the alarm topic's key policy
    key_id = template_stack_cfn["Resources"]["AlarmTopic"]["Properties"]["KmsMasterKeyId"]["Ref"]
    policy = template_stack_cfn["Resources"][key_id]["Properties"]["KeyPolicy"]
    # When the statements for CloudWatch are read
    cloudwatch = statements_for(policy, "cloudwatch.amazonaws.com")
    # Then they allow what SNS needs on CloudWatch's behalf, and nothing denies it
    assert allows(cloudwatch, "kms:Decrypt")
    assert allows(cloudwatch, "kms:GenerateDataKey")
    assert not [s for s in policy["Statement"] if s["Effect"] == "Deny"]


def test_every_alarm_notifies_the_alarm_topic(template_stack_cfn: dict[str, Any]) -> None:
    alarms = {lid: r for lid, r in template_stack_cfn["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert alarms
    assert all(r["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}] for r in alarms.values())


@pytest.mark.parametrize(("email", "subscribed"), [("", False), ("ops@example.com", True)])
def test_an_email_subscription_exists_iff_alarm_email_is_set(
    template_stack_cfn: dict[str, Any], email: str, subscribed: bool
) -> None:
    # Given the stack deployed with AlarmEmail set or left empty
    stack = Stack.from_cfn(template_stack_cfn, parameters={"AlarmEmail": email})
    # When CloudFormation evaluates the resources' conditions
    subscriptions = {
        lid: stack.properties(lid)
        for lid, resource in deployed(stack).items()
        if resource["Type"] == "AWS::SNS::Subscription"
    }
    # Then there is one email subscription to the alarm topic exactly when an address was given
    expected = [{"Protocol": "email", "Endpoint": email, "TopicArn": stack.ref("AlarmTopic")}] if subscribed else []
    assert list(subscriptions.values()) == expected


def test_the_default_alarm_email_is_empty(template_stack_cfn: dict[str, Any]) -> None:
    assert template_stack_cfn["Parameters"]["AlarmEmail"]["Default"] == ""
