"""How boto3 reaches the local stack's moto: through its server over HTTP, or straight into the same backends.

In-process requests go through moto's own botocore stubber: the same request and response handling
without the socket and the HTTP server, several times faster per request. What the emulators of AWS's own
services use (the Pipe, the SQS event source, TTL: local/emulators/pipeline.py), and a harness that makes
many requests (chaos, the latency and reconciler-cost measurements); the functions keep reaching moto
through AWS_ENDPOINT_URL like any boto3 client.
"""

from typing import TYPE_CHECKING, Any, cast

import boto3
from botocore import UNSIGNED
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from moto.core.botocore_stubber import BotocoreStubber

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_sqs import SQSClient


class Transport:
    """How boto3 reaches moto: through the server over HTTP, or straight into the same backends in-process."""

    def __init__(self, in_process: bool) -> None:
        self.in_process = in_process
        self._stubber = BotocoreStubber()
        self._stubber.enabled = True

    @property
    def name(self) -> str:
        return "in-process" if self.in_process else "http"

    def dynamodb(self) -> "DynamoDBClient":
        return cast("DynamoDBClient", self._client("dynamodb"))

    def streams(self) -> "DynamoDBStreamsClient":
        return cast("DynamoDBStreamsClient", self._client("dynamodbstreams"))

    def events(self) -> "EventBridgeClient":
        return cast("EventBridgeClient", self._client("events"))

    def sqs(self) -> "SQSClient":
        return cast("SQSClient", self._client("sqs"))

    def _client(self, service: str) -> Any:
        if not self.in_process:
            return boto3.client(service)  # type: ignore[call-overload]
        # AWS's own endpoint, never AWS_ENDPOINT_URL: moto's stubber recognises services by their AWS hosts.
        # Unsigned: moto checks no signature, and SigV4 signing was a third of an in-process request's time.
        config = Config(  # type: ignore[call-arg]  # botocore-stubs lag botocore
            ignore_configured_endpoint_urls=True, signature_version=UNSIGNED
        )
        client = boto3.client(service, config=config)  # type: ignore[call-overload]
        client.meta.events.register("before-send", self._send)
        return client

    def _send(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        response = self._stubber("before-send", request)
        if response is None:
            raise RuntimeError(f"no moto backend answers {request.url}; refusing to send it anywhere else")
        return response
