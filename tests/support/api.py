"""Drive the API handler the way API Gateway does: payload v2 events routed by the template's routes."""

import json
from dataclasses import dataclass
from typing import Any

import pytest

from local.aws.context import FakeLambdaContext
from local.aws.template import Stack
from local.emulators.apigw import DEFAULT_CALLER_ARN, route_event, route_table
from rideonce.handlers import api


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: str

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class ApiClient:
    def __init__(self, stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
        for name, value in stack.function_environment("ApiFunction").items():
            monkeypatch.setenv(name, value)
        api.settings.cache_clear()
        api.service.cache_clear()
        self._routes = route_table(stack)

    def event(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = None,
        headers: dict[str, str] | None = None,
        caller: str | None = DEFAULT_CALLER_ARN,
    ) -> dict[str, Any]:
        event = route_event(self._routes, method, path, body, key=key, headers=headers, caller_arn=caller)
        assert event is not None, f"template.yaml has no route for {method} {path}"
        return event

    def send(self, event: dict[str, Any]) -> HttpResponse:
        result = api.handler(event, FakeLambdaContext(function_name="ApiFunction"))
        headers = {name.lower(): value for name, value in (result.get("headers") or {}).items()}
        return HttpResponse(result["statusCode"], headers, result.get("body") or "")

    def request(self, method: str, path: str, body: Any = None, **kwargs: Any) -> HttpResponse:
        return self.send(self.event(method, path, body, **kwargs))


NEW_RIDE: dict[str, Any] = {
    "riderId": "rider-1",
    "pickup": {"lat": 52.52, "lng": 13.405, "address": "Alexanderplatz"},
    "dropoff": {"lat": 52.5163, "lng": 13.3777},
}
