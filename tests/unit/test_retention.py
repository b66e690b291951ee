"""Nothing parked for a person is deleted with the stack: dead-letter and quarantine queues are retained.

DeletionPolicy and UpdateReplacePolicy:
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-deletionpolicy.html
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-updatereplacepolicy.html
"""

from typing import Any

PARKING_QUEUES_BY_ROLE = ("QuarantineQueue",)


def referenced_queue(value: Any) -> str | None:
    """The logical id an `!GetAtt X.Arn` names, in either of the forms the translated template carries."""
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        return str(target[0] if isinstance(target, list) else target.split(".")[0])
    return None


def dead_letter_queues(resources: dict[str, Any]) -> set[str]:
    """Every queue some resource sends its failures to: redrive policies and DeadLetterConfig blocks."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            targets = [node.get("deadLetterTargetArn"), (node.get("DeadLetterConfig") or {}).get("Arn")]
            found.update(target for target in map(referenced_queue, targets) if target)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(resources)
    return {lid for lid in found if resources[lid]["Type"] == "AWS::SQS::Queue"}


def test_the_dead_letter_queues_are_found_from_the_template(template_stack_cfn: dict[str, Any]) -> None:
    assert dead_letter_queues(template_stack_cfn["Resources"]) == {
        "PipeDeadLetterQueue",
        "ConsumerDeadLetterQueue",
        "RuleDeadLetterQueue",
    }


def test_every_dead_letter_and_quarantine_queue_survives_deletion_and_replacement(
    template_stack_cfn: dict[str, Any],
) -> None:
    resources = template_stack_cfn["Resources"]
    parking = dead_letter_queues(resources) | set(PARKING_QUEUES_BY_ROLE)
    policies = {
        lid: (resources[lid].get("DeletionPolicy"), resources[lid].get("UpdateReplacePolicy")) for lid in parking
    }
    assert policies == dict.fromkeys(parking, ("Retain", "Retain"))
