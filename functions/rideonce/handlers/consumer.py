"""SQS consumer of ride events: Powertools batch processing with partial batch responses.

Each record is applied, dropped as a duplicate, or reported failed (early or poison) so SQS retries
it alone and parks it in the DLQ after maxReceiveCount receives. An early event comes back within
seconds (its visibility shortened, backing off with its receive count), not after the queue's timeout,
and its last try waits until the reconciler could have republished a predecessor the relay lost.

`handler` is `batch_handler` around `record_handler`, which uses the deployed consumer and visibility; a
harness builds its own from the same two functions (`handle_record` with another consumer behind
`RecordConsumer` and another queue's visibility, a processor that counts what it sees), so what runs
between the event and the consumer is this code, unchanged.
"""

from collections.abc import Callable
from datetime import timedelta
from functools import cache
from typing import Any, Protocol

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from rideonce.dal.consumer import EffectStore
from rideonce.dal.queue import MessageVisibility
from rideonce.logic.consumer import (
    EarlyRetries,
    OutOfOrderError,
    PoisonMessageError,
    Verdict,
    arrival_order,
    early_retries,
    parse_message,
)
from rideonce.models.events import RideEvent
from rideonce.observability import logger, metrics
from rideonce.services.clock import utc_now
from rideonce.services.consumer import RideEventConsumer
from rideonce.settings import ConsumerSettings

# A batch whose every record failed is still a handled batch: report each failure, do not raise.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

_METRIC = {Verdict.APPLY: "EventsApplied", Verdict.DUPLICATE: "DuplicatesDropped"}

Handler = Callable[..., PartialItemFailureResponse]
"""A Lambda handler: (SQS event, Lambda context) -> the partial batch response."""


class RecordConsumer(Protocol):
    """What the record handler needs of a consumer: one parsed event in, a verdict out.

    APPLY when this call took effect, DUPLICATE when an earlier delivery had; `OutOfOrderError` for an
    event that came before its ride's previous version (retried soon); any other exception fails the
    record, which SQS retries and parks in the DLQ after maxReceiveCount receives.
    """

    def handle(self, event: RideEvent) -> Verdict: ...


@cache
def settings() -> ConsumerSettings:
    """Validated on the first batch, then reused by the warm container."""
    return ConsumerSettings.from_env()


@cache
def consumer() -> RideEventConsumer:
    """Built on the first batch, then reused by the warm container."""
    config = settings()
    store = EffectStore(
        boto3.client("dynamodb"),
        config.processed_keys_table_name,
        config.ride_projection_table_name,
        config.rider_accounts_table_name,
    )
    return RideEventConsumer(store, config.processed_key_ttl_seconds)


@cache
def retries() -> EarlyRetries:
    """How soon an early event comes back: in seconds, and lastly after the reconciler could repair its gap."""
    config = settings()
    return early_retries(
        config.max_receive_count,
        timedelta(minutes=config.reconcile_period_minutes),
        timedelta(minutes=config.reconcile_grace_minutes),
    )


@cache
def visibility() -> MessageVisibility:
    """Built on the first early event, like `consumer()`: a batch without one never creates an SQS client."""
    return MessageVisibility(boto3.client("sqs"))


def retry_soon(record: SQSRecord, seconds: int, visibility: Callable[[], MessageVisibility]) -> None:
    """Shorten the record's visibility; a failure is logged and never fails the batch (the queue's timeout applies)."""
    try:
        visibility().retry_after(record.event_source_arn, record.receipt_handle, seconds)
    except Exception as error:  # any failure here only costs the event its early retry
        logger.warning("visibility not shortened", extra={"messageId": record.message_id, "reason": repr(error)})


def handle_record(
    record: SQSRecord, consumer: Callable[[], RecordConsumer], visibility: Callable[[], MessageVisibility]
) -> Verdict:
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
        delay = retries().delay(int(record.attributes.approximate_receive_count or 0))
        logger.info("deferred: out of order", extra={**fields, "reason": str(error), "retryInSeconds": delay})
        retry_soon(record, delay, visibility)
        raise
    metrics.add_metric(name=_METRIC[verdict], unit=MetricUnit.Count, value=1)
    if verdict is Verdict.APPLY:
        # From the API's commit to the effect: every hop's delay, retries and reorderings included.
        lag = (utc_now() - event.metadata.occurred_at).total_seconds() * 1000
        metrics.add_metric(name="ConsumerLagMilliseconds", unit=MetricUnit.Milliseconds, value=max(0.0, lag))
    logger.info("applied" if verdict is Verdict.APPLY else "duplicate dropped", extra=fields)
    return verdict


def record_handler(record: SQSRecord) -> Verdict:
    """The deployed record handler: this module's consumer and visibility."""
    return handle_record(record, consumer, visibility)


def batch_handler(record_handler: Callable[[SQSRecord], Verdict], processor: BatchProcessor = processor) -> Handler:
    """The Lambda handler around a record handler: each batch in arrival order, partial batch responses.

    `processor` is Powertools' batch processor; a subclass may observe each record's success or failure
    (https://docs.powertools.aws.dev/lambda/python/latest/utilities/batch/#extending-batchprocessor).
    """

    @logger.inject_lambda_context
    @metrics.log_metrics
    def handle_batch(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
        records = sorted(event.get("Records", []), key=lambda r: arrival_order(r.get("body", "")))
        return process_partial_response(
            event={**event, "Records": records}, record_handler=record_handler, processor=processor, context=context
        )

    return handle_batch


# `record_handler` looked up by name at each batch rather than bound here.
handler = batch_handler(lambda record: record_handler(record))
