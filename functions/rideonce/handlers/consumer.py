"""SQS consumer of ride events: Powertools batch processing with partial batch responses.

Each record is applied, dropped as a duplicate, or reported failed (early or poison) so SQS retries
it alone after its visibility timeout and parks it in the DLQ after maxReceiveCount receives.
"""

from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from rideonce.dal.consumer import EffectStore
from rideonce.logic.consumer import OutOfOrderError, PoisonMessageError, Verdict, arrival_order, parse_message
from rideonce.observability import logger, metrics
from rideonce.services.consumer import RideEventConsumer
from rideonce.settings import ConsumerSettings

# A batch whose every record failed is still a handled batch: report each failure, do not raise.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

_METRIC = {Verdict.APPLY: "EventsApplied", Verdict.DUPLICATE: "DuplicatesDropped"}


@cache
def consumer() -> RideEventConsumer:
    """Built on the first batch (settings validated here), then reused by the warm container."""
    settings = ConsumerSettings.from_env()
    store = EffectStore(
        boto3.client("dynamodb"),
        settings.processed_keys_table_name,
        settings.ride_projection_table_name,
        settings.rider_accounts_table_name,
    )
    return RideEventConsumer(store, settings.processed_key_ttl_seconds)


def record_handler(record: SQSRecord) -> Verdict:
    try:
        event = parse_message(record.body)
    except PoisonMessageError as error:
        metrics.add_metric(name="PoisonMessages", unit=MetricUnit.Count, value=1)
        logger.error("poison message", extra={"messageId": record.message_id, "reason": str(error)})
        raise
    logger.set_correlation_id(event.metadata.idempotency_key)
    fields = {"messageId": record.message_id, "eventType": event.metadata.event_type, "version": event.data.version}
    try:
        verdict = consumer().handle(event)
    except OutOfOrderError as error:
        metrics.add_metric(name="DeferredOutOfOrder", unit=MetricUnit.Count, value=1)
        logger.info("deferred: out of order", extra={**fields, "reason": str(error)})
        raise
    metrics.add_metric(name=_METRIC[verdict], unit=MetricUnit.Count, value=1)
    logger.info("applied" if verdict is Verdict.APPLY else "duplicate dropped", extra=fields)
    return verdict


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    ordered = {**event, "Records": sorted(event.get("Records", []), key=lambda r: arrival_order(r.get("body", "")))}
    return process_partial_response(event=ordered, record_handler=record_handler, processor=processor, context=context)
