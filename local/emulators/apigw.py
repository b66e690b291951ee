"""API Gateway HTTP API (payload format 2.0) events, as API Gateway builds them from an HTTP request.

Used by `make local` (http_api.py) to turn real requests into handler events, and by the tests and
events/ files: the template's route table, the route API Gateway picks for a request (literal segments
beat variables), and the event it sends the integration
(https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-routes.html,
https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html).
Not here: the HTTP server and its framing (http_api.py), or verifying the caller's SigV4 signature: the
IAM caller is stated, not checked.
"""

import json
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl

from local.aws.template import ACCOUNT_ID, Stack

DEFAULT_CALLER_ARN = f"arn:aws:iam::{ACCOUNT_ID}:user/local-developer"


def http_event(
    method: str,
    path: str,
    *,
    route_key: str,
    path_parameters: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    body: Any = None,
    caller_arn: str | None = DEFAULT_CALLER_ARN,
    raw_query: str = "",
    base64_encoded: bool = False,
) -> dict[str, Any]:
    """One payload v2 event. `body` may be a str (sent verbatim) or any JSON value (serialised).

    With `base64_encoded`, `body` is the base64 text of bytes that are not UTF-8, as API Gateway passes
    them. Header names are lower case and a `cookie` header moves to `cookies`, as in payload 2.0
    (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html).
    """
    text = body if isinstance(body, str) or body is None else json.dumps(body)
    lowered = {name.lower(): value for name, value in (headers or {}).items()}
    cookies = lowered.pop("cookie", None)
    if text is not None and not base64_encoded:
        lowered.setdefault("content-type", "application/json")
    context = _request_context(method, path, route_key, lowered.get("user-agent", "rideonce-local"), caller_arn)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": lowered,
        "requestContext": context,
        "isBase64Encoded": base64_encoded,
    }
    if cookies:
        event["cookies"] = [cookie.strip() for cookie in cookies.split(";") if cookie.strip()]
    if raw_query:
        event["queryStringParameters"] = _query_parameters(raw_query)
    if path_parameters:
        event["pathParameters"] = path_parameters
    if text is not None:
        event["body"] = text
    return event


def _request_context(method: str, path: str, route_key: str, user_agent: str, caller_arn: str | None) -> dict[str, Any]:
    """The event's `requestContext`: what API Gateway knows of the request beyond its bytes, with the IAM
    caller the route's AWS_IAM authorizer would have verified (none without `caller_arn`)."""
    now = time.time()
    context: dict[str, Any] = {
        "accountId": ACCOUNT_ID,
        "apiId": "local",
        "domainName": "localhost",
        "domainPrefix": "localhost",
        "http": {
            "method": method.upper(),
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": user_agent,
        },
        "requestId": str(uuid.uuid4()),
        "routeKey": route_key,
        "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000),
    }
    if caller_arn:
        context["authorizer"] = {
            "iam": {
                "accessKey": "AKIALOCALDEVELOPER00",
                "accountId": ACCOUNT_ID,
                "callerId": "AIDALOCALDEVELOPER00",
                "principalOrgId": None,
                "userArn": caller_arn,
                "userId": "AIDALOCALDEVELOPER00",
                "cognitoIdentity": None,
            }
        }
    return context


def _query_parameters(raw_query: str) -> dict[str, str]:
    """`queryStringParameters`: payload 2.0 joins a repeated parameter's values with commas."""
    combined: dict[str, list[str]] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        combined.setdefault(name, []).append(value)
    return {name: ",".join(values) for name, values in combined.items()}


def route_table(stack: Stack) -> list[tuple[str, str]]:
    """(method, path template) of every AWS::ApiGatewayV2::Route in the template."""
    routes = []
    for logical_id in stack.of_type("AWS::ApiGatewayV2::Route"):
        method, path = stack.properties(logical_id)["RouteKey"].split(" ", 1)
        routes.append((method, path))
    return routes


def match_route(routes: list[tuple[str, str]], method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """The route key and path parameters API Gateway would pick; literal segments beat variables."""
    candidates = []
    parts = path.strip("/").split("/")
    for route_method, template in routes:
        if route_method not in (method.upper(), "ANY"):
            continue
        pattern = template.strip("/").split("/")
        if len(pattern) != len(parts):
            continue
        params: dict[str, str] = {}
        literals = 0
        for expected, actual in zip(pattern, parts, strict=True):
            if expected.startswith("{") and expected.endswith("}"):
                params[expected[1:-1]] = actual
            elif expected == actual:
                literals += 1
            else:
                break
        else:
            candidates.append((literals, f"{route_method} {template}", params))
    if not candidates:
        return None
    _, route_key, params = max(candidates, key=lambda candidate: candidate[0])
    return route_key, params


def route_event(
    routes: list[tuple[str, str]],
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = None,
    headers: dict[str, str] | None = None,
    caller_arn: str | None = DEFAULT_CALLER_ARN,
) -> dict[str, Any] | None:
    """The event API Gateway would send for a request, or None when no route of the template matches it."""
    matched = match_route(routes, method, path)
    if matched is None:
        return None
    route_key, params = matched
    all_headers = dict(headers or {})
    if key is not None:
        all_headers["Idempotency-Key"] = key
    return http_event(
        method, path, route_key=route_key, path_parameters=params, headers=all_headers, body=body, caller_arn=caller_arn
    )
