"""The baseline for the local stack's speed: the API's own DynamoDB requests for a change, replayed bare.

While a sampled change goes through the API handler, every DynamoDB request its client makes is recorded
with its outcome (the claim of the Idempotency-Key, the read of the ride, the transaction of ride, outbox
record and key completion, and a client retry's requests when the change had one). Right after, the same
requests are sent again through the same server to scratch copies of the tables (the outbox's stream and
index included), the ride first put back as the API read it, and timed. That time is the denominator:
what the handler, validation and logging add on top of storage, with the machine's load falling on both
alike, and with every condition, item and stream record exactly the API's.
"""

import copy
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError

from local.aws.dynamodb import create_table_like
from local.aws.stack import LocalStack

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_SHAPES = ("RidesTable", "OutboxTable", "IdempotencyTable")


class ReplayDiverged(AssertionError):
    """A replayed request ended otherwise than the API's: the baseline would not time the same work."""


@dataclass
class Request:
    """One DynamoDB request of the API's, as its client was asked to send it, and how it ended."""

    operation: str
    params: dict[str, Any]
    error: str | None = None
    """The error code it failed with (a retry's claim of a key already taken), None when it succeeded."""
    item: dict[str, Any] | None = None
    """GetItem: the item it read."""


class BareBaseline:
    """Scratch copies of the API's tables, and the time the API's own requests of each sampled change take on them.

    Made before the API's DynamoDB client (the handler builds it at its first request): the recorder is
    registered on boto3's default session, whose handlers a client copies when it is created.
    """

    def __init__(self, local: LocalStack) -> None:
        self._ddb: DynamoDBClient = boto3.client("dynamodb")
        prefix = f"bare-{uuid.uuid4().hex[:8]}"
        self._tables = {
            local.stack.ref(shape): create_table_like(
                self._ddb, local.stack.ref(shape), f"{prefix}-{shape}", with_stream=True
            )
            for shape in _SHAPES
        }
        self._rides_table = local.stack.ref("RidesTable")
        self._methods = {api: method for method, api in self._ddb.meta.method_to_api_mapping.items()}
        self._recorded: list[Request] | None = None
        if boto3.DEFAULT_SESSION is None:
            boto3.setup_default_session()
        events = boto3.DEFAULT_SESSION.events  # type: ignore[union-attr]  # set just above
        events.register("before-parameter-build.dynamodb", self._before)
        events.register("after-call.dynamodb", self._after)
        self._events = events
        self.seconds = 0.0
        self.changes = 0

    @property
    def seconds_per_change(self) -> float:
        return self.seconds / max(1, self.changes)

    @contextmanager
    def recording(self) -> Iterator[list[Request]]:
        """Record the DynamoDB requests made inside the block (the API's, for the changes it makes)."""
        recorded: list[Request] = []
        self._recorded = recorded
        try:
            yield recorded
        finally:
            self._recorded = None

    def replay(self, requests: list[Request], changes: int) -> None:
        """Send `requests` again on the scratch tables, timed, counting them as `changes` ride changes."""
        if changes and not requests:
            raise ReplayDiverged(
                "no DynamoDB request was recorded for a change: the recorder is not on the API's client"
            )
        for request in requests:
            if request.operation == "GetItem" and request.params.get("TableName") == self._rides_table and request.item:
                # The ride as the API read it, so the transaction's version condition holds as it did.
                self._ddb.put_item(TableName=self._tables[self._rides_table], Item=request.item)
        started = time.perf_counter()
        outcomes = [self._send(request) for request in requests]
        self.seconds += time.perf_counter() - started
        self.changes += changes
        for request, outcome in zip(requests, outcomes, strict=True):
            if outcome != request.error:
                replayed, original = outcome or "success", request.error or "success"
                raise ReplayDiverged(f"{request.operation}: {replayed} in the replay, {original} for the API")

    def close(self) -> None:
        self._events.unregister("before-parameter-build.dynamodb", self._before)
        self._events.unregister("after-call.dynamodb", self._after)
        for table in self._tables.values():
            self._ddb.delete_table(TableName=table)

    def _send(self, request: Request) -> str | None:
        method = getattr(self._ddb, self._methods[request.operation])
        try:
            method(**_renamed(request.params, self._tables))
        except ClientError as error:
            return str(error.response.get("Error", {}).get("Code", ""))
        return None

    def _before(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        if self._recorded is not None:
            request = Request(model.name, copy.deepcopy(params))
            context["bare_request"] = request
            self._recorded.append(request)

    def _after(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        request = context.get("bare_request")
        if request is not None:
            request.error = parsed.get("Error", {}).get("Code") if "Error" in parsed else None
            request.item = parsed.get("Item")


def _renamed(value: Any, tables: dict[str, str]) -> Any:
    """`value` with every TableName moved to its scratch copy; a table without one is refused."""
    if isinstance(value, dict):
        renamed = {}
        for key, inner in value.items():
            if key == "TableName":
                if inner not in tables:
                    raise ReplayDiverged(f"the API wrote to {inner}, which the baseline has no scratch copy of")
                renamed[key] = tables[inner]
            else:
                renamed[key] = _renamed(inner, tables)
        return renamed
    if isinstance(value, list):
        return [_renamed(inner, tables) for inner in value]
    return value
