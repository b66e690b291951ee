"""The EventBridge Pipe's enrichment function: outbox stream records in, ride events out, one for one.

The Pipe sends a bare JSON array of DynamoDB stream records and puts each returned item on the bus as the
detail, under the target's static source and detail type; rules route on `metadata.eventType` and
`metadata.source`. Only the logger and the pure logic are imported (no boto3, no Tracer): this function's
cold start delays ride events.
"""

from typing import TYPE_CHECKING, Any

from rideonce.logic.enrichment import enrich_batch, stream_event_id
from rideonce.models.events import RecordRejected
from rideonce.observability import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context
def handler(event: list[dict[str, Any]], context: "LambdaContext") -> list[dict[str, Any]]:
    """Enrich the batch; rejected records are logged one line each and parked by the quarantine rule."""
    if not isinstance(event, list):
        # Not a record the Pipe could pair with an output: the Pipe is misconfigured, so fail loudly.
        raise TypeError(f"a Pipe enrichment receives a JSON array of stream records, not {type(event).__name__}")
    results = enrich_batch(event)
    for record, result in zip(event, results, strict=True):
        if isinstance(result, RecordRejected):
            logger.warning(
                "outbox record rejected",
                extra={
                    "reason": result.data.reason,
                    "streamEventId": stream_event_id(record),
                    "rejectionEventId": result.metadata.event_id,
                },
            )
    return [result.model_dump(mode="json") for result in results]
