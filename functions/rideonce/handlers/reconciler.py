"""The scheduled reconciler: an EventBridge schedule invokes it every period with a "Scheduled Event".

The window is computed from the event's `time` (when the schedule fired), not from the clock, so a
retried invocation judges the same changes as the first attempt.
"""

from collections.abc import Callable
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import AwareDatetime, BaseModel

from rideonce.models.ride import format_timestamp
from rideonce.observability import logger, metrics
from rideonce.services.reconciler import Reconciler
from rideonce.settings import ReconcilerSettings


class ScheduledEvent(BaseModel):
    """The only field of EventBridge's "Scheduled Event" the reconciler needs; the rest is ignored."""

    time: AwareDatetime | None = None


@cache
def reconciler() -> Reconciler:
    """Built on the first run (settings validated here), then reused by the warm container."""
    return Reconciler.from_settings(ReconcilerSettings.from_env(), boto3.client("dynamodb"), boto3.client("events"))


def scheduled_handler(
    reconciler: Callable[[], Reconciler],
) -> Callable[..., dict[str, Any]]:
    """The Lambda handler over a reconciler, asked for on the first run; `handler` is the deployed one."""

    @logger.inject_lambda_context
    @metrics.log_metrics
    def run(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        report = reconciler().run(ScheduledEvent.model_validate(event).time)
        metrics.add_metric(name="ReconcilerChangesChecked", unit=MetricUnit.Count, value=report.checked)
        metrics.add_metric(name="ReconcilerEventsRepublished", unit=MetricUnit.Count, value=report.republished)
        metrics.add_metric(name="ReconcilerUnreadableRecords", unit=MetricUnit.Count, value=report.unreadable)
        summary = {
            "windowStart": format_timestamp(report.window.start),
            "windowEnd": format_timestamp(report.window.end),
            "checked": report.checked,
            "ridesBehind": report.rides_behind,
            "republished": report.republished,
            "unreadable": report.unreadable,
        }
        if report.republished or report.unreadable:
            logger.warning("changes that had not taken effect were republished", extra=summary)
        else:
            logger.info("every change in the window has taken effect", extra=summary)
        return summary

    return run


# `reconciler` looked up by name at each run rather than bound here.
handler = scheduled_handler(lambda: reconciler())
