"""The ride API under hostile input: a 4xx problem that says what to fix, nothing written, never a 5xx.

Each case here is one the fuzz tests found or the issue named; tests/fuzz explores the rest.
"""

import base64
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from local.aws.dynamodb import create_table_like
from local.aws.template import Stack
from rideonce.dal.idempotency import IdempotencyStore
from rideonce.dal.rides import RideStore
from rideonce.models.requests import CreateRideRequest
from rideonce.services.rides import RideService, WriteRequest
from rideonce.settings import ApiSettings
from tests.integration.test_api import assert_problem, create, scan
from tests.support.api import NEW_RIDE, ApiClient

WRITE_ROUTES = ("/rides", "/rides/{id}/accept", "/rides/{id}/start", "/rides/{id}/complete", "/rides/{id}/cancel")


@pytest.fixture
def client(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> ApiClient:
    return ApiClient(stack, monkeypatch)


def nothing_written(stack: Stack, rides_before: int = 0) -> None:
    assert len(scan(stack, "RidesTable")) == rides_before
    assert len(scan(stack, "OutboxTable")) == rides_before
    assert all(item["status"]["S"] == "COMPLETED" for item in scan(stack, "IdempotencyTable"))


def raw_event(client: ApiClient, path: str, body: str, *, base64_encoded: bool) -> dict[str, Any]:
    event = client.event("POST", path, key="k", headers={"Content-Type": "application/json"})
    event["body"] = body
    event["isBase64Encoded"] = base64_encoded
    return event


# ---------------------------------------------------------------- bodies that are not one JSON object


@pytest.mark.parametrize("route", WRITE_ROUTES)
@pytest.mark.parametrize(
    ("body", "mentions"),
    [("not base64!", "not base64"), (base64.b64encode(b"\xff\xfe{}").decode(), "not UTF-8")],
    ids=["bad-base64", "not-utf8"],
)
def test_base64_bodies_that_are_not_utf8_json_get_400_on_every_write_route(
    client: ApiClient, stack: Stack, route: str, body: str, mentions: str
) -> None:
    # Given a ride, and a write whose body API Gateway flagged as base64
    ride_id = create(client)["rideId"]
    event = raw_event(client, route.format(id=ride_id), body, base64_encoded=True)
    # When it is sent
    response = client.send(event)
    # Then the client is told what is wrong with its body, and nothing else was written
    assert_problem(response, 400, mentions)
    nothing_written(stack, rides_before=1)


def test_a_base64_json_body_is_decoded_and_served(client: ApiClient) -> None:
    body = base64.b64encode(b'{"riderId":"r-1","pickup":{"lat":1,"lng":2},"dropoff":{"lat":3,"lng":4}}').decode()
    response = client.send(raw_event(client, "/rides", body, base64_encoded=True))
    assert response.status == 201, response.body
    assert response.json["riderId"] == "r-1"


def test_a_body_with_a_lone_surrogate_is_400(client: ApiClient, stack: Stack) -> None:
    # A Lambda event is JSON, and JSON text can spell a lone surrogate that no UTF-8 can hold
    event = raw_event(client, "/rides", '{"riderId": "\ud800"}', base64_encoded=False)
    assert_problem(client.send(event), 400, "not UTF-8")
    nothing_written(stack)


def test_start_with_a_body_that_is_not_json_is_400(client: ApiClient, stack: Stack) -> None:
    ride_id = create(client)["rideId"]
    response = client.request("POST", f"/rides/{ride_id}/start", "not json", key="s")
    assert_problem(response, 400, "not valid JSON")
    nothing_written(stack, rides_before=1)


def test_start_refuses_fields_it_does_not_know(client: ApiClient, stack: Stack) -> None:
    ride_id = create(client)["rideId"]
    client.request("POST", f"/rides/{ride_id}/accept", {"driverId": "d"}, key="a")
    assert_problem(client.request("POST", f"/rides/{ride_id}/start", {"at": "now"}, key="s"), 400, "body.at")
    assert client.request("POST", f"/rides/{ride_id}/start", {}, key="s2").status == 200


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        ([NEW_RIDE, {**NEW_RIDE, "riderId": "rider-2"}], "one JSON object, not an array"),
        ('{"riderId": "a", "riderId": "b", "pickup": {"lat": 1, "lng": 1}, "dropoff": {"lat": 1, "lng": 1}}', "twice"),
        ('{"riderId": "a", "pickup": {"lat": NaN, "lng": 1}, "dropoff": {"lat": 1, "lng": 1}}', "NaN is not JSON"),
        ("[" * 10_000, "nested too deeply"),
        ('"a ride"', "not a JSON scalar"),
    ],
    ids=["array-of-two", "duplicate-member", "nan", "deep-nesting", "scalar"],
)
def test_bodies_that_are_not_one_strict_json_object_are_400(
    client: ApiClient, stack: Stack, body: Any, mentions: str
) -> None:
    response = client.send(client.event("POST", "/rides", body, key="k"))
    assert_problem(response, 400, mentions)
    nothing_written(stack)


# ---------------------------------------------------------------- media types


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"]
)
def test_unsupported_media_types_get_a_415_problem(client: ApiClient, stack: Stack, content_type: str) -> None:
    response = client.request("POST", "/rides", NEW_RIDE, key="k", headers={"Content-Type": content_type})
    assert_problem(response, 415, "application/json")
    nothing_written(stack)


@pytest.mark.parametrize(
    "content_type", ["Application/JSON", "application/json; charset=UTF-8", 'APPLICATION/JSON;charset="utf-8"']
)
def test_media_types_compare_case_insensitively(client: ApiClient, content_type: str) -> None:
    response = client.request("POST", "/rides", NEW_RIDE, key="k", headers={"Content-Type": content_type})
    assert response.status == 201, response.body


# ---------------------------------------------------------------- a strict contract for numbers and money


@pytest.mark.parametrize(
    ("point", "mentions"),
    [({"lat": True, "lng": 1}, "JSON number"), ({"lat": "48.85", "lng": 1}, "JSON number")],
    ids=["boolean", "numeric-string"],
)
def test_coordinates_are_json_numbers_only(client: ApiClient, stack: Stack, point: Any, mentions: str) -> None:
    response = client.request("POST", "/rides", {**NEW_RIDE, "pickup": point}, key="k")
    assert_problem(response, 400, mentions)
    nothing_written(stack)


@pytest.mark.parametrize(
    ("fare", "where"),
    [
        ({"amount": "1E+2", "currency": "EUR"}, "body.fare.amount"),
        ({"amount": "+5", "currency": "EUR"}, "body.fare.amount"),
        ({"amount": "1_000", "currency": "EUR"}, "body.fare.amount"),
        ({"amount": "\u0661\u0662", "currency": "EUR"}, "body.fare.amount"),
        ({"amount": 12.5, "currency": "EUR"}, "body.fare.amount"),
        ({"amount": "12.50", "currency": "ABC"}, "body.fare.currency"),
        ({"amount": "12.5", "currency": "JPY"}, "body.fare"),
        ({"amount": "12.505", "currency": "EUR"}, "body.fare"),
    ],
    ids=[
        "exponent",
        "sign",
        "underscore",
        "arabic-digits",
        "json-number",
        "not-iso-4217",
        "yen-decimals",
        "euro-mills",
    ],
)
def test_fares_are_plain_decimal_strings_of_iso_4217_currencies(client: ApiClient, fare: Any, where: str) -> None:
    # Given a started ride
    ride_id = create(client)["rideId"]
    client.request("POST", f"/rides/{ride_id}/accept", {"driverId": "d"}, key="a")
    client.request("POST", f"/rides/{ride_id}/start", key="s")
    # When it is completed with a loosely typed fare
    response = client.request("POST", f"/rides/{ride_id}/complete", {"fare": fare}, key="c")
    # Then the fare is refused, the field named
    problem = assert_problem(response, 400, "fare")
    assert where in {issue["where"] for issue in problem["errors"]}
    assert client.request("GET", f"/rides/{ride_id}").json["status"] == "STARTED"


@pytest.mark.parametrize("fare", [{"amount": "1500", "currency": "JPY"}, {"amount": "2.125", "currency": "KWD"}])
def test_fares_may_use_their_currency_s_minor_units(client: ApiClient, fare: dict[str, str]) -> None:
    ride_id = create(client)["rideId"]
    client.request("POST", f"/rides/{ride_id}/accept", {"driverId": "d"}, key="a")
    client.request("POST", f"/rides/{ride_id}/start", key="s")
    response = client.request("POST", f"/rides/{ride_id}/complete", {"fare": fare}, key="c")
    assert response.status == 200, response.body
    assert response.json["fare"] == fare


@pytest.mark.parametrize("if_match", ['"\u00b2"', '"' + "9" * 5000 + '"'], ids=["superscript-digit", "5000-digits"])
def test_if_match_that_is_not_an_ascii_version_is_400(client: ApiClient, if_match: str) -> None:
    ride_id = create(client)["rideId"]
    response = client.request("POST", f"/rides/{ride_id}/cancel", {}, key="x", headers={"If-Match": if_match})
    assert_problem(response, 400, "If-Match")


# ---------------------------------------------------------------- our own failures never block a key


class FailingOnce(RideStore):
    """A ride store whose first commit fails as DynamoDB can (throttled), then recovers."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.failures_left = 1

    def commit(self, *args: Any, **kwargs: Any) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "TransactWriteItems"
            )
        super().commit(*args, **kwargs)


def test_a_request_that_failed_on_our_side_frees_its_key_for_the_retry(stack: Stack) -> None:
    # Given a service whose first commit fails after the key was claimed
    client = boto3.client("dynamodb")
    settings = ApiSettings.from_env(stack.function_environment("ApiFunction"))
    service = RideService(
        FailingOnce(client, settings.rides_table_name, settings.outbox_table_name),
        IdempotencyStore(client, settings.idempotency_table_name),
        settings,
    )
    request = WriteRequest(
        caller="c", idempotency_key="k", fingerprint="f", traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    )
    body = CreateRideRequest.model_validate(NEW_RIDE)
    with pytest.raises(ClientError):
        service.create(request, body)
    # When the client retries at once, with the same key and the same request
    retried = service.create(request, body)
    # Then the retry runs (no 409 "in flight", no 422), and one ride exists
    assert retried.response.status_code == 201
    assert not retried.replayed
    assert len(scan(stack, "RidesTable")) == 1


def test_an_internal_failure_is_a_500_problem_and_the_retry_succeeds(client: ApiClient, stack: Stack) -> None:
    # Given the outbox table is gone (an operator's mistake, an outage)
    dynamodb = boto3.client("dynamodb")
    outbox = stack.name_of("OutboxTable")
    create_table_like(dynamodb, outbox, "outbox-shape")
    dynamodb.delete_table(TableName=outbox)
    # When a ride is requested
    failed = client.request("POST", "/rides", NEW_RIDE, key="k")
    # Then the API blames itself in a problem document, and the key is free again
    assert_problem(failed, 500, "logged")
    assert scan(stack, "IdempotencyTable") == []
    # And once the table is back, the same retry creates the ride
    create_table_like(dynamodb, "outbox-shape", outbox, with_stream=True)
    assert client.request("POST", "/rides", NEW_RIDE, key="k").status == 201


# ---------------------------------------------------------------- the document says what the API does


def test_the_openapi_document_lists_the_problems_the_api_answers(client: ApiClient) -> None:
    # Given / When the served document
    document = client.request("GET", "/openapi.json").json
    # Then every error a route can answer is a problem document, and no header is offered as null
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            errors = {status: response for status, response in operation["responses"].items() if status >= "400"}
            expected = {"400", "500"} | ({"413", "415", "422"} if method == "post" else set())
            assert expected <= set(errors), (method, path)
            assert all(response["content"] == problem for response in errors.values()), (method, path)
            for parameter in operation.get("parameters", []):
                assert "anyOf" not in parameter["schema"], (method, path, parameter["name"])
    money = document["components"]["schemas"]["Money"]
    assert money["properties"]["amount"]["type"] == "string"
    assert "EUR" in money["properties"]["currency"]["enum"]
    by_currency = {
        code: variant["properties"]["amount"]["pattern"]
        for variant in money["oneOf"]
        for code in variant["properties"]["currency"]["enum"]
    }
    assert "." not in by_currency["JPY"]
    assert "{1,2}" in by_currency["EUR"]
    assert "{1,3}" in by_currency["KWD"]
