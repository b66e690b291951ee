"""RFC 9457 problem details: every error the API answers is `application/problem+json`."""

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel, ConfigDict

PROBLEM_CONTENT_TYPE = "application/problem+json"


class FieldIssue(BaseModel):
    where: str
    problem: str


class Problem(BaseModel):
    """The body of every error; `type` names the kind of problem so clients can branch on it."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldIssue] | None = None


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> Response[str]:
    body = Problem(
        type=f"urn:rideonce:problem:{title.lower().replace(' ', '-')}",
        title=title,
        status=status,
        detail=detail,
        **extra,
    )
    return Response(
        status_code=status,
        content_type=PROBLEM_CONTENT_TYPE,
        body=body.model_dump_json(exclude_none=True),
        headers=headers,
    )


def problem_responses(*statuses: int) -> dict[int, OpenAPIResponse]:
    """OpenAPI entries for the problems a route can answer."""
    return {
        status: {"description": f"Problem ({status})", "content": {PROBLEM_CONTENT_TYPE: {"model": Problem}}}
        for status in statuses
    }
