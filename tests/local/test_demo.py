"""End to end through the local stack: moto in server mode, every hop emulated, the real handlers."""

import json
import os
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from local import demo
from local.aws.stack import LocalStack
from local.emulators.clock import WallClock
from local.emulators.http_api import make_handler
from local.emulators.pipeline import Pipeline
from local.workload.invariants import scan
from local.workload.report.json_codec import from_json

pytestmark = pytest.mark.e2e


@pytest.fixture
def local(restore_environment: None, tmp_path: Path) -> Iterator[LocalStack]:
    stack = LocalStack.start(outputs_file=tmp_path / "outputs.json")
    yield stack
    stack.stop()


def test_the_demo_runs_green_on_a_small_fleet(restore_environment: None, tmp_path: Path) -> None:
    # Given / When `make demo` runs a small fleet
    status = demo.main(["--rides", "25", "--seed", "3", "--retry-rate", "0.2", "--report-dir", str(tmp_path)])
    # Then it exits 0, having written its report as JSON and as a page
    report = from_json((tmp_path / "report.json").read_text())
    assert status == 0, json.dumps([asdict(check) for check in report.checks], indent=2)
    assert report.ok
    assert "all invariants held" in (tmp_path / "report.html").read_text()
    # And the numbers tie out hop by hop
    hops = {hop.hop: hop for hop in report.hops}
    accepted = hops["API -> outbox"].received
    assert report.run.sizes["ride changes"] == accepted
    assert hops["API -> outbox"].passed_on == accepted
    assert hops["client -> API"].duplicates_dropped > 0
    assert hops["stream -> Pipe -> bus"].passed_on == accepted
    assert hops["bus -> queue -> consumer"].passed_on == accepted
    replay = hops["archive replay -> consumer"]
    assert replay.received == accepted
    assert replay.duplicates_dropped == accepted
    assert all(hop.to_dead_letter == 0 for hop in report.hops)
    # And the consumer's effects are exactly once, in order, nothing lost or parked
    (design,) = report.designs
    assert (design.duplicate_effects, design.lost_events, design.order_violations, design.parked) == (0, 0, 0, 0)
    # And every change has its commit -> applied time, none before its commit
    assert report.latency is not None
    assert report.latency.count == accepted
    assert 0 <= report.latency.p50 <= report.latency.p99 <= report.latency.max
    measures = {measure.name: measure.value for measure in report.measures}
    assert measures["  ratio to bare moto"] > 0
    assert measures["  end-to-end ratio to bare moto"] >= measures["  ratio to bare moto"]
    assert measures["  replay ratio to bare moto"] > 0


def test_resources_come_from_the_template_and_the_outputs_file_finds_them(local: LocalStack, tmp_path: Path) -> None:
    outputs = json.loads((tmp_path / "outputs.json").read_text())
    assert outputs["endpoint"] == local.endpoint == os.environ["AWS_ENDPOINT_URL"]
    ddb = boto3.client("dynamodb")
    outbox = ddb.describe_table(TableName=outputs["outputs"]["OutboxTableName"])["Table"]
    assert outbox["StreamSpecification"]["StreamViewType"] == "NEW_IMAGE"
    ttl = ddb.describe_time_to_live(TableName=outputs["outputs"]["ProcessedKeysTableName"])
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expiresAt"
    sqs = boto3.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=outputs["outputs"]["RideEventsQueueUrl"], AttributeNames=["All"])
    redrive = json.loads(attributes["Attributes"]["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith("ConsumerDeadLetterQueue")
    assert attributes["Attributes"]["VisibilityTimeout"] == "120"
    events = boto3.client("events")
    rules = events.list_rules(EventBusName=outputs["outputs"]["RideEventBusName"])["Rules"]
    assert {"rideonce-local-RideEventsRule", "rideonce-local-QuarantineRule"} <= {rule["Name"] for rule in rules}
    assert events.describe_archive(ArchiveName=outputs["outputs"]["RideEventArchiveName"])["RetentionDays"] == 30
    pipe = boto3.client("pipes").describe_pipe(Name=outputs["resources"]["OutboxPipe"]["physicalId"])
    assert pipe["SourceParameters"]["DynamoDBStreamParameters"]["BatchSize"] == 10


def request(url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    call = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(call, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def test_the_http_api_serves_requests_and_the_pipeline_applies_them(local: LocalStack) -> None:
    # Given the API served over real HTTP, with the pipeline behind it
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(local))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        # When a client creates and completes a ride, retrying one request
        ride = {"riderId": "r-http", "pickup": {"lat": 1, "lng": 2}, "dropoff": {"lat": 3, "lng": 4}}
        status, created = request(f"{base}/rides", "POST", ride, {"Idempotency-Key": "c1"})
        assert status == 201
        assert request(f"{base}/rides", "POST", ride, {"Idempotency-Key": "c1"}) == (201, created)
        ride_id = created["rideId"]
        for action, body in (
            ("accept", {"driverId": "d"}),
            ("start", None),
            ("complete", {"fare": {"amount": "12.00", "currency": "EUR"}}),
        ):
            assert request(f"{base}/rides/{ride_id}/{action}", "POST", body, {"Idempotency-Key": action})[0] == 200
        assert request(f"{base}/rides/{ride_id}")[1]["status"] == "COMPLETED"
        assert request(f"{base}/nowhere")[0] == 404
        with Pipeline(local, WallClock(0.01)) as pipeline:
            pipeline.run_until_quiet(timeout_seconds=60)
    finally:
        server.shutdown()
        server.server_close()
    # Then the consumer applied the ride once and charged its rider once
    (account,) = scan(local.stack, "RiderAccountsTable")
    assert (str(account["chargedEUR"]), int(account["chargeCount"])) == ("12.00", 1)
    (projected,) = scan(local.stack, "RideProjectionTable")
    assert (projected["status"], int(projected["version"])) == ("COMPLETED", 4)
