"""The handlers given the events AWS services send, as `sam local generate-event` writes them.

The files in tests/events/ come from tests/events/generate.sh (SAM CLI 1.170) and are never edited; each
test adapts its file minimally, and says how:

- http-api-proxy: the generator's authorizer block is a JWT one; the routes use IAM authorization, so it
  becomes the `iam` block API Gateway sends for SigV4 callers. The generated request names no media type,
  which the API refuses (415), so a capitalised `Content-Type: application/json` is added; other headers
  (capitalised, as generated) and the body (base64, as generated) are added or kept as they are.
- sqs receive-message: the body becomes an EventBridge envelope of a ride event, as the rule delivers it;
  the generated plain-text body is also delivered as it is.
- dynamodb update: a Pipe hands its enrichment the bare array of stream records, so the enrichment gets
  `Records` (the generator wraps them for Lambda's event source mapping, which this function is not behind).

Payload format 2.0: https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html
SQS partial batch responses: https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.md
Stream records: https://docs.aws.amazon.com/goto/WebAPI/streams-dynamodb-2012-08-10/Record
"""

import base64
import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.aws.context import FakeLambdaContext
from local.aws.template import ROOT, Stack
from rideonce.handlers import api, consumer, enrichment
from tests.support.api import ApiClient
from tests.support.consumer import ConsumerHarness, envelope, lifecycle

GENERATED = ROOT / "tests" / "events"
CALLER = "arn:aws:sts::123456789012:assumed-role/rider-app/session-1"


def generated(name: str) -> dict[str, Any]:
    return json.loads((GENERATED / name).read_text())  # type: ignore[no-any-return]


def http_request(headers: dict[str, str], **changes: Any) -> dict[str, Any]:
    """The generated POST /rides, signed by an IAM caller, sent as JSON, with the given headers added."""
    event = generated("http-api-proxy.json")
    event["requestContext"]["authorizer"] = {
        "iam": {
            "accessKey": "ASIAEXAMPLE",
            "accountId": "123456789012",
            "callerId": "AROAEXAMPLE:session-1",
            "cognitoIdentity": None,
            "principalOrgId": None,
            "userArn": CALLER,
            "userId": "AROAEXAMPLE:session-1",
        }
    }
    event["headers"] = {**event["headers"], "Content-Type": "application/json", **headers}
    event.update(changes)
    return event


def call(event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = api.handler(event, FakeLambdaContext(function_name="ApiFunction"))
    return result


@pytest.fixture
def api_ready(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    ApiClient(stack, monkeypatch)
    return stack


def test_the_generated_request_with_a_capitalised_key_creates_a_ride(api_ready: Stack) -> None:
    # Given the generated HTTP API request: capitalised header names, a base64 body
    event = http_request({"Idempotency-Key": "gen-1"})
    assert event["isBase64Encoded"] is True
    # When the API handles it
    result = call(event)
    # Then the ride is created from the decoded body
    assert result["statusCode"] == 201, result["body"]
    assert json.loads(result["body"])["riderId"] == "rider-1"


def test_header_names_are_case_insensitive_for_the_idempotency_key(api_ready: Stack) -> None:
    # Given a ride created with `Idempotency-Key`
    first = call(http_request({"Idempotency-Key": "gen-2"}))
    # When the retry spells it `idempotency-key` (as API Gateway's own lower-casing would)
    retry = call(http_request({"idempotency-key": "gen-2"}))
    # Then it is the same key: the retry replays the ride
    assert (first["statusCode"], retry["statusCode"]) == (201, 201)
    assert retry["headers"]["Idempotent-Replayed"] == "true"
    assert retry["body"] == first["body"]


def test_the_generated_request_without_a_media_type_is_a_415(api_ready: Stack) -> None:
    event = http_request({"Idempotency-Key": "gen-0"})
    del event["headers"]["Content-Type"]
    result = call(event)
    assert result["statusCode"] == 415
    assert result["headers"]["Content-Type"] == "application/problem+json"


def test_the_generated_request_without_a_key_is_a_400(api_ready: Stack) -> None:
    result = call(http_request({}))
    assert result["statusCode"] == 400
    assert "idempotency" in result["body"].lower()


def test_a_plain_text_body_is_a_400_not_an_error(api_ready: Stack) -> None:
    body = base64.b64encode(b"not json").decode()
    result = call(http_request({"Idempotency-Key": "gen-3"}, body=body))
    assert result["statusCode"] == 400


def test_the_generated_sqs_message_with_a_ride_event_is_applied(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the generated SQS event, its body an EventBridge envelope of a RideRequested
    harness = ConsumerHarness(stack, monkeypatch)
    event = generated("sqs-receive-message.json")
    (requested, *_) = lifecycle("gen-ride-1")
    event["Records"][0]["body"] = envelope(requested)
    # When the consumer handles it
    result = consumer.handler(event, FakeLambdaContext(function_name="ConsumerFunction"))
    # Then it is applied, and no record is reported failed
    assert result == {"batchItemFailures": []}
    assert harness.projection("gen-ride-1") == {"version": 1, "status": "REQUESTED"}


def test_the_generated_plain_text_message_is_failed_alone(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the generated SQS event as it is ("Hello from SQS!") and a good message beside it
    harness = ConsumerHarness(stack, monkeypatch)
    event = generated("sqs-receive-message.json")
    good = copy.deepcopy(event["Records"][0]) | {"messageId": "good-1", "body": envelope(lifecycle("gen-ride-2")[0])}
    event["Records"].append(good)
    # When the consumer handles the batch
    result = consumer.handler(event, FakeLambdaContext(function_name="ConsumerFunction"))
    # Then only the message it cannot read is reported (SQS retries it, then parks it in the DLQ)
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert harness.projection("gen-ride-2") == {"version": 1, "status": "REQUESTED"}


def test_the_generated_stream_records_give_one_rejection_and_two_skips() -> None:
    # Given the generated INSERT, MODIFY and REMOVE of a table that is not the outbox, as a Pipe sends them
    records = generated("dynamodb-update.json")["Records"]
    assert [record["eventName"] for record in records] == ["INSERT", "MODIFY", "REMOVE"]
    # When the enrichment handles them
    answer = enrichment.handler(records, FakeLambdaContext(function_name="EnrichmentFunction"))  # type: ignore[arg-type]
    # Then the INSERT, which is no outbox record, is rejected for the quarantine; MODIFY and REMOVE are skipped
    assert [item["metadata"]["eventType"] for item in answer] == ["OutboxRecordRejected"]
    assert answer[0]["data"]["record"] == records[0]
    assert "not a valid outbox record" in answer[0]["data"]["reason"]


def test_the_enrichment_refuses_the_lambda_wrapper_loudly() -> None:
    # Given the generated event as it is: {"Records": [...]}, which no Pipe sends
    event = generated("dynamodb-update.json")
    # When / Then the enrichment fails the invocation instead of guessing
    with pytest.raises(TypeError, match="JSON array"):
        enrichment.handler(event, FakeLambdaContext(function_name="EnrichmentFunction"))  # type: ignore[arg-type]


def test_a_capitalised_traceparent_reaches_the_outbox_event(api_ready: Stack) -> None:
    # Given the generated request carrying W3C trace context under a capitalised header name
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    # When the API handles it
    assert call(http_request({"Idempotency-Key": "gen-4", "Traceparent": trace}))["statusCode"] == 201
    # Then the event the outbox holds carries that trace
    (item,) = boto3.client("dynamodb").scan(TableName=api_ready.name_of("OutboxTable"))["Items"]
    assert item["event"]["M"]["metadata"]["M"]["traceparent"]["S"] == trace


def test_the_checked_in_events_are_what_the_sam_cli_writes(tmp_path: Path) -> None:
    # Given the recorded command, run again into an empty directory
    subprocess.run(
        [str(GENERATED / "generate.sh"), str(tmp_path)], cwd=ROOT, check=True, capture_output=True, timeout=120
    )
    # Then it writes exactly the files the tests use
    for name in ("http-api-proxy.json", "sqs-receive-message.json", "dynamodb-update.json"):
        assert json.loads((tmp_path / name).read_text()) == generated(name), name
