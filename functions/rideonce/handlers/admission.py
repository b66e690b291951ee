"""What a write request's body must be before any route sees it: UTF-8 JSON text holding one object.

API Gateway hands the function whatever the client sent: a body it could not pass as text arrives
base64-encoded with `isBase64Encoded: true`
(https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html),
and the `Content-Type` is the client's word. Powertools would decode and parse such a body inside its
validation and fail there with a 500 (bad base64, bytes that are not UTF-8), take a JSON array or `NaN`
as a body, or answer an unknown media type with a JSON 415 of its own. Here every such body is refused
with the status that names the client's mistake, and an admitted event carries plain JSON text.
"""

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, NoReturn

JSON_MEDIA_TYPE = "application/json"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class RequestRefused(Exception):
    """The request cannot reach a route; `detail` tells the client what to send instead."""

    status: int
    title: str
    detail: str


def admit(event: dict[str, Any], max_body_bytes: int) -> dict[str, Any]:
    """The event with its body as checked JSON text (no base64), or RequestRefused saying what is wrong."""
    body = event.get("body")
    method = str(event.get("requestContext", {}).get("http", {}).get("method", "")).upper()
    headers = {str(name).lower(): value for name, value in (event.get("headers") or {}).items()}
    if not isinstance(body, str) or body == "":
        if method in WRITE_METHODS:
            # No body, so no media type to judge: the route says whether it needed a body.
            headers.pop("content-type", None)
            return {**event, "headers": headers, "body": None, "isBase64Encoded": False}
        return event
    raw = _raw_bytes(body, base64_encoded=event.get("isBase64Encoded") is True)
    if len(raw) > max_body_bytes:
        raise RequestRefused(
            413, "Content Too Large", f"the request body is over {max_body_bytes} bytes; send a smaller one"
        )
    if method not in WRITE_METHODS:
        return event  # a body on a read is ignored, as the route takes none
    _check_media_type(headers.get("content-type"))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestRefused(
            400, "Bad Request", f"the body is not UTF-8 text (byte {error.start} is not valid UTF-8)"
        ) from error
    _check_json_object(text)
    return {**event, "body": text, "isBase64Encoded": False, "headers": {**headers, "content-type": JSON_MEDIA_TYPE}}


def _raw_bytes(body: str, base64_encoded: bool) -> bytes:
    if base64_encoded:
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as error:
            raise RequestRefused(400, "Bad Request", "the body is marked base64-encoded but is not base64") from error
    try:
        return body.encode("utf-8")
    except UnicodeEncodeError as error:  # a lone surrogate: no UTF-8 text can hold it
        raise RequestRefused(400, "Bad Request", "the body is not UTF-8 text (it holds a lone surrogate)") from error


def _check_media_type(content_type: str | None) -> None:
    """`application/json`, compared case-insensitively (RFC 9110 section 8.3.1), UTF-8 if a charset is named."""
    media_type, *parameters = (content_type or "").split(";")
    charsets = [
        value.strip().strip('"').lower()
        for name, _, value in (parameter.partition("=") for parameter in parameters)
        if name.strip().lower() == "charset"
    ]
    if media_type.strip().lower() == JSON_MEDIA_TYPE and all(charset == "utf-8" for charset in charsets):
        return
    shown = (content_type or "none")[:100]
    raise RequestRefused(
        415,
        "Unsupported Media Type",
        f"the body must be sent as Content-Type: application/json (UTF-8); got {shown}",
    )


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _no_duplicate_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        names = [name for name, _ in pairs]
        twice = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(f"the member name {twice[0][:64]!r} appears twice in one object")
    return found


def _check_json_object(text: str) -> None:
    """Strict JSON (RFC 8259): no NaN or Infinity, no repeated member names, one object at the top."""
    try:
        value = json.loads(text, parse_constant=_no_constants, object_pairs_hook=_no_duplicate_names)
    except json.JSONDecodeError as error:
        raise RequestRefused(
            400, "Bad Request", f"the body is not valid JSON: {error.msg} at character {error.pos}"
        ) from error
    except ValueError as error:
        raise RequestRefused(400, "Bad Request", f"the body is not valid JSON: {error}") from error
    except RecursionError as error:
        raise RequestRefused(400, "Bad Request", "the body is not valid JSON: it is nested too deeply") from error
    if not isinstance(value, dict):
        kind = "an array" if isinstance(value, list) else "a JSON scalar"
        raise RequestRefused(
            400, "Bad Request", f"the body must be one JSON object, not {kind}; send one request per call"
        )
