"""template.yaml, read the way CloudFormation would: SAM-transformed, parameters applied, intrinsics resolved.

The local stack and the tests build every resource from this, never from a second hand-written list.
Only the intrinsics the template uses are resolved (Ref, GetAtt, Sub, If, Equals, Not, Join, Select);
anything else raises, so a new one cannot be silently ignored.
"""

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"

ACCOUNT_ID = "123456789012"
# Stands in for the S3 bucket `sam package` would upload code to; the key is the local CodeUri.
LOCAL_CODE_BUCKET = "local-build"
REGION = "us-east-1"


def load_raw(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    return yaml_parse(path.read_text())  # type: ignore[no-any-return]


def translate(raw: Mapping[str, Any], parameters: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Plain CloudFormation, as `sam deploy` would hand it to CloudFormation.

    `sam package` would first upload each local CodeUri to S3; the translator insists on an S3 URI, so
    local paths become placeholder URIs (the local stack imports the handlers from functions/ instead).
    """
    raw = copy.deepcopy(dict(raw))
    function_sections = [raw.get("Globals", {}).get("Function", {})] + [
        res.get("Properties", {}) for res in raw["Resources"].values() if res.get("Type") == "AWS::Serverless::Function"
    ]
    for section in function_sections:
        if isinstance(section.get("CodeUri"), str) and not section["CodeUri"].startswith("s3://"):
            section["CodeUri"] = f"s3://{LOCAL_CODE_BUCKET}/{section['CodeUri'].strip('/')}"
    # SAM only asks IAM for managed-policy ARNs by name; offline there is no IAM to ask, and none is needed.
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=REGION))
    return translator.translate(  # type: ignore[no-any-return]
        dict(raw), parameter_values=dict(parameters or {}), get_managed_policy_map=lambda: {}
    )


@dataclass
class Stack:
    """A resolved view of the translated template: names, ARNs and properties with intrinsics applied."""

    cfn: dict[str, Any]
    stack_name: str = "rideonce-local"
    parameters: dict[str, str] = field(default_factory=dict)
    region: str = REGION
    account_id: str = ACCOUNT_ID
    physical_names: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def from_file(
        cls,
        path: Path = TEMPLATE_PATH,
        parameters: Mapping[str, str] | None = None,
        stack_name: str = "rideonce-local",
    ) -> "Stack":
        return cls.from_cfn(translate(load_raw(path), parameters), parameters, stack_name)

    @classmethod
    def from_cfn(
        cls,
        cfn: dict[str, Any],
        parameters: Mapping[str, str] | None = None,
        stack_name: str = "rideonce-local",
    ) -> "Stack":
        """A fresh stack over an already translated template (translation takes about a second)."""
        defaults = {name: str(spec.get("Default", "")) for name, spec in cfn.get("Parameters", {}).items()}
        return cls(cfn, stack_name=stack_name, parameters={**defaults, **(parameters or {})})

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """The environment variables the template gives a function (Globals merged in by SAM)."""
        variables = self.properties(logical_id).get("Environment", {}).get("Variables", {})
        return {name: str(value) for name, value in variables.items()}

    def function_handler(self, logical_id: str) -> str:
        return str(self.properties(logical_id)["Handler"])

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.cfn["Resources"]  # type: ignore[no-any-return]

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {lid: res for lid, res in self.resources.items() if res["Type"] == resource_type}

    def properties(self, logical_id: str) -> dict[str, Any]:
        return self.resolve(self.resources[logical_id].get("Properties", {}))  # type: ignore[no-any-return]

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.cfn["Conditions"][name]))

    def name_of(self, logical_id: str) -> str:
        """The physical name: what CloudFormation would generate, stable per stack and logical id."""
        return self.physical_names.setdefault(logical_id, f"{self.stack_name}-{logical_id}")

    def set_attribute(self, logical_id: str, attribute: str, value: str) -> None:
        self.attributes[(logical_id, attribute)] = value

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": None,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if (name, "Ref") in self.attributes:
            return self.attributes[(name, "Ref")]
        return self.name_of(name)

    def get_att(self, logical_id: str, attribute: str) -> str:
        if (logical_id, attribute) in self.attributes:
            return self.attributes[(logical_id, attribute)]
        if attribute == "Arn":
            return self._default_arn(logical_id)
        raise KeyError(f"{logical_id}.{attribute} is not known to the local stack yet")

    def _default_arn(self, logical_id: str) -> str:
        kind = self.resources[logical_id]["Type"]
        name = self.name_of(logical_id)
        region, account = self.region, self.account_id
        arns: dict[str, str] = {
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{region}:{account}:table/{name}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{region}:{account}:{name}",
            "AWS::Events::EventBus": f"arn:aws:events:{region}:{account}:event-bus/{name}",
            "AWS::Events::Rule": f"arn:aws:events:{region}:{account}:rule/{name}",
            "AWS::Lambda::Function": f"arn:aws:lambda:{region}:{account}:function:{name}",
            "AWS::IAM::Role": f"arn:aws:iam::{account}:role/{name}",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{region}:{account}:log-group:{name}",
            "AWS::Events::Archive": f"arn:aws:events:{region}:{account}:archive/{name}",
            "AWS::Pipes::Pipe": f"arn:aws:pipes:{region}:{account}:pipe/{name}",
            "AWS::SNS::Topic": f"arn:aws:sns:{region}:{account}:{name}",
        }
        if kind not in arns:
            raise KeyError(f"no ARN form for {kind} ({logical_id})")
        return arns[kind]

    def resolve(self, value: Any) -> Any:
        """Apply the intrinsic functions in `value`; `AWS::NoValue` drops the key or list item."""
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not _DROP]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key in _INTRINSICS:
                result = _INTRINSICS[key](self, arg)
                return _DROP if result is None else result
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not _DROP}


_DROP: Any = object()


def _sub(stack: Stack, arg: Any) -> str:
    text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], stack.resolve(arg[1]))

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in variables:
            return str(variables[name])
        if "." in name and not name.startswith("AWS::"):
            logical_id, attribute = name.split(".", 1)
            return stack.get_att(logical_id, attribute)
        return str(stack.ref(name))

    return re.sub(r"\$\{([^!}][^}]*)\}", replace, text)


def _get_att(stack: Stack, arg: Any) -> str:
    logical_id, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
    return stack.get_att(logical_id, attribute)


_INTRINSICS: dict[str, Callable[[Stack, Any], Any]] = {
    "Ref": lambda stack, arg: stack.ref(arg),
    "Fn::GetAtt": _get_att,
    "Fn::Sub": _sub,
    "Fn::If": lambda stack, arg: stack.resolve(arg[1] if stack.condition(arg[0]) else arg[2]),
    "Fn::Equals": lambda stack, arg: stack.resolve(arg[0]) == stack.resolve(arg[1]),
    "Fn::Not": lambda stack, arg: not stack.resolve(arg[0]),
    "Fn::Join": lambda stack, arg: stack.resolve(arg[0]).join(str(part) for part in stack.resolve(arg[1])),
    "Fn::Select": lambda stack, arg: stack.resolve(arg[1])[int(stack.resolve(arg[0]))],
    "Condition": lambda stack, arg: stack.condition(arg),
}
