"""The end-to-end suite's target: both constructors, and requests signed as IAM-authorized routes need."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from ops.target import AWS_ARCHIVE_DELAY_SECONDS, Target

OUTPUTS = {
    "ApiUrl": "https://abc123.execute-api.eu-west-1.amazonaws.com",
    "RideProjectionTableName": "rideonce-dev-RideProjectionTable-X",
}


def test_the_local_constructor_reads_the_outputs_file(tmp_path: Path) -> None:
    # Given an outputs file as the local stack writes it
    path = tmp_path / "outputs.json"
    path.write_text(
        json.dumps(
            {
                "endpoint": "http://127.0.0.1:5000",
                "region": "us-east-1",
                "stackName": "rideonce-local",
                "outputs": {**OUTPUTS, "ApiUrl": "http://127.0.0.1:3000", "ReconcilerFunctionName": "local-Reconciler"},
                "resources": {
                    "ReconcilerFunction": {
                        "type": "AWS::Lambda::Function",
                        "physicalId": "local-Reconciler",
                        "environment": {"RECONCILE_PERIOD_MINUTES": "5"},
                    }
                },
            }
        )
    )
    # When a target is made from it
    target = Target.from_outputs_file(path)
    # Then it points its clients at the local endpoint, with local credentials, and no archive delay
    assert target.api_url == "http://127.0.0.1:3000"
    assert target.outputs["RideProjectionTableName"] == OUTPUTS["RideProjectionTableName"]
    assert target.dynamodb().meta.endpoint_url == "http://127.0.0.1:5000"
    credentials = target.session.get_credentials()
    assert credentials is not None
    assert credentials.access_key == "local"
    assert target.archive_delay_seconds == 0
    # And a function's settings come from the file, as Lambda's GetFunctionConfiguration gives them on AWS
    assert target.function_environment("ReconcilerFunctionName") == {"RECONCILE_PERIOD_MINUTES": "5"}
    assert target.is_local


def test_the_deployed_constructor_reads_the_stacks_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a CloudFormation stack with outputs (DescribeStacks stubbed: no account here)
    session = boto3.session.Session(region_name="eu-west-1")
    cloudformation = session.client("cloudformation")
    stubber = Stubber(cloudformation)
    stubber.add_response(
        "describe_stacks",
        {
            "Stacks": [
                {
                    "StackName": "rideonce-dev",
                    "CreationTime": "2026-11-01T00:00:00Z",
                    "StackStatus": "UPDATE_COMPLETE",
                    "Outputs": [{"OutputKey": key, "OutputValue": value} for key, value in OUTPUTS.items()],
                }
            ]
        },
        {"StackName": "rideonce-dev"},
    )
    monkeypatch.setattr(session, "client", lambda service, **_: cloudformation)
    # When a target is made from the stack's name
    with stubber:
        target = Target.from_stack("rideonce-dev", session)
    # Then it has the stack's outputs, AWS's own endpoints, and waits as AWS documents before a replay
    assert target.outputs == OUTPUTS
    assert target.api_url == OUTPUTS["ApiUrl"]
    assert target.endpoint_url is None
    assert target.archive_delay_seconds == AWS_ARCHIVE_DELAY_SECONDS


@pytest.fixture
def recording_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            seen.append({"headers": dict(self.headers.items()), "body": self.rfile.read(length).decode()})
            payload = b'{"ok":true}'
            self.send_response(201)
            self.send_header("Idempotent-Replayed", "true")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_requests_are_sigv4_signed_for_execute_api(recording_server: tuple[str, list[dict[str, Any]]]) -> None:
    # Given a target whose API is a server that records what it receives
    url, seen = recording_server
    session = boto3.session.Session(
        region_name="eu-west-1", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret"
    )
    target = Target(name="recorder", api_url=url, outputs={}, session=session)
    # When the suite sends a request
    answer = target.request("POST", "/rides", {"a": 1}, {"Idempotency-Key": "k"})
    # Then it carries a SigV4 signature scoped to execute-api in the target's region, over the body sent
    (received,) = seen
    authorization = received["headers"]["Authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/execute-api/aws4_request" in authorization
    assert received["headers"]["Idempotency-Key"] == "k"
    assert json.loads(received["body"]) == {"a": 1}
    # And the answer's header names are read case-insensitively
    assert (answer.status, answer.headers["idempotent-replayed"], answer.json) == (201, "true", {"ok": True})
    assert target.requests["execute-api"] == 1
