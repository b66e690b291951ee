"""Faults at the first two hops, client -> API and API -> tables.

`FaultyApiCaller` (concurrent duplicates, a crash after the commit, then the client's retry) over
`RideTraffic`'s own retries. Each client's `RideService` is built on the API's injected collaborators:
a `CrashingRideStore` (the function dies after its commit), `LinedUpClaims` (a concurrent pair claims
its Idempotency-Key in a set order), and ride ids that follow from the seed (`SeededRideService`).
Poison items go into the outbox table beside the records, spread over the run.
"""

import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from local.aws.functions import LocalFunction
from local.aws.template import Stack
from local.chaos.gates import PRIMARY, SECOND, Turnstile
from local.chaos.plan import Crash, Fault, FaultPlan
from local.chaos.seams import ApiCaller, IdempotencyStore, RideService, RideStore, api_handler
from local.emulators.apigw import DEFAULT_CALLER_ARN
from local.workload.traffic import ApiResponse
from rideonce.logic import idempotency, rides
from rideonce.logic.errors import RequestInFlightError
from rideonce.models.events import OutboxRecord
from rideonce.models.idempotency import IdempotencyRecord
from rideonce.models.requests import AcceptRideRequest, CancelRideRequest, CompleteRideRequest, CreateRideRequest
from rideonce.models.ride import Money, Ride
from rideonce.services.rides import Outcome, WriteRequest
from rideonce.settings import ApiSettings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

    from rideonce.logic.rides import Change


SEEDED_ID_NAMESPACE = uuid.UUID("1d6f2f8e-3c0b-4b51-9a43-5f1e0c7d2b90")

CHAOS_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class CrashingRideStore(RideStore):
    """The API's ride store, after whose commit the function may die before it answers.

    The client sees no answer and retries with the same key; the key's COMPLETED record committed in the
    same transaction, so the retry must get the stored response, not a second ride change.
    """

    def __init__(self, client: "DynamoDBClient", rides_table: str, outbox_table: str, plan: FaultPlan) -> None:
        super().__init__(client, rides_table, outbox_table)
        self._plan = plan

    def commit(
        self, change: "Change", record: OutboxRecord, also: Mapping[str, "TransactWriteItemTypeDef"] | None = None
    ) -> None:
        super().commit(change, record, also)
        subject = record.event.metadata.idempotency_key
        if self._plan.occurs(Fault.API_CRASH_AFTER_COMMIT, subject):
            raise Crash(Fault.API_CRASH_AFTER_COMMIT, subject)


class LinedUpClaims(IdempotencyStore):
    """One client's Idempotency-Key claims; while it is one of a concurrent pair (`gate`), in a set order.

    Either both claim before the first commits (the second gets 409 in flight), or the second claims after
    the first has answered (it gets the replay); `FaultyApiCaller` picks which from the seed.
    """

    def __init__(self, client: "DynamoDBClient", table_name: str, role: str) -> None:
        super().__init__(client, table_name)
        self.role = role
        self.gate: Turnstile | None = None
        self.in_flight = True

    def claim(self, record: IdempotencyRecord, now: int) -> IdempotencyRecord | None:
        gate, claim = self.gate, super().claim
        if gate is None or gate.passed(self.role, Turnstile.READ):
            return claim(record, now)
        if not self.in_flight:
            if self.role == SECOND:
                gate.after(PRIMARY)
            return claim(record, now)
        return gate.read(self.role, lambda: claim(record, now))


class SeededRideService(RideService):
    """The ride service with ride ids derived from the seed and the create request's Idempotency-Key.

    Every downstream decision is keyed by the event's idempotency key, which holds the ride id; random ids
    would give a replayed run another schedule. Two clients creating with one key derive the same id; the
    service's lock tokens, never seen downstream, stay random.
    """

    def __init__(self, seed: int, store: RideStore, claims: LinedUpClaims, settings: ApiSettings) -> None:
        self._seed = seed
        self._pending: str | None = None
        super().__init__(store, claims, settings, make_id=self._next_id)
        self.claims = claims

    def create(self, request: WriteRequest, body: CreateRideRequest) -> Outcome:
        name = f"{self._seed}|{request.caller}|{request.idempotency_key}"
        self._pending = str(uuid.uuid5(SEEDED_ID_NAMESPACE, name))
        try:
            return super().create(request, body)
        finally:
            self._pending = None

    def _next_id(self) -> str:
        """The derived ride id on the first call of a create; random ids otherwise (lock tokens)."""
        pending, self._pending = self._pending, None
        return pending or str(uuid.uuid4())


def seeded_service(client: "DynamoDBClient", settings: ApiSettings, plan: FaultPlan, role: str) -> SeededRideService:
    """One client's ride service, as the API function builds it, on the API's faulty collaborators."""
    store = CrashingRideStore(client, settings.rides_table_name, settings.outbox_table_name, plan)
    return SeededRideService(plan.seed, store, LinedUpClaims(client, settings.idempotency_table_name, role), settings)


@dataclass
class ApiFaultStats:
    handler_requests: int = 0
    """Requests sent through the handler, crashed ones included (ApiCaller.stats counts answered ones)."""
    concurrent_pairs: int = 0
    in_flight_conflicts: int = 0
    """409 Request In Flight answers to the loser of a concurrent pair (it retried and got the replay)."""
    crash_retries: int = 0
    service_requests: int = 0
    service_replays: int = 0


class FaultyApiCaller(ApiCaller):
    """An `ApiCaller` whose requests meet the client-side faults, always ending with the same ride.

    - a crash after the commit: the request raises `Crash`; the client retries with the same key and must
      get the replay (`Idempotent-Replayed: true`) with the committed ride;
    - concurrent duplicates: the same request and key go at once through the handler (this thread, the
      API function's `api_handler` over one client's service) and straight through a second client's
      `RideService` (another thread; the Lambda handler object is not thread-safe). One
      wins; the other gets 409 in flight or the replay, and on 409 retries until it gets the replay. Both
      clients must end with the same ride.
    """

    def __init__(
        self,
        stack: Stack,
        function: LocalFunction,
        plan: FaultPlan,
        handler_service: SeededRideService,
        second_service: SeededRideService,
    ) -> None:
        handler = api_handler(lambda: handler_service)
        super().__init__(stack, function, handler=handler)
        self._plan = plan
        self._claims = handler_service.claims
        self._second = second_service
        self._seen: set[str] = set()
        self.faults = ApiFaultStats()
        self.violations: list[str] = []
        """Broken promises seen by a client: a retry that was not a replay, two clients with different rides."""

    def call(
        self, method: str, path: str, body: Any = None, key: str | None = None, headers: dict[str, str] | None = None
    ) -> ApiResponse:
        first_time = key is not None and key not in self._seen
        if key is not None:
            self._seen.add(key)
        if first_time and key is not None and method == "POST" and self._plan.occurs(Fault.CONCURRENT_REQUESTS, key):
            return self._concurrently(method, path, body, key, headers or {})
        return self._surviving(method, path, body, key, headers)

    def _surviving(
        self, method: str, path: str, body: Any, key: str | None, headers: dict[str, str] | None
    ) -> ApiResponse:
        """One request; after an injected crash, the client's retry with the same key."""
        try:
            return self._through_handler(method, path, body, key, headers)
        except Crash:
            self.faults.crash_retries += 1
            retried = self._through_handler(method, path, body, key, headers)
            if retried.headers.get("idempotent-replayed") != "true":
                self.violations.append(f"the retry after a crash of {method} {path} was not a replay")
            return retried

    def _concurrently(self, method: str, path: str, body: Any, key: str, headers: dict[str, str]) -> ApiResponse:
        """Both clients at once, their claims lined up in the order the seed picks for this key."""
        self.faults.concurrent_pairs += 1
        gate = Turnstile()
        in_flight = self._plan.draw(Fault.CONCURRENT_REQUESTS, key, -1) < 0.5
        second: list[ApiResponse | BaseException] = []

        def other_client() -> None:
            try:
                answer = self._via_service_until_answered(method, path, body, key, headers, retry_in_flight=False)
            except BaseException as error:  # handed to the calling thread, which raises it
                second.append(error)
            else:
                second.append(answer)
            finally:
                self._second.claims.gate = None
                gate.leave(SECOND)

        thread = threading.Thread(target=other_client, name="concurrent-request")
        for claims in (self._claims, self._second.claims):
            claims.gate, claims.in_flight = gate, in_flight
        thread.start()
        try:
            first: ApiResponse | None = self._through_handler(method, path, body, key, headers)
        except Crash:
            self.faults.crash_retries += 1
            first = None
        finally:
            self._claims.gate = None
            gate.leave(PRIMARY)
        thread.join()
        if gate.timed_out:
            self.violations.append(f"concurrent {method} {path}: the two clients never lined up (harness timeout)")
        if first is None or first.status == 409:
            self.faults.in_flight_conflicts += first is not None
            first = self._through_handler(method, path, body, key, headers)
        (other,) = second
        if isinstance(other, BaseException):
            raise other
        if other.status == 409:
            other = self._via_service_until_answered(method, path, body, key, headers, retry_in_flight=True)
        if (other.status, other.body) != (first.status, first.body):
            self.violations.append(f"concurrent {method} {path}: the two clients got different answers")
        return first

    def _through_handler(
        self, method: str, path: str, body: Any, key: str | None, headers: dict[str, str] | None
    ) -> ApiResponse:
        self.faults.handler_requests += 1
        return super().call(method, path, body, key, headers)

    def _via_service_until_answered(
        self, method: str, path: str, body: Any, key: str, headers: dict[str, str], *, retry_in_flight: bool
    ) -> ApiResponse:
        """The second client: the service called directly, surviving an injected crash like `_surviving`."""
        try:
            response = self._via_service(method, path, body, key, headers)
        except Crash:
            self.faults.crash_retries += 1
            response = self._via_service(method, path, body, key, headers)
        except RequestInFlightError:
            if retry_in_flight:
                raise
            self.faults.in_flight_conflicts += 1
            return ApiResponse(409, {}, None)
        return response

    def _via_service(self, method: str, path: str, body: Any, key: str, headers: dict[str, str]) -> ApiResponse:
        """What the handler's routes do, minus the resolver: parse the body, call the service, shape the answer."""
        request = WriteRequest(
            caller=DEFAULT_CALLER_ARN,
            idempotency_key=key,
            fingerprint=idempotency.fingerprint(method, path, body),
            traceparent=CHAOS_TRACEPARENT,
        )
        self.faults.service_requests += 1
        parts = path.strip("/").split("/")
        if parts == ["rides"]:
            outcome = self._second.create(request, CreateRideRequest.model_validate(body))
        else:
            _, ride_id, action = parts
            outcome = self._second.transition(request, ride_id, headers.get("If-Match"), _transition(action, body))
        self.faults.service_replays += outcome.replayed
        stored = outcome.response
        return ApiResponse(
            stored.status_code,
            {name.lower(): value for name, value in stored.headers.items()},
            json.loads(stored.body) if stored.body else None,
        )


def _transition(action: str, body: Any) -> Callable[[Ride, Any, int | None], "Change"]:
    """The domain function each transition route calls, with the body parsed by its request model."""
    if action == "accept":
        driver = AcceptRideRequest.model_validate(body).driver_id
        return lambda ride, now, expected: rides.accept(ride, driver, now, expected)
    if action == "start":
        return rides.start
    if action == "complete":
        fare: Money = CompleteRideRequest.model_validate(body).fare
        return lambda ride, now, expected: rides.complete(ride, fare, now, expected)
    if action == "cancel":
        reason = CancelRideRequest.model_validate(body or {}).reason
        return lambda ride, now, expected: rides.cancel(ride, reason, now, expected)
    raise ValueError(f"no ride action {action!r}")


def poison_schedule(expected_changes: int, rate: float) -> set[int]:
    """At which accepted change to inject each poison: evenly spread, at least one when the rate is on."""
    if rate <= 0:
        return set()
    count = max(1, round(expected_changes * rate))
    return {max(1, round((index + 0.5) * expected_changes / count)) for index in range(count)}


def poison_outbox_item(index: int) -> dict[str, Any]:
    """An outbox row the enrichment cannot turn into a ride event: no event, a string, or a hollow event."""
    variants: list[dict[str, Any]] = [
        {},
        {"event": {"S": f"not an event #{index}"}},
        {"event": {"M": {"metadata": {"M": {"eventId": {"S": f"poison-{index}"}}}, "data": {"M": {}}}}},
    ]
    return {
        "rideId": {"S": f"poison-{index:04d}"},
        "version": {"N": "1"},
        "expiresAt": {"N": str(int(time.time()) + 86_400)},
        **variants[index % len(variants)],
    }
