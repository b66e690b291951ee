"""Hypothesis on the API handler in-process: any body, header and base64 flag gets a defined answer.

A defined answer: a 2xx that wrote the change once, or a 4xx problem that wrote nothing; never a 5xx,
and never an Idempotency-Key left in progress.
"""

import base64
import json
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as event_label
from hypothesis import strategies as st

from local.aws.template import Stack
from tests.fuzz.strategies import JSON, broken
from tests.support.api import NEW_RIDE, ApiClient

pytestmark = pytest.mark.fuzz

JSON_MEDIA_TYPES = st.sampled_from(["application/json", "Application/JSON", "application/json; charset=UTF-8"])
OTHER_MEDIA_TYPES = st.sampled_from(
    ["application/json; charset=latin-1", "text/plain", "application/x-www-form-urlencoded", ""]
) | st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=40)
# Mostly JSON, so most requests get past the media type to the body, the headers and the domain.
MEDIA_TYPES = st.one_of(JSON_MEDIA_TYPES, JSON_MEDIA_TYPES, JSON_MEDIA_TYPES, OTHER_MEDIA_TYPES)
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=40)
FARE = {"fare": {"amount": "23.50", "currency": "EUR"}}


def counts(stack: Stack) -> tuple[int, int, int]:
    ddb = boto3.client("dynamodb")
    return tuple(  # type: ignore[return-value]
        ddb.scan(TableName=stack.name_of(table), Select="COUNT")["Count"]
        for table in ("RidesTable", "OutboxTable", "IdempotencyTable")
    )


def in_progress_keys(stack: Stack) -> list[dict[str, Any]]:
    items = boto3.client("dynamodb").scan(TableName=stack.name_of("IdempotencyTable"))["Items"]
    return [item for item in items if item["status"]["S"] != "COMPLETED"]


@st.composite
def bodies(draw: st.DrawFn, valid: dict[str, Any] | None) -> tuple[str | None, bool]:
    """The event's body and its isBase64Encoded flag."""
    kind = draw(
        st.sampled_from(
            ["none", "valid", "valid", "valid", "broken", "broken", "json", "text", "bytes", "base64-of-json"]
        )
    )
    flag = draw(st.booleans())
    if kind == "none":
        return None, flag
    if kind == "text":
        return draw(st.text(max_size=200)), flag
    if kind == "bytes":
        raw = draw(st.binary(max_size=200))
        return (base64.b64encode(raw).decode(), True) if flag else (raw.decode("latin-1"), False)
    value = {
        "valid": valid,
        "broken": draw(broken(valid)) if valid is not None else None,
        "json": draw(JSON),
        "base64-of-json": valid,
    }[kind]
    text = json.dumps(value)
    if kind == "base64-of-json" or (flag and draw(st.booleans())):
        return base64.b64encode(text.encode()).decode(), True
    return text, False


@pytest.fixture
def seeded(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> tuple[ApiClient, str]:
    """The API with one ride in it; built once for all the examples of a property (their tables persist)."""
    client = ApiClient(stack, monkeypatch)
    return client, client.request("POST", "/rides", NEW_RIDE, key="seed").json["rideId"]


@st.composite
def requests(draw: st.DrawFn, client: ApiClient, ride_id: str) -> dict[str, Any]:
    """A payload v2 event for one of the routes (or none), with any headers, body and base64 flag."""
    routes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", "/rides", NEW_RIDE),
        ("POST", f"/rides/{ride_id}/accept", {"driverId": "d-1"}),
        ("POST", f"/rides/{ride_id}/start", {}),
        ("POST", f"/rides/{ride_id}/complete", FARE),
        ("POST", f"/rides/{ride_id}/cancel", {"reason": "changed plans"}),
        ("POST", "/rides/no-such-ride/start", {}),
        ("GET", f"/rides/{ride_id}", None),
    ]
    method, path, valid = draw(st.sampled_from(routes))
    headers: dict[str, str] = {"Content-Type": draw(MEDIA_TYPES)}
    # Fresh keys reach the domain; a few shared ones meet replays and reuse (422); odd ones, validation.
    key = draw(
        st.uuids().map(str) | st.uuids().map(str) | st.sampled_from(["k-1", "k-2", "k-3"]) | HEADER_TEXT | st.none()
    )
    if key is not None:
        headers["Idempotency-Key"] = key
    if_match = draw(st.none() | st.none() | st.sampled_from(['"1"', '"2"', "*", '"\u00b2"']) | HEADER_TEXT)
    if if_match is not None:
        headers["If-Match"] = if_match
    event = client.event(method, path, headers=headers)
    event["body"], event["isBase64Encoded"] = draw(bodies(valid))
    if event["body"] is None:
        event.pop("body")
    return event


@settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_any_request_gets_a_defined_answer_and_a_refusal_writes_nothing(
    seeded: tuple[ApiClient, str], stack: Stack, data: st.DataObject
) -> None:
    client, ride_id = seeded
    # Given the tables as they are, and any request
    event = data.draw(requests(client, ride_id))
    before = counts(stack)
    # When it arrives
    response = client.send(event)
    # Then it is answered, never with a 5xx, and a refusal changed nothing
    event_label(f"{event['requestContext']['http']['method']} -> {response.status}")
    assert 200 <= response.status < 500, response.body
    after = counts(stack)
    if response.status >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json["status"] == response.status
        assert after == before, response.body
    else:
        assert response.headers["content-type"] == "application/json"
        changed = event["requestContext"]["http"]["method"] == "POST" and "idempotent-replayed" not in response.headers
        assert after[1] == before[1] + (1 if changed else 0)
    assert in_progress_keys(stack) == []
