"""Every file in events/ (the ones users give `sam local invoke -e`) is accepted by its handler."""

import json
from functools import partial
from typing import Any

import boto3
import pytest

from local.aws.context import FakeLambdaContext
from local.aws.messaging import create_event_buses
from local.aws.template import ROOT, Stack
from rideonce.handlers import api, consumer, reconciler
from rideonce.models.requests import CreateRideRequest
from rideonce.services.rides import RideService, WriteRequest
from tests.support.api import ApiClient
from tests.support.consumer import ConsumerHarness

EVENTS = ROOT / "events"
# The rides the transition events act on; `sam local invoke` users create them first (README).
SEEDED_RIDES = ("3f1b7e52-5d0c-4a61-9e8a-0c1d2e3f4a01", "3f1b7e52-5d0c-4a61-9e8a-0c1d2e3f4a02")
# In lifecycle order, with the status each must answer.
API_FILES = {
    "api-create-ride.json": 201,
    "api-get-ride.json": 200,
    "api-accept-ride.json": 200,
    "api-start-ride.json": 200,
    "api-complete-ride.json": 200,
    "api-cancel-ride.json": 200,
    "api-openapi.json": 200,
}
KNOWN_PREFIXES = ("api-", "pipe-", "sqs-", "schedule-")
# SQS batches of EventBridge envelopes, each applied with no failed record.
SQS_FILES = ("sqs-new-ride-event.json", "sqs-duplicate.json", "sqs-out-of-order.json")


def load(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())  # type: ignore[no-any-return]


def test_every_event_file_belongs_to_a_function() -> None:
    names = sorted(path.name for path in EVENTS.glob("*.json"))
    assert names, "events/ is empty"
    assert [name for name in names if not name.startswith(KNOWN_PREFIXES)] == []
    assert set(API_FILES) == {name for name in names if name.startswith("api-")}
    assert set(SQS_FILES) == {name for name in names if name.startswith("sqs-")}
    # pipe-enrichment.json is fed to the enrichment handler in tests/unit/test_enrichment.py
    assert {name for name in names if name.startswith("pipe-")} == {"pipe-enrichment.json"}
    assert {name for name in names if name.startswith("schedule-")} == {"schedule-reconciler.json"}


def test_api_event_files_are_accepted_by_the_api_handler(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the rides the files name
    ApiClient(stack, monkeypatch)
    live = api.service()
    seed = CreateRideRequest.model_validate(json.loads(load("api-create-ride.json")["body"]))
    for ride_id in SEEDED_RIDES:
        seeder = RideService(live._rides, live._keys, live._settings, make_id=partial(str, ride_id))
        seeder.create(WriteRequest("seed", f"seed-{ride_id}", "fp", "00-" + "1" * 32 + "-" + "2" * 16 + "-00"), seed)
    # When / Then each file is answered as its place in the lifecycle says
    for name, status in API_FILES.items():
        result = api.handler(load(name), FakeLambdaContext(function_name="ApiFunction"))
        assert result["statusCode"] == status, f"{name}: {result['body']}"


def test_sqs_event_files_are_accepted_by_the_consumer(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    harness = ConsumerHarness(stack, monkeypatch)
    for name in SQS_FILES:
        result = consumer.handler(load(name), FakeLambdaContext(function_name="ConsumerFunction"))
        assert result["batchItemFailures"] == [], name
    # new: one event; duplicate: one of two; out of order: both, once reordered
    assert sorted(harness.processed_keys()) == sorted(
        [
            "ride#9b0e2f6c-1111-4a61-9e8a-000000000001#v1",
            "ride#9b0e2f6c-2222-4a61-9e8a-000000000002#v1",
            "ride#9b0e2f6c-3333-4a61-9e8a-000000000003#v1",
            "ride#9b0e2f6c-3333-4a61-9e8a-000000000003#v2",
        ]
    )


def test_the_schedule_event_file_runs_the_reconciler(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the stack's tables and bus, and nothing committed
    create_event_buses(boto3.client("events"), stack)
    for name, value in stack.function_environment("ReconcilerFunction").items():
        monkeypatch.setenv(name, value)
    reconciler.reconciler.cache_clear()
    # When the schedule's event arrives
    summary = reconciler.handler(
        load("schedule-reconciler.json"), FakeLambdaContext(function_name="ReconcilerFunction")
    )
    # Then the run checked the window that ended the grace period before the event's time
    assert summary["windowEnd"] == "2026-11-22T09:35:00.000Z"
    assert (summary["checked"], summary["republished"]) == (0, 0)
