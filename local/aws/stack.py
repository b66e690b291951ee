"""The local stack: moto in server mode on 127.0.0.1, with every resource of template.yaml created in it.

Nothing here lists resources by hand: tables, queues, buses, rules, archives and the Pipe come from the
SAM-translated template, and the handlers run unchanged with the environment the template gives them
and `AWS_ENDPOINT_URL` pointing at the server. The outputs file mirrors a stack's outputs, so any
boto3 script or the AWS CLI can find the local resources.

Not created: alarms, the dashboard, log groups, IAM roles and policies, the KMS key and the SNS topic,
which nothing local reads (their ARNs still resolve, local/aws/template.py); IAM is not enforced. Not
here: running what moto only stores (local/emulators/).
"""

import json
import logging
import os
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from local.aws import moto_patches
from local.aws.dynamodb import create_tables
from local.aws.functions import LocalFunction, cold_start, export_environment, functions
from local.aws.messaging import Messaging, create_messaging
from local.aws.template import REGION, ROOT, Stack

STATE_DIR = ROOT / ".local"
_last_port = 0
OUTPUTS_FILE = STATE_DIR / "outputs.json"

# Fake credentials: moto accepts any, and no request can reach a real account with these.
LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_SESSION_TOKEN": "local",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


@dataclass
class LocalStack:
    stack: Stack
    endpoint: str
    server: ThreadedMotoServer
    tables: dict[str, str]
    messaging: Messaging
    archives: dict[str, str]
    pipes: dict[str, str]
    functions: dict[str, LocalFunction] = field(default_factory=dict)

    @classmethod
    def start(
        cls,
        port: int = 0,
        parameters: dict[str, str] | None = None,
        outputs_file: Path | None = OUTPUTS_FILE,
        api_url: str | None = None,
        environment_overrides: dict[str, str] | None = None,
    ) -> "LocalStack":
        """Start moto on 127.0.0.1:`port` and create the stack in it.

        Port 0 picks a free port the first time, then the same one again: warm handlers keep their
        boto3 clients across invocations, as in Lambda, so a later stack in this process must answer
        at the endpoint they were built for. `environment_overrides` go over the template's function
        variables (the demo quiets the handlers' logs, for instance).
        """
        global _last_port
        moto_patches.install()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port or _last_port, verbose=False)
        server.start()
        host, bound = server.get_host_and_port()
        _last_port = bound
        endpoint = f"http://{host}:{bound}"
        # moto keeps its state per process: start from an empty account, as a new stack would.
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))  # noqa: S310
        os.environ.update(LOCAL_CREDENTIALS)
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        for variable in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
            os.environ.pop(variable, None)
        stack = Stack.from_file(parameters=parameters)
        stack.set_attribute("HttpApi", "Ref", "local")
        ddb = boto3.client("dynamodb")
        tables = create_tables(ddb, stack)
        messaging = create_messaging(boto3.client("events"), boto3.client("sqs"), stack)
        archives = _create_archives(stack)
        pipes = _register_pipes(stack)
        export_environment(stack)
        os.environ.update(environment_overrides or {})
        local_functions = functions(stack)
        cold_start(local_functions)
        local = cls(stack, endpoint, server, tables, messaging, archives, pipes, local_functions)
        if outputs_file is not None:
            local.write_outputs(outputs_file, api_url)
        return local

    def stop(self) -> None:
        self.server.stop()

    def outputs(self, api_url: str | None = None) -> dict[str, Any]:
        """Like `aws cloudformation describe-stacks` outputs, plus each resource's id and a function's variables."""
        values = {
            key: str(self.stack.resolve(spec["Value"])) for key, spec in self.stack.cfn.get("Outputs", {}).items()
        }
        if api_url:
            values["ApiUrl"] = api_url
        resources = {}
        for logical_id, resource in self.stack.resources.items():
            if (logical_id, "Ref") in self.stack.attributes:
                entry: dict[str, Any] = {"type": resource["Type"], "physicalId": self.stack.ref(logical_id)}
                if (logical_id, "Arn") in self.stack.attributes:
                    entry["arn"] = self.stack.get_att(logical_id, "Arn")
                resources[logical_id] = entry
            elif resource["Type"] == "AWS::Lambda::Function":
                # What `aws lambda get-function-configuration` answers on AWS: tools read settings from it.
                resources[logical_id] = {
                    "type": resource["Type"],
                    "physicalId": self.stack.ref(logical_id),
                    "environment": self.stack.function_environment(logical_id),
                }
        return {
            "endpoint": self.endpoint,
            "region": self.stack.region,
            "stackName": self.stack.stack_name,
            "outputs": values,
            "resources": resources,
        }

    def write_outputs(self, path: Path, api_url: str | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.outputs(api_url), indent=2) + "\n")


def _create_archives(stack: Stack) -> dict[str, str]:
    events = boto3.client("events")
    names = {}
    for logical_id in stack.of_type("AWS::Events::Archive"):
        props = stack.properties(logical_id)
        name = props.get("ArchiveName") or stack.name_of(logical_id)
        request: dict[str, Any] = {"ArchiveName": name, "EventSourceArn": props["SourceArn"]}
        if "EventPattern" in props:
            pattern = props["EventPattern"]
            request["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
        if "RetentionDays" in props:
            request["RetentionDays"] = int(props["RetentionDays"])
        arn = events.create_archive(**request)["ArchiveArn"]
        stack.set_attribute(logical_id, "Ref", name)
        stack.set_attribute(logical_id, "Arn", arn)
        names[logical_id] = name
    return names


def _register_pipes(stack: Stack) -> dict[str, str]:
    """Register each Pipe with moto's Pipes API, so `describe-pipe` works; local/emulators/pipes/ moves the data."""
    pipes = boto3.client("pipes")
    names = {}
    for logical_id in stack.of_type("AWS::Pipes::Pipe"):
        props = stack.properties(logical_id)
        name = props.get("Name") or stack.name_of(logical_id)
        request = {
            key: props[key]
            for key in ("Description", "Source", "SourceParameters", "Enrichment", "Target", "TargetParameters")
            if key in props
        }
        arn = pipes.create_pipe(Name=name, RoleArn=props["RoleArn"], DesiredState="RUNNING", **request)["Arn"]
        stack.set_attribute(logical_id, "Ref", name)
        stack.set_attribute(logical_id, "Arn", arn)
        names[logical_id] = name
    return names
