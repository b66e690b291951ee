"""A stack to operate or test: its outputs, its functions' settings, its API endpoint and how to sign for it.

One abstraction, two constructors: `from_outputs_file` (the local stack's .local/outputs.json: moto's
endpoint, fake credentials) and `from_stack` (a deployed stack's CloudFormation outputs, the caller's
credentials). The operations command and the end-to-end suite see only a `Target`, so the code that runs
against AWS runs on the local stack too.

Requests to the API are SigV4-signed for `execute-api`, as IAM-authorized HTTP API routes require:
https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-access-control-iam.html
Stack outputs come from DescribeStacks:
https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DescribeStacks.html
A deployed function's environment variables from GetFunctionConfiguration:
https://docs.aws.amazon.com/lambda/latest/api/API_GetFunctionConfiguration.html
"""

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_sqs import SQSClient

# Events may reach an archive some time after the bus received them; AWS recommends waiting 10 minutes
# before replaying: https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-archive.html
AWS_ARCHIVE_DELAY_SECONDS = 600.0
# Fake credentials for the local stack: moto accepts any, and they can reach no real account.
LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local", "aws_session_token": "local"}


@dataclass
class HttpAnswer:
    """An API answer; header names lower-cased, since HTTP header names are case-insensitive."""

    status: int
    headers: dict[str, str]
    body: str

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Target:
    """A stack to test: its outputs, its API, its AWS endpoint and credentials, and what the suite sent it."""

    name: str
    api_url: str
    outputs: dict[str, str]
    session: boto3.session.Session
    endpoint_url: str | None = None
    archive_delay_seconds: float = 0.0
    function_environments: dict[str, dict[str, str]] | None = None
    """The local stack's functions' variables by function name (its outputs file has them); None on AWS."""
    requests: Counter[str] = field(default_factory=Counter)

    @classmethod
    def from_outputs_file(cls, path: Path) -> "Target":
        """The local stack, as its outputs file describes it (`make local` and the tests write one)."""
        written = json.loads(path.read_text())
        outputs = {key: str(value) for key, value in written["outputs"].items()}
        session = boto3.session.Session(region_name=written["region"], **LOCAL_CREDENTIALS)  # type: ignore[arg-type]
        return cls(
            name=f"local stack {written['stackName']} at {written['endpoint']}",
            api_url=outputs["ApiUrl"],
            outputs=outputs,
            session=session,
            endpoint_url=written["endpoint"],
            function_environments={
                resource["physicalId"]: dict(resource["environment"])
                for resource in written.get("resources", {}).values()
                if "environment" in resource
            },
        )

    @classmethod
    def from_stack(cls, stack_name: str, session: boto3.session.Session) -> "Target":
        """A deployed stack, found by name; the session's credentials sign every request."""
        cloudformation = session.client("cloudformation")
        (stack,) = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
        outputs = {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}
        return cls(
            name=f"stack {stack_name} in {session.region_name}",
            api_url=outputs["ApiUrl"],
            outputs=outputs,
            session=session,
            archive_delay_seconds=AWS_ARCHIVE_DELAY_SECONDS,
        )

    @property
    def region(self) -> str:
        return str(self.session.region_name)

    @property
    def is_local(self) -> bool:
        """The local stack (moto behind an endpoint URL), where a few AWS APIs are missing."""
        return self.endpoint_url is not None

    def function_environment(self, name_output: str) -> dict[str, str]:
        """The environment variables of the function the output `name_output` names, as Lambda holds them."""
        function_name = self.outputs[name_output]
        if self.function_environments is not None:
            return self.function_environments[function_name]
        configuration = self.lambda_().get_function_configuration(FunctionName=function_name)
        return dict(configuration.get("Environment", {}).get("Variables", {}))

    def dynamodb(self) -> "DynamoDBClient":
        return self._client("dynamodb")  # type: ignore[no-any-return]

    def events(self, config: Config | None = None) -> "EventBridgeClient":
        return self._client("events", config)  # type: ignore[no-any-return]

    def lambda_(self) -> "LambdaClient":
        return self._client("lambda")  # type: ignore[no-any-return]

    def sqs(self) -> "SQSClient":
        return self._client("sqs")  # type: ignore[no-any-return]

    def _client(self, service: str, config: Config | None = None) -> Any:
        """A boto3 client for the target's account; every call it makes is counted under its service."""
        client = self.session.client(service, endpoint_url=self.endpoint_url, config=config)  # type: ignore[call-overload]

        def count(**_: Any) -> None:
            self.requests[service] += 1

        client.meta.events.register("before-send", count)
        return client

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> HttpAnswer:
        """One SigV4-signed request to the ride API."""
        data = json.dumps(body).encode() if body is not None else None
        signed = AWSRequest(
            method=method,
            url=self.api_url.rstrip("/") + path,
            data=data,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        credentials = self.session.get_credentials()
        assert credentials is not None, "no AWS credentials to sign the request with"
        SigV4Auth(credentials.get_frozen_credentials(), "execute-api", self.region).add_auth(signed)
        prepared = signed.prepare()
        # The stack's own ApiUrl: https on AWS, http on 127.0.0.1 locally; never a user-supplied scheme.
        call = urllib.request.Request(prepared.url, data=data, headers=dict(prepared.headers.items()), method=method)  # noqa: S310
        self.requests["execute-api"] += 1
        try:
            with urllib.request.urlopen(call, timeout=30) as response:  # noqa: S310
                return HttpAnswer(response.status, _lowered(response.headers.items()), response.read().decode())
        except urllib.error.HTTPError as error:
            return HttpAnswer(error.code, _lowered(error.headers.items()), error.read().decode())


def _lowered(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


def poll[T](read: Callable[[], T], done: Callable[[T], bool], timeout: float, what: str, interval: float = 0.5) -> T:
    """Read until `done`, or fail after `timeout` seconds naming what did not happen and the last value read."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s; last read: {value!r}")
        time.sleep(interval)
