"""What `sam deploy` and `sam sync` hand CloudFormation: every capability the template needs, per environment.

`sam sync` deploys without a change set, and CloudFormation then demands CAPABILITY_AUTO_EXPAND for the
SAM transform; a `capabilities` line in samconfig.toml replaces the command's default, so it must name
every capability itself. CreateStack's Capabilities:
https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateStack.html
"""

import tomllib
from typing import Any

import pytest

from local.aws.template import ROOT, load_raw

SAMCONFIG = ROOT / "samconfig.toml"
DEPLOYING_COMMANDS = ("deploy", "sync")
# Properties that give an IAM resource a custom name, which needs CAPABILITY_NAMED_IAM.
IAM_NAME_PROPERTIES = ("RoleName", "UserName", "GroupName", "ManagedPolicyName", "InstanceProfileName")
NESTING_TYPES = ("AWS::Serverless::Application", "AWS::CloudFormation::Stack")


def capabilities_needed(raw: dict[str, Any], translated: dict[str, Any]) -> set[str]:
    """Derived from the template's content: a transform or nested stack, IAM resources, named IAM resources."""
    needed: set[str] = set()
    if raw.get("Transform") or any(res.get("Type") in NESTING_TYPES for res in raw["Resources"].values()):
        needed.add("CAPABILITY_AUTO_EXPAND")
    for resource in translated["Resources"].values():
        if resource["Type"].startswith("AWS::IAM::"):
            needed.add("CAPABILITY_IAM")
            if any(name in resource.get("Properties", {}) for name in IAM_NAME_PROPERTIES):
                needed.add("CAPABILITY_NAMED_IAM")
    return needed


def granted(parameters: dict[str, Any]) -> set[str]:
    """samconfig accepts a space-separated string or a list."""
    value = parameters.get("capabilities", [])
    return set(value.split() if isinstance(value, str) else value)


def deploying_sections() -> dict[str, dict[str, Any]]:
    config = tomllib.loads(SAMCONFIG.read_text())
    return {
        f"[{env}.{command}.parameters]": commands[command]["parameters"]
        for env, commands in config.items()
        if isinstance(commands, dict)
        for command in DEPLOYING_COMMANDS
        if command in commands
    }


def test_the_template_needs_auto_expand_and_iam(template_stack_cfn: dict[str, Any]) -> None:
    assert capabilities_needed(load_raw(), template_stack_cfn) == {"CAPABILITY_AUTO_EXPAND", "CAPABILITY_IAM"}


def test_a_named_role_needs_named_iam() -> None:
    raw = {"Resources": {"R": {"Type": "AWS::IAM::Role", "Properties": {"RoleName": "fixed"}}}}
    assert capabilities_needed(raw, raw) == {"CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"}


def test_samconfig_deploys_and_syncs_the_default_environment() -> None:
    sections = deploying_sections()
    assert {"[default.deploy.parameters]", "[default.sync.parameters]", "[prod.deploy.parameters]"} <= set(sections)


@pytest.mark.parametrize("section", sorted(deploying_sections()))
def test_every_command_that_deploys_grants_what_the_template_needs(
    section: str, template_stack_cfn: dict[str, Any]
) -> None:
    # Given what the template needs, derived from its content
    needed = capabilities_needed(load_raw(), template_stack_cfn)
    # When samconfig's section for a deploying command is read
    missing = needed - granted(deploying_sections()[section])
    # Then it names every one of them
    assert not missing, f"{section} lacks {sorted(missing)}"
