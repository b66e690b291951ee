"""The EventBridge Pipe's enrichment function: outbox stream records in, ride events out.

The Pipe sends a bare JSON array of DynamoDB stream records and puts each returned item on the bus as the
detail, under the target's static source and detail type; rules route on `metadata.eventType` and
`metadata.source`. Records that are not a change (MODIFY, REMOVE) are left out of the answer, counted and
logged; a batch of nothing else answers `[]`, which invokes no target
(https://docs.aws.amazon.com/eventbridge/latest/userguide/pipes-enrichment.html). Only the logger, metrics
and the pure logic are imported (no boto3, no Tracer): this function's cold start delays ride events.
"""

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from rideonce.logic.enrichment import NotAChange, enrich_batch, forwarded, stream_event_id
from rideonce.models.events import RecordRejected
from rideonce.observability import logger, metrics

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

SKIPPED_METRIC = "OutboxRecordsSkipped"


@logger.inject_lambda_context
def handler(event: list[dict[str, Any]], context: "LambdaContext") -> list[dict[str, Any]]:
    """Enrich the batch; rejections go to the bus for the quarantine rule, non-changes go nowhere."""
    if not isinstance(event, list):
        # Not a record the Pipe could pair with an output: the Pipe is misconfigured, so fail loudly.
        raise TypeError(f"a Pipe enrichment receives a JSON array of stream records, not {type(event).__name__}")
    results = enrich_batch(event)
    skipped = 0
    for record, result in zip(event, results, strict=True):
        if isinstance(result, NotAChange):
            skipped += 1
            logger.info(
                "outbox record skipped: not a change event",
                extra={"eventName": result.event_name, "streamEventId": result.stream_event_id},
            )
        elif isinstance(result, RecordRejected):
            logger.warning(
                "outbox record rejected",
                extra={
                    "reason": result.data.reason,
                    "streamEventId": stream_event_id(record),
                    "rejectionEventId": result.metadata.event_id,
                },
            )
    if skipped:
        # Flushed here rather than by Metrics.log_metrics, whose untyped wrapper would hide this signature.
        metrics.add_metric(name=SKIPPED_METRIC, unit=MetricUnit.Count, value=skipped)
        metrics.flush_metrics()
    return [result.model_dump(mode="json") for result in forwarded(results)]
