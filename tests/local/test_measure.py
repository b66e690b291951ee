"""The speed baseline: the API's own DynamoDB requests of a change, recorded and replayed on scratch tables."""

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from local.aws.stack import LocalStack
from local.workload.measure import BareBaseline, ReplayDiverged
from local.workload.traffic import ApiCaller

pytestmark = pytest.mark.e2e

CREATE = {"riderId": "r-bare", "pickup": {"lat": 1, "lng": 2}, "dropoff": {"lat": 3, "lng": 4}}


@pytest.fixture
def local(restore_environment: None, tmp_path: Path) -> Iterator[LocalStack]:
    stack = LocalStack.start(outputs_file=tmp_path / "outputs.json")
    yield stack
    stack.stop()


def outbox_count(table: str) -> int:
    return int(boto3.client("dynamodb").scan(TableName=table, Select="COUNT")["Count"])


def test_the_api_requests_of_a_change_are_replayed_on_scratch_tables_ending_as_they_did(local: LocalStack) -> None:
    # Given the baseline made before the API's first request, as the demo makes it
    bare = BareBaseline(local)
    api = ApiCaller(local.stack, local.functions["ApiFunction"])
    try:
        # When a ride is created, then accepted with a client retry of the same request, both recorded
        with bare.recording() as created:
            ride = api.call("POST", "/rides", CREATE, key="k-create").body
        with bare.recording() as accepted:
            for _ in range(2):
                answer = api.call(
                    "POST", f"/rides/{ride['rideId']}/accept", {"driverId": "d"}, "k-accept", {"If-Match": '"1"'}
                )
                assert answer.status == 200
        outbox = local.stack.ref("OutboxTable")
        before = outbox_count(outbox)
        bare.replay(created, 1)
        bare.replay(accepted, 1)
        # Then each recorded the requests the handler made, with how they ended: the retry's claim finds the
        # key taken and reads the stored answer from the same failed request
        assert [request.operation for request in created] == ["PutItem", "TransactWriteItems"]
        assert [(request.operation, request.error) for request in accepted] == [
            ("PutItem", None),
            ("GetItem", None),
            ("TransactWriteItems", None),
            ("PutItem", "ConditionalCheckFailedException"),
        ]
        # And the replay ended the same way on the scratch tables (it raises otherwise), leaving the API's alone
        assert outbox_count(outbox) == before == 2
        (scratch_outbox,) = [name for name in scratch_tables() if name.endswith("-OutboxTable")]
        assert {int(item["version"]["N"]) for item in scan_table(scratch_outbox)} == {1, 2}
        assert (bare.changes, bare.seconds > 0) == (2, True)
    finally:
        bare.close()


def scan_table(name: str) -> list[dict[str, dict[str, str]]]:
    return boto3.client("dynamodb").scan(TableName=name)["Items"]  # type: ignore[return-value]


def test_a_replay_that_ends_otherwise_than_the_api_refuses_to_count(local: LocalStack) -> None:
    bare = BareBaseline(local)
    api = ApiCaller(local.stack, local.functions["ApiFunction"])
    try:
        with bare.recording() as created:
            api.call("POST", "/rides", CREATE, key="k-twice")
        bare.replay(created, 1)
        # The same claim again: the scratch table holds the key now, so the replay would time an error path
        with pytest.raises(ReplayDiverged, match="PutItem: ConditionalCheckFailedException in the replay, success"):
            bare.replay(created, 1)
        # And a change whose requests the recorder never saw is refused, not counted as free
        with pytest.raises(ReplayDiverged, match="no DynamoDB request"):
            bare.replay([], 1)
    finally:
        bare.close()


def test_closing_the_baseline_removes_its_scratch_tables(local: LocalStack) -> None:
    bare = BareBaseline(local)
    assert len(scratch_tables()) == 3
    bare.close()
    assert scratch_tables() == []


def scratch_tables() -> list[str]:
    return [name for name in boto3.client("dynamodb").list_tables()["TableNames"] if name.startswith("bare-")]
