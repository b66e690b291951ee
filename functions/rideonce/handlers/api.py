"""The ride API behind an API Gateway HTTP API (payload v2), on the Powertools event handler.

Admission (handlers/admission.py) refuses a body that is not one UTF-8 JSON object before routing; routes
validate what is left against the models; the service does the work; every error after admission leaves
through one exception-handler table, and every error at all as `application/problem+json`.

`handler` is `api_handler` over this module's `service()`; a harness builds its own over another ride
service (the routes ask the invocation's context for it), so the routes, the admission and the error
table that run are this code, unchanged.
"""

import json
import os
from collections.abc import Callable
from functools import cache
from typing import Annotated, Any

import boto3
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
    ResponseValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from rideonce.dal.idempotency import IdempotencyStore
from rideonce.dal.rides import RideStore
from rideonce.handlers.admission import RequestRefused, admit
from rideonce.handlers.problems import PROBLEM_CONTENT_TYPE, problem, problem_responses
from rideonce.logic import idempotency, rides
from rideonce.logic.errors import (
    ConcurrentChangeError,
    IdempotencyKeyReusedError,
    InvalidTransitionError,
    MalformedPreconditionError,
    RequestInFlightError,
    RideNotFoundError,
    VersionMismatchError,
)
from rideonce.logic.principal import principal
from rideonce.logic.tracecontext import traceparent_for
from rideonce.models.requests import (
    AcceptRideRequest,
    CancelRideRequest,
    CompleteRideRequest,
    CreateRideRequest,
    StartRideRequest,
)
from rideonce.models.ride import Ride
from rideonce.observability import logger, metrics
from rideonce.services.rides import Outcome, RideService, Transition, WriteRequest
from rideonce.settings import ApiSettings

REPLAYED_HEADER = "Idempotent-Replayed"

# A response that fails its own schema is our bug: answer 500, never a 4xx that blames the caller.
app = APIGatewayHttpResolver(enable_validation=True, response_validation_error_http_code=500)
app.configure_openapi(
    title="rideonce ride API",
    version="1.0.0",
    summary="Ride changes that take effect downstream exactly once.",
    description=(
        "Every write needs an `Idempotency-Key` header (IETF httpapi draft): a completed key replays its "
        "stored response with `Idempotent-Replayed: true`; the same key with another request is 422; a key "
        "still in flight is 409; a missing key is 400. Keys are scoped to the calling principal: an IAM user, "
        "a role whatever its session, or a Cognito identity."
    ),
)

IdempotencyKey = Annotated[
    str,
    Header(
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="A unique key per logical request, reused verbatim on every retry of it.",
    ),
]
IfMatch = Annotated[
    str | None,
    Header(pattern=r'^(\*|"[0-9]{1,18}")$', description='The ETag from GET /rides/{rideId}, e.g. "3", or *.'),
]
RideId = Annotated[str, Path(min_length=1, max_length=64)]
NO_FIELDS = StartRideRequest()


@cache
def settings() -> ApiSettings:
    """Read and validated on the first request, then reused by the warm container."""
    return ApiSettings.from_env()


@cache
def service() -> RideService:
    """Built on the first request, then reused by the warm container."""
    client = boto3.client("dynamodb")
    config = settings()
    return RideService(
        RideStore(client, config.rides_table_name, config.outbox_table_name),
        IdempotencyStore(client, config.idempotency_table_name),
        config,
    )


def current_service() -> RideService:
    """The ride service of the handler this invocation came through (`api_handler`)."""
    ride_service: Callable[[], RideService] = app.context["service"]
    return ride_service()


def write_request(key: str) -> WriteRequest:
    event = app.current_event
    iam = event.request_context.authorizer.iam
    body = event.json_body if event.body else None
    return WriteRequest(
        caller=principal(iam.user_arn, iam.cognito_identity_id),
        idempotency_key=key,
        fingerprint=idempotency.fingerprint(event.http_method, event.path, body),
        traceparent=traceparent_for(event.headers.get("traceparent"), os.environ.get("_X_AMZN_TRACE_ID")),
    )


def respond(outcome: Outcome) -> Response[str]:
    stored = outcome.response
    headers = dict(stored.headers)
    if outcome.replayed:
        headers[REPLAYED_HEADER] = "true"
        metrics.add_metric(name="IdempotentReplays", unit=MetricUnit.Count, value=1)
    else:
        metrics.add_metric(name="RideChangesAccepted", unit=MetricUnit.Count, value=1)
    return Response(status_code=stored.status_code, body=stored.body, headers=headers)


def transition(ride_id: str, key: str, if_match: str | None, apply: Transition) -> Response[str]:
    """Every transition route: the same idempotent, version-checked path through the service."""
    return respond(current_service().transition(write_request(key), ride_id, if_match, apply))


def ride_responses(status: int, description: str, *problems: int) -> dict[int, OpenAPIResponse]:
    ride: OpenAPIResponse = {"description": description, "content": {"application/json": {"model": Ride}}}
    return {status: ride, **problem_responses(*problems)}


WRITE_PROBLEMS = (400, 404, 409, 412, 413, 422)


@app.post(
    "/rides",
    summary="Request a ride",
    responses=ride_responses(201, "The ride, in REQUESTED", 400, 409, 413, 422),
)
def create_ride(body: Annotated[CreateRideRequest, Body()], idempotency_key: IdempotencyKey) -> Response[str]:
    return respond(current_service().create(write_request(idempotency_key), body))


@app.get(
    "/rides/<ride_id>",
    summary="Read a ride; its ETag carries the version",
    responses=ride_responses(200, "The ride", 404),
)
def get_ride(ride_id: RideId) -> Response[str]:
    ride = current_service().get(ride_id)
    return Response(
        status_code=200,
        content_type="application/json",
        body=ride.model_dump_json(),
        headers={"ETag": rides.etag(ride.version)},
    )


@app.post(
    "/rides/<ride_id>/accept",
    summary="A driver accepts a REQUESTED ride",
    responses=ride_responses(200, "The ride after the change", *WRITE_PROBLEMS),
)
def accept_ride(
    ride_id: RideId,
    body: Annotated[AcceptRideRequest, Body()],
    idempotency_key: IdempotencyKey,
    if_match: IfMatch = None,
) -> Response[str]:
    return transition(
        ride_id,
        idempotency_key,
        if_match,
        lambda ride, now, expected: rides.accept(ride, body.driver_id, now, expected),
    )


@app.post(
    "/rides/<ride_id>/start",
    summary="The driver starts an ACCEPTED ride",
    responses=ride_responses(200, "The ride after the change", *WRITE_PROBLEMS),
)
def start_ride(
    ride_id: RideId,
    idempotency_key: IdempotencyKey,
    if_match: IfMatch = None,
    body: Annotated[StartRideRequest, Body()] = NO_FIELDS,
) -> Response[str]:
    return transition(ride_id, idempotency_key, if_match, rides.start)


@app.post(
    "/rides/<ride_id>/complete",
    summary="Complete a STARTED ride and record its fare",
    responses=ride_responses(200, "The ride after the change", *WRITE_PROBLEMS),
)
def complete_ride(
    ride_id: RideId,
    body: Annotated[CompleteRideRequest, Body()],
    idempotency_key: IdempotencyKey,
    if_match: IfMatch = None,
) -> Response[str]:
    return transition(
        ride_id, idempotency_key, if_match, lambda ride, now, expected: rides.complete(ride, body.fare, now, expected)
    )


@app.post(
    "/rides/<ride_id>/cancel",
    summary="Cancel a REQUESTED or ACCEPTED ride",
    responses=ride_responses(200, "The ride after the change", *WRITE_PROBLEMS),
)
def cancel_ride(
    ride_id: RideId,
    body: Annotated[CancelRideRequest, Body()],
    idempotency_key: IdempotencyKey,
    if_match: IfMatch = None,
) -> Response[str]:
    return transition(
        ride_id, idempotency_key, if_match, lambda ride, now, expected: rides.cancel(ride, body.reason, now, expected)
    )


@app.get("/openapi.json", include_in_schema=False)
def openapi_document() -> Response[str]:
    return Response(status_code=200, content_type="application/json", body=openapi_json())


# What every route can answer besides its own problems: a request that fails validation (400), our own failure.
# Every write also checks its body's size (413) and media type (415) and can meet a reused key (422).
_EVERY_ROUTE = {400: "Bad Request: the problem names each field to fix", 500: "Internal Server Error: our bug"}
_EVERY_WRITE = {
    413: "Content Too Large",
    415: "Unsupported Media Type: send application/json",
    422: "Idempotency Key Reused: this key was used for another request",
}


@cache
def openapi_json() -> str:
    """The OpenAPI document with the error answers the API really gives.

    Powertools documents a 422 `HTTPValidationError` and a 500 `ResponseValidationError` (both
    `application/json`) on every route, over any declared there; here both are problem documents, and a
    validation failure is a 400. It also offers `null` for optional headers, which HTTP cannot send.
    """
    document = json.loads(app.get_openapi_json_schema())
    for operations in document["paths"].values():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                # An optional header is absent or a string, never JSON null: document the string alone.
                variants = parameter["schema"].get("anyOf", [])
                if parameter["in"] == "header" and {"type": "null"} in variants and len(variants) == 2:
                    (string,) = (variant for variant in variants if variant != {"type": "null"})
                    parameter["schema"] = {**string, "description": parameter["schema"].get("description", "")}
            responses = operation["responses"]
            responses.pop("422", None)
            expected = {**_EVERY_ROUTE, **(_EVERY_WRITE if method == "post" else {})}
            for status, description in expected.items():
                responses[str(status)] = {
                    "description": description,
                    "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                }
            operation["responses"] = dict(sorted(responses.items()))
    return json.dumps(document)


# One table from domain errors to statuses. The messages come from the domain and say what to fix.
_STATUS = {
    RideNotFoundError: (404, "Not Found"),
    InvalidTransitionError: (409, "Invalid Transition"),
    ConcurrentChangeError: (409, "Concurrent Change"),
    VersionMismatchError: (412, "Precondition Failed"),
    MalformedPreconditionError: (400, "Bad Request"),
    IdempotencyKeyReusedError: (422, "Idempotency Key Reused"),
}


@app.exception_handler(list(_STATUS))
def domain_error(error: Exception) -> Response[str]:
    status, title = _STATUS[type(error)]  # type: ignore[index]
    return problem(status, title, str(error))


@app.exception_handler(RequestInFlightError)
def in_flight(error: RequestInFlightError) -> Response[str]:
    return problem(409, "Request In Flight", str(error), headers={"Retry-After": str(error.retry_after_seconds)})


@app.exception_handler(RequestValidationError)
def invalid_request(error: RequestValidationError) -> Response[str]:
    """Malformed JSON, wrong types, unknown fields and missing headers: 400 with each field's problem."""
    issues = [_describe(issue) for issue in error.errors()]
    summary = "; ".join(f"{issue['where']}: {issue['problem']}" for issue in issues)
    return problem(400, "Bad Request", f"the request is not valid: {summary}", errors=issues)


def _describe(issue: dict[str, Any]) -> dict[str, str]:
    """One validation issue as where + what is wrong; a JSON syntax error names its position, not a field."""
    location = [str(part) for part in issue.get("loc", ())]
    if issue.get("type") == "json_invalid":
        position = location[1] if len(location) > 1 else "?"
        reason = issue.get("ctx", {}).get("error", "invalid JSON")
        return {"where": "body", "problem": f"not valid JSON: {reason} at character {position}"}
    return {"where": ".".join(location), "problem": str(issue.get("msg", "invalid"))}


@app.exception_handler(RequestUnsupportedContentType)
def unsupported_media_type(error: RequestUnsupportedContentType) -> Response[str]:
    """Admission answers this first; Powertools' own check must answer the same problem if it ever runs."""
    return problem(415, "Unsupported Media Type", "the body must be sent as Content-Type: application/json (UTF-8)")


@app.exception_handler(ResponseValidationError)
def invalid_response(error: ResponseValidationError) -> Response[str]:
    logger.error("response failed its schema", extra={"errors": error.errors()})
    return problem(500, "Internal Server Error", "the service built an invalid response; it has been logged")


@app.exception_handler(Exception)
def internal_error(error: Exception) -> Response[str]:
    """Anything else is our bug, never the client's: logged with its trace, answered without internals."""
    logger.exception("unhandled error", extra={"errorType": type(error).__name__})
    return problem(500, "Internal Server Error", "the service failed on this request; it has been logged")


@app.not_found
def unknown_route(_: Exception) -> Response[str]:
    event = app.current_event
    return problem(404, "Not Found", f"no route {event.http_method} {event.path}; see GET /openapi.json")


def api_handler(service: Callable[[], RideService]) -> Callable[..., dict[str, Any]]:
    """The Lambda handler over a ride service, asked for on the first request that needs one.

    The routes find it in the resolver's context, which Powertools clears after every invocation
    (https://docs.powertools.aws.dev/lambda/python/latest/core/event_handler/api_gateway/#sharing-contextual-data).
    """

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    @metrics.log_metrics
    def handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        try:
            admitted = admit(event, settings().max_body_bytes)
        except RequestRefused as refused:
            response = problem(refused.status, refused.title, refused.detail)
            return {
                "statusCode": response.status_code,
                "headers": {"Content-Type": PROBLEM_CONTENT_TYPE},
                "body": response.body,
                "isBase64Encoded": False,
            }
        app.append_context(service=service)  # type: ignore[no-untyped-call]  # Powertools leaves it untyped
        return app.resolve(admitted, context)

    return handle


# `service` looked up by name at each request rather than bound here.
handler = api_handler(lambda: service())
