"""The ride API handler on moto tables built from template.yaml."""

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from local.aws.template import Stack
from rideonce.dal.idempotency import IdempotencyStore
from rideonce.dal.rides import RideStore
from rideonce.handlers import api
from rideonce.logic import idempotency
from rideonce.logic.errors import RequestInFlightError
from rideonce.models.idempotency import IdempotencyRecord, KeyStatus
from rideonce.models.requests import CreateRideRequest
from rideonce.services.rides import RideService, WriteRequest
from rideonce.settings import ApiSettings
from tests.support.api import NEW_RIDE, ApiClient, HttpResponse

OTHER_CALLER = "arn:aws:iam::123456789012:user/someone-else"


@pytest.fixture
def client(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> ApiClient:
    return ApiClient(stack, monkeypatch)


def scan(stack: Stack, logical_id: str) -> list[dict[str, Any]]:
    return boto3.client("dynamodb").scan(TableName=stack.name_of(logical_id))["Items"]


def assert_problem(response: HttpResponse, status: int, mentions: str) -> dict[str, Any]:
    assert response.status == status, response.body
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json
    assert problem["status"] == status
    assert mentions.lower() in problem["detail"].lower(), problem["detail"]
    return problem


def create(client: ApiClient, key: str = "create-1", body: dict[str, Any] = NEW_RIDE) -> dict[str, Any]:
    response = client.request("POST", "/rides", body, key=key)
    assert response.status == 201, response.body
    ride: dict[str, Any] = response.json
    return ride


# ---------------------------------------------------------------- happy paths


def test_create_answers_201_with_location_and_etag_and_get_returns_it(client: ApiClient) -> None:
    # Given / When
    response = client.request("POST", "/rides", NEW_RIDE, key="k-1")
    # Then
    assert response.status == 201
    ride = response.json
    assert ride["status"] == "REQUESTED"
    assert ride["version"] == 1
    assert response.headers["location"] == f"/rides/{ride['rideId']}"
    assert response.headers["etag"] == '"1"'
    got = client.request("GET", f"/rides/{ride['rideId']}")
    assert got.status == 200
    assert got.json == ride
    assert got.headers["etag"] == '"1"'


def test_full_lifecycle_writes_one_outbox_record_per_change(client: ApiClient, stack: Stack) -> None:
    # Given
    ride_id = create(client)["rideId"]
    # When
    accepted = client.request(
        "POST", f"/rides/{ride_id}/accept", {"driverId": "d-1"}, key="a", headers={"If-Match": '"1"'}
    )
    started = client.request("POST", f"/rides/{ride_id}/start", key="s")
    fare = {"amount": "23.50", "currency": "EUR"}
    completed = client.request("POST", f"/rides/{ride_id}/complete", {"fare": fare}, key="c")
    # Then
    assert [accepted.status, started.status, completed.status] == [200, 200, 200]
    assert completed.json["status"] == "COMPLETED"
    assert completed.json["fare"] == fare
    assert completed.json["driverId"] == "d-1"
    assert completed.headers["etag"] == '"4"'
    outbox = sorted(scan(stack, "OutboxTable"), key=lambda item: int(item["version"]["N"]))
    assert [int(item["version"]["N"]) for item in outbox] == [1, 2, 3, 4]
    types = [item["event"]["M"]["metadata"]["M"]["eventType"]["S"] for item in outbox]
    assert types == ["RideRequested", "RideAccepted", "RideStarted", "RideCompleted"]


def test_outbox_record_carries_state_event_type_commit_time_trace_and_expiry(client: ApiClient, stack: Stack) -> None:
    # Given
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    # When
    ride = client.request("POST", "/rides", NEW_RIDE, key="k", headers={"traceparent": traceparent}).json
    # Then
    (item,) = scan(stack, "OutboxTable")
    metadata = item["event"]["M"]["metadata"]["M"]
    assert metadata["traceparent"]["S"] == traceparent
    assert metadata["eventType"]["S"] == "RideRequested"
    assert metadata["occurredAt"]["S"] == ride["createdAt"]
    assert metadata["idempotencyKey"]["S"] == f"ride#{ride['rideId']}#v1"
    assert item["event"]["M"]["data"]["M"]["riderId"]["S"] == NEW_RIDE["riderId"]
    retention = int(stack.function_environment("ApiFunction")["OUTBOX_RETENTION_SECONDS"])
    assert abs(int(item["expiresAt"]["N"]) - (time.time() + retention)) < 60


def test_openapi_document_is_generated_from_the_code(client: ApiClient) -> None:
    response = client.request("GET", "/openapi.json", caller=None)
    assert response.status == 200
    document = response.json
    assert document["openapi"].startswith("3.")
    assert {"/rides", "/rides/{ride_id}", "/rides/{ride_id}/complete"} <= set(document["paths"])
    create_params = {param["name"] for param in document["paths"]["/rides"]["post"]["parameters"]}
    assert "idempotency-key" in create_params


# ---------------------------------------------------------------- Idempotency-Key


def test_completed_key_replays_the_stored_response_and_changes_nothing(client: ApiClient, stack: Stack) -> None:
    # Given
    first = client.request("POST", "/rides", NEW_RIDE, key="same")
    # When
    again = client.request("POST", "/rides", NEW_RIDE, key="same")
    # Then
    assert again.status == 201
    assert again.body == first.body
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert len(scan(stack, "RidesTable")) == 1
    assert len(scan(stack, "OutboxTable")) == 1


def test_replay_ignores_json_key_order_and_whitespace(client: ApiClient) -> None:
    first = client.request("POST", "/rides", NEW_RIDE, key="same")
    reordered = json.dumps(dict(reversed(list(NEW_RIDE.items()))), indent=4)
    again = client.request("POST", "/rides", reordered, key="same")
    assert again.status == 201
    assert again.json["rideId"] == first.json["rideId"]


def test_same_key_with_another_body_is_422(client: ApiClient, stack: Stack) -> None:
    create(client, key="same")
    other = {**NEW_RIDE, "riderId": "rider-2"}
    assert_problem(client.request("POST", "/rides", other, key="same"), 422, "different request")
    assert len(scan(stack, "RidesTable")) == 1


def test_same_key_on_another_route_is_422(client: ApiClient) -> None:
    ride_id = create(client, key="same")["rideId"]
    assert_problem(client.request("POST", f"/rides/{ride_id}/start", key="same"), 422, "different request")


def test_missing_key_is_400_and_writes_nothing(client: ApiClient, stack: Stack) -> None:
    assert_problem(client.request("POST", "/rides", NEW_RIDE), 400, "idempotency-key")
    assert scan(stack, "RidesTable") == []
    assert scan(stack, "IdempotencyTable") == []


def test_key_still_in_flight_is_409_with_retry_after(client: ApiClient, stack: Stack) -> None:
    # Given a request holding the key (claimed, not completed)
    service = api.service()
    now = int(time.time())
    fingerprint = idempotency.fingerprint("POST", "/rides", NEW_RIDE)
    held = IdempotencyRecord(
        scope=idempotency.scope("arn:aws:iam::123456789012:user/local-developer", "busy"),
        status=KeyStatus.IN_PROGRESS,
        fingerprint=fingerprint,
        token="other-request",
        lock_expires_at=now + 10,
        expires_at=now + 3600,
    )
    assert service._keys.claim(held, now) is None
    # When
    response = client.request("POST", "/rides", NEW_RIDE, key="busy")
    # Then
    assert_problem(response, 409, "still being processed")
    assert 1 <= int(response.headers["retry-after"]) <= 10
    assert scan(stack, "RidesTable") == []


def test_keys_are_scoped_to_the_caller(client: ApiClient, stack: Stack) -> None:
    mine = client.request("POST", "/rides", NEW_RIDE, key="shared-key")
    theirs = client.request("POST", "/rides", NEW_RIDE, key="shared-key", caller=OTHER_CALLER)
    assert (mine.status, theirs.status) == (201, 201)
    assert "idempotent-replayed" not in theirs.headers
    assert mine.json["rideId"] != theirs.json["rideId"]
    assert len(scan(stack, "RidesTable")) == 2


ROLE_SESSION = "arn:aws:sts::123456789012:assumed-role/rider-app/{session}"
POOL_ROLE = "arn:aws:sts::123456789012:assumed-role/Cognito_ridersAuth_Role/CognitoIdentityCredentials"


def as_cognito_identity(event: dict[str, Any], identity_id: str) -> dict[str, Any]:
    """What API Gateway sends for a caller signing with Cognito identity-pool credentials."""
    event["requestContext"]["authorizer"]["iam"]["userArn"] = POOL_ROLE
    event["requestContext"]["authorizer"]["iam"]["cognitoIdentity"] = {
        "amr": ["authenticated"],
        "identityId": identity_id,
        "identityPoolId": "us-east-1:0f8c2a7e-1111-4c3b-9d2a-000000000001",
    }
    return event


def test_a_role_retrying_from_a_new_session_replays_its_ride(client: ApiClient, stack: Stack) -> None:
    # Given a client that created a ride under one role session
    first = client.request("POST", "/rides", NEW_RIDE, key="k-role", caller=ROLE_SESSION.format(session="task-1"))
    # When it retries with the same key after its credentials were refreshed (a new session name)
    retry = client.request("POST", "/rides", NEW_RIDE, key="k-role", caller=ROLE_SESSION.format(session="task-2"))
    # Then the retry replays the ride: one ride, not two
    assert (first.status, retry.status) == (201, 201)
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.json == first.json
    assert len(scan(stack, "RidesTable")) == 1


def test_two_cognito_identities_with_one_key_get_two_rides(client: ApiClient, stack: Stack) -> None:
    # Given two riders signing in through one identity pool: the same role ARN, two identity ids
    alice = as_cognito_identity(client.event("POST", "/rides", NEW_RIDE, key="k-1"), "us-east-1:alice")
    bob = as_cognito_identity(
        client.event("POST", "/rides", {**NEW_RIDE, "riderId": "rider-2"}, key="k-1"), "us-east-1:bob"
    )
    # When both use the same Idempotency-Key
    first, second = client.send(alice), client.send(bob)
    # Then each gets a ride of their own: no 422, no replay of the other's ride
    assert (first.status, second.status) == (201, 201)
    assert "idempotent-replayed" not in second.headers
    assert second.json["riderId"] == "rider-2"
    assert len(scan(stack, "RidesTable")) == 2


def test_one_cognito_identity_retrying_replays_its_ride(client: ApiClient, stack: Stack) -> None:
    # Given / When one identity sends the same request twice
    first = client.send(as_cognito_identity(client.event("POST", "/rides", NEW_RIDE, key="k-c"), "us-east-1:alice"))
    retry = client.send(as_cognito_identity(client.event("POST", "/rides", NEW_RIDE, key="k-c"), "us-east-1:alice"))
    # Then
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.json == first.json
    assert len(scan(stack, "RidesTable")) == 1


def test_an_expired_key_counts_as_absent_before_dynamodb_deletes_it(
    client: ApiClient, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a completed key whose TTL has passed (DynamoDB deletes lazily, up to days late)
    create(client, key="old")
    ttl = int(stack.function_environment("ApiFunction")["IDEMPOTENCY_KEY_TTL_SECONDS"])
    later = time.time() + ttl + 1
    monkeypatch.setattr(time, "time", lambda: later)
    monkeypatch.setattr(api.service(), "_clock", lambda: datetime.fromtimestamp(later, UTC))
    # When the key is used again, even for another request
    response = client.request("POST", "/rides", {**NEW_RIDE, "riderId": "rider-9"}, key="old")
    # Then it is a new request, not a replay and not a 422
    assert response.status == 201
    assert "idempotent-replayed" not in response.headers
    assert len(scan(stack, "RidesTable")) == 2


def test_a_rejected_change_releases_its_key(client: ApiClient) -> None:
    # Given a ride that cannot start yet
    ride_id = create(client)["rideId"]
    assert client.request("POST", f"/rides/{ride_id}/start", key="start").status == 409
    # When it becomes startable and the same key is retried
    client.request("POST", f"/rides/{ride_id}/accept", {"driverId": "d"}, key="accept")
    retried = client.request("POST", f"/rides/{ride_id}/start", key="start")
    # Then the retry is evaluated afresh
    assert retried.status == 200
    assert retried.json["status"] == "STARTED"


# ---------------------------------------------------------------- domain errors


def test_invalid_transition_is_409(client: ApiClient, stack: Stack) -> None:
    ride_id = create(client)["rideId"]
    fare = {"fare": {"amount": "10.00", "currency": "EUR"}}
    assert_problem(client.request("POST", f"/rides/{ride_id}/complete", fare, key="c"), 409, "needs STARTED")
    assert len(scan(stack, "OutboxTable")) == 1


def test_completed_ride_cannot_be_cancelled(client: ApiClient) -> None:
    ride_id = create(client)["rideId"]
    client.request("POST", f"/rides/{ride_id}/accept", {"driverId": "d"}, key="a")
    client.request("POST", f"/rides/{ride_id}/start", key="s")
    client.request("POST", f"/rides/{ride_id}/complete", {"fare": {"amount": "9.99", "currency": "EUR"}}, key="c")
    assert_problem(client.request("POST", f"/rides/{ride_id}/cancel", {}, key="x"), 409, "cannot cancel")


def test_stale_if_match_is_412_and_current_one_succeeds(client: ApiClient) -> None:
    ride_id = create(client)["rideId"]
    stale = client.request("POST", f"/rides/{ride_id}/cancel", {}, key="x1", headers={"If-Match": '"7"'})
    assert_problem(stale, 412, "version 1")
    current = client.request("POST", f"/rides/{ride_id}/cancel", {}, key="x2", headers={"If-Match": '"1"'})
    assert current.status == 200


def test_malformed_if_match_is_400(client: ApiClient) -> None:
    ride_id = create(client)["rideId"]
    response = client.request("POST", f"/rides/{ride_id}/cancel", {}, key="x", headers={"If-Match": "version-1"})
    assert_problem(response, 400, "If-Match")


def test_unknown_ride_is_404_for_read_and_write(client: ApiClient) -> None:
    assert_problem(client.request("GET", "/rides/nope"), 404, "nope")
    assert_problem(client.request("POST", "/rides/nope/start", key="k"), 404, "nope")


def test_unknown_action_is_404_problem(client: ApiClient) -> None:
    ride_id = create(client)["rideId"]
    assert_problem(client.request("POST", f"/rides/{ride_id}/teleport", key="k"), 404, "no route")


# ---------------------------------------------------------------- bad input: clear 4xx, never 5xx


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        ('{"riderId": "r", "pickup": ', "not valid JSON: Expecting value at character 27"),
        ({**NEW_RIDE, "pickup": {"lat": "north", "lng": 1}}, "body.pickup.lat"),
        ({**NEW_RIDE, "pickup": {"lat": 91, "lng": 1}}, "less than or equal to 90"),
        ({**NEW_RIDE, "tip": 5}, "body.tip"),
        ({"pickup": NEW_RIDE["pickup"], "dropoff": NEW_RIDE["dropoff"]}, "body.riderId"),
        ([], "body"),
    ],
    ids=["malformed-json", "wrong-type", "out-of-range", "unknown-field", "missing-field", "not-an-object"],
)
def test_bad_bodies_get_a_400_that_names_the_problem(client: ApiClient, stack: Stack, body: Any, mentions: str) -> None:
    response = client.request("POST", "/rides", body, key="k")
    assert_problem(response, 400, mentions)
    assert scan(stack, "IdempotencyTable") == []


def test_bad_fare_is_400(client: ApiClient) -> None:
    ride_id = create(client)["rideId"]
    bad = {"fare": {"amount": "-3", "currency": "euro"}}
    problem = assert_problem(client.request("POST", f"/rides/{ride_id}/complete", bad, key="c"), 400, "fare")
    assert {issue["where"] for issue in problem["errors"]} == {"body.fare.amount", "body.fare.currency"}


def test_oversized_body_is_413(client: ApiClient, stack: Stack) -> None:
    limit = int(stack.function_environment("ApiFunction")["MAX_BODY_BYTES"])
    body = {**NEW_RIDE, "pickup": {**NEW_RIDE["pickup"], "address": "x" * limit}}
    assert_problem(client.request("POST", "/rides", body, key="k"), 413, str(limit))


# ---------------------------------------------------------------- atomicity and crashes


def test_a_failed_transaction_leaves_neither_ride_nor_outbox_record(client: ApiClient, stack: Stack) -> None:
    # Given a ride, and an outbox record already at the version its next change would take
    ride = create(client)
    planted = {
        "rideId": {"S": ride["rideId"]},
        "version": {"N": "2"},
        "expiresAt": {"N": "0"},
    }
    boto3.client("dynamodb").put_item(TableName=stack.name_of("OutboxTable"), Item=planted)
    # When the change is attempted
    response = client.request("POST", f"/rides/{ride['rideId']}/accept", {"driverId": "d"}, key="a")
    # Then the transaction was cancelled whole: the ride is untouched and no record was added
    assert_problem(response, 409, "changed while")
    assert client.request("GET", f"/rides/{ride['rideId']}").json == ride
    outbox = scan(stack, "OutboxTable")
    assert len(outbox) == 2
    assert planted in outbox
    assert [item for item in scan(stack, "IdempotencyTable") if item["scope"]["S"].endswith("|a")] == []


def test_crash_after_commit_before_answer_then_retry_replays(
    client: ApiClient, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a function that dies right after its transaction commits
    real_commit = RideStore.commit

    def commit_then_die(self: RideStore, *args: Any, **kwargs: Any) -> None:
        real_commit(self, *args, **kwargs)
        raise SystemExit("the function was killed before it could answer")

    monkeypatch.setattr(RideStore, "commit", commit_then_die)
    with pytest.raises(SystemExit):
        client.request("POST", "/rides", NEW_RIDE, key="crash")
    monkeypatch.setattr(RideStore, "commit", real_commit)
    # When the client retries with the same key
    retried = client.request("POST", "/rides", NEW_RIDE, key="crash")
    # Then it gets the committed ride, and nothing was written twice
    assert retried.status == 201
    assert retried.headers["idempotent-replayed"] == "true"
    (ride,) = scan(stack, "RidesTable")
    assert ride["rideId"]["S"] == retried.json["rideId"]
    assert len(scan(stack, "OutboxTable")) == 1


def test_crash_before_commit_then_retry_after_the_lock_expires_applies_once(
    client: ApiClient, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a function that dies after claiming the key, before committing
    def die(*_: Any, **__: Any) -> None:
        raise SystemExit("killed before the commit")

    real_commit = RideStore.commit
    monkeypatch.setattr(RideStore, "commit", die)
    with pytest.raises(SystemExit):
        client.request("POST", "/rides", NEW_RIDE, key="crash")
    monkeypatch.setattr(RideStore, "commit", real_commit)
    # When the client retries at once, then after the lock has expired
    early = client.request("POST", "/rides", NEW_RIDE, key="crash")
    lock = int(stack.function_environment("ApiFunction")["IDEMPOTENCY_LOCK_SECONDS"])
    later = datetime.now(UTC) + timedelta(seconds=lock + 1)
    monkeypatch.setattr(api.service(), "_clock", lambda: later)
    late = client.request("POST", "/rides", NEW_RIDE, key="crash")
    # Then the early retry is told to wait, the late one applies the change once
    assert_problem(early, 409, "still being processed")
    assert late.status == 201
    assert len(scan(stack, "RidesTable")) == 1
    assert len(scan(stack, "OutboxTable")) == 1


def test_twenty_concurrent_retries_create_one_ride(client: ApiClient, stack: Stack) -> None:
    """Twenty execution environments at once, each with its own client, one key: the race is in DynamoDB.

    Lambda runs one invocation at a time per environment, and the handler module's state (the resolver's
    current event, the metric set) belongs to one invocation; so each thread here is an environment's
    service, not the shared handler module.
    """
    # Given 20 copies of one request, same key, from 20 environments
    settings = ApiSettings.from_env()
    request = WriteRequest(
        caller="arn:aws:iam::123456789012:user/rider-app",
        idempotency_key="storm",
        fingerprint=idempotency.fingerprint("POST", "/rides", NEW_RIDE),
        traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01",
    )
    body = CreateRideRequest.model_validate(NEW_RIDE)
    barrier = threading.Barrier(20)
    outcomes: list[tuple[str, str | None]] = []
    lock = threading.Lock()

    def environment() -> None:
        ddb = boto3.client("dynamodb")
        service = RideService(
            RideStore(ddb, settings.rides_table_name, settings.outbox_table_name),
            IdempotencyStore(ddb, settings.idempotency_table_name),
            settings,
        )
        barrier.wait()
        try:
            outcome = service.create(request, body)
            result = ("replayed" if outcome.replayed else "created", json.loads(outcome.response.body)["rideId"])
        except RequestInFlightError:
            result = ("in flight", None)
        with lock:
            outcomes.append(result)

    # When they are sent at once
    threads = [threading.Thread(target=environment) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then one ride and one outbox record exist; one environment created it, the others replayed it or were
    # told it is in flight (409 with Retry-After)
    assert len(outcomes) == 20
    assert len(scan(stack, "RidesTable")) == 1
    assert len(scan(stack, "OutboxTable")) == 1
    ride_id = scan(stack, "RidesTable")[0]["rideId"]["S"]
    assert [kind for kind, _ in outcomes].count("created") == 1
    assert {kind for kind, _ in outcomes} <= {"created", "replayed", "in flight"}
    assert {ride for _, ride in outcomes if ride is not None} == {ride_id}
