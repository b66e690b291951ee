"""Simulated riders: ride lifecycles driven through the API handler, with the client retries real clients make.

Every request is an API Gateway payload v2 event routed by the template's routes, so the handler
sees exactly what it would in AWS. The ledger records what the API accepted; the end-to-end
invariants compare everything downstream against it.
"""

import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from local.aws.functions import Handler, LocalFunction
from local.aws.template import Stack
from local.emulators.apigw import DEFAULT_CALLER_ARN, route_event, route_table


@dataclass
class ApiResponse:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class ApiStats:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    replays: int = 0
    seconds: float = 0.0


class ApiCaller:
    """Sends requests to the API function as API Gateway would, and keeps count."""

    def __init__(
        self,
        stack: Stack,
        function: LocalFunction,
        caller_arn: str = DEFAULT_CALLER_ARN,
        handler: Handler | None = None,
    ) -> None:
        """`handler`: the function's handler over collaborators of the caller's, instead of the deployed one."""
        self._routes = route_table(stack)
        self._function = function
        self._caller_arn = caller_arn
        self._handler = handler
        self.stats = ApiStats()

    def call(
        self, method: str, path: str, body: Any = None, key: str | None = None, headers: dict[str, str] | None = None
    ) -> ApiResponse:
        event = route_event(self._routes, method, path, body, key=key, headers=headers, caller_arn=self._caller_arn)
        if event is None:
            return ApiResponse(404, {}, {"detail": f"no route {method} {path}"})
        started = time.perf_counter()
        result = self._function.invoke(event, handler=self._handler)
        self.stats.seconds += time.perf_counter() - started
        response_headers = {name.lower(): value for name, value in (result.get("headers") or {}).items()}
        self.stats.requests += 1
        self.stats.statuses[result["statusCode"]] += 1
        if response_headers.get("idempotent-replayed") == "true":
            self.stats.replays += 1
        text = result.get("body") or ""
        return ApiResponse(result["statusCode"], response_headers, json.loads(text) if text else None)


@dataclass
class RideRecord:
    ride_id: str
    rider_id: str
    status: str
    version: int
    fare: Decimal | None = None


@dataclass
class Ledger:
    """What the API accepted: the ground truth for the end-to-end invariants."""

    rides: dict[str, RideRecord] = field(default_factory=dict)
    accepted_changes: int = 0
    client_retries: int = 0

    def accept(self, ride: dict[str, Any]) -> None:
        fare = ride.get("fare")
        self.rides[ride["rideId"]] = RideRecord(
            ride["rideId"], ride["riderId"], ride["status"], ride["version"], Decimal(fare["amount"]) if fare else None
        )
        self.accepted_changes += 1


# A ride's remaining steps after it was requested: mostly completed, some cancelled early or late.
_PATHS = (
    (0.8, ("accept", "start", "complete")),
    (0.1, ("cancel",)),
    (0.1, ("accept", "cancel")),
)


class RideTraffic:
    """Drives `rides` ride lifecycles, interleaved at random across rides, from one seed."""

    def __init__(self, api: ApiCaller, rides: int, seed: int = 7, retry_rate: float = 0.1, riders: int = 50) -> None:
        self.api = api
        self.ledger = Ledger()
        self._rng = random.Random(seed)
        self._rides_to_start = rides
        self._retry_rate = retry_rate
        self._riders = [f"rider-{index:03d}" for index in range(riders)]
        self._pending: dict[str, list[str]] = {}

    @property
    def total_changes(self) -> int:
        """An upper bound for progress bars: a completed ride has the most changes (4)."""
        return self._rides_to_start * 4

    def done(self) -> bool:
        return self._rides_to_start == 0 and not self._pending

    def step(self) -> int:
        """Make one change (new ride or next step of a random active ride); return changes accepted."""
        if self._rides_to_start and (not self._pending or self._rng.random() < 0.35):
            self._rides_to_start -= 1
            return self._request_ride()
        ride_id = self._rng.choice(sorted(self._pending))
        action = self._pending[ride_id].pop(0)
        if not self._pending[ride_id]:
            del self._pending[ride_id]
        body: dict[str, Any] | None = None
        if action == "accept":
            body = {"driverId": f"driver-{self._rng.randrange(20):02d}"}
        elif action == "complete":
            body = {"fare": {"amount": f"{self._rng.randrange(500, 8000) / 100:.2f}", "currency": "EUR"}}
        elif action == "cancel":
            body = {"reason": "plans changed"}
        version = self.ledger.rides[ride_id].version
        return self._send("POST", f"/rides/{ride_id}/{action}", body, {"If-Match": f'"{version}"'})

    def _request_ride(self) -> int:
        body = {
            "riderId": self._rng.choice(self._riders),
            "pickup": {"lat": round(self._rng.uniform(52.3, 52.7), 5), "lng": round(self._rng.uniform(13.1, 13.7), 5)},
            "dropoff": {"lat": round(self._rng.uniform(52.3, 52.7), 5), "lng": round(self._rng.uniform(13.1, 13.7), 5)},
        }
        return self._send("POST", "/rides", body, {})

    def _send(self, method: str, path: str, body: Any, headers: dict[str, str]) -> int:
        key = str(uuid.UUID(int=self._rng.getrandbits(128)))
        response = self.api.call(method, path, body, key, headers)
        while self._rng.random() < self._retry_rate:
            # The client timed out and retries with the same key: it must get the same answer.
            self.ledger.client_retries += 1
            retried = self.api.call(method, path, body, key, headers)
            if (retried.status, retried.body) != (response.status, response.body):
                raise AssertionError(f"a retry of {method} {path} got {retried.status}, first answer {response.status}")
        if response.status not in (200, 201):
            raise RuntimeError(f"{method} {path} answered {response.status}: {response.body}")
        self.ledger.accept(response.body)
        if method == "POST" and path == "/rides":
            weights = [weight for weight, _ in _PATHS]
            _, steps = self._rng.choices(_PATHS, weights=weights)[0]
            self._pending[response.body["rideId"]] = list(steps)
        return 1
