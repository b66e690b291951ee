"""`make cost`'s model: billing units from the requests actually made, and a small run of both designs.

Counts only, never times: units of known items on moto, the consumer designs' write units per event, and
what a run bills per ride change outside the timed Lambda lines.
"""

import boto3
import pytest
from mypy_boto3_dynamodb import DynamoDBClient
from rich.console import Console

from local import cost
from local.aws.template import Stack
from local.workload.cost.bill import BUS, CONSUMER, RELAY, Bill
from local.workload.cost.meter import Call, MotoItems, RequestMeter, acting_as
from local.workload.cost.units import (
    billed_milliseconds,
    chunks,
    gb_seconds,
    item_size,
    put_events_entry_size,
    read_units,
    write_units,
)
from rideonce.dal.consumer import EffectStore
from rideonce.logic.consumer import Verdict
from rideonce.services.consumer import RideEventConsumer
from tests.support.consumer import lifecycle


def counted_client() -> tuple[DynamoDBClient, RequestMeter]:
    client = boto3.client("dynamodb")
    meter = RequestMeter(MotoItems())
    meter.install(client.meta.events)
    return client, meter


def test_units_round_up_per_started_kilobyte_and_transactions_cost_double() -> None:
    # Given items of known sizes (attribute names count, numbers take about one byte per two digits)
    assert item_size({"k": {"S": "abc"}}) == 4
    assert item_size({"n": {"N": "12345"}}) == 1 + 4
    assert item_size({"m": {"M": {"a": {"S": "x"}}}}) == 1 + 3 + 2
    # Then a write costs a unit per started KB, twice in a transaction
    assert [write_units(size) for size in (0, 1, 1024, 1025, 2048)] == [1, 1, 1, 2, 2]
    assert [write_units(size, transactional=True) for size in (1, 1024, 1025)] == [2, 2, 4]
    # And a read a unit per started 4 KB strongly consistent, half eventually, twice in a transaction
    assert read_units(4096, consistent=True) == 1.0
    assert read_units(4097, consistent=True) == 2.0
    assert read_units(100, consistent=False) == 0.5
    assert read_units(100, consistent=True, transactional=True) == 2.0
    # And payloads are billed per started 64 KB; Lambda per started millisecond
    assert [chunks(size) for size in (1, 65536, 65537)] == [1, 1, 2]
    assert billed_milliseconds(0.0101) == 11
    assert gb_seconds(512, 1000) == 0.5
    assert put_events_entry_size({"Source": "s", "DetailType": "dt", "Detail": "{}"}) == 14 + 1 + 2 + 2


def test_the_meter_bills_each_write_on_the_larger_of_the_stored_item_before_and_after(stack: Stack) -> None:
    client, meter = counted_client()
    table = stack.name_of("RiderAccountsTable")
    key = {"riderId": {"S": "rider-1"}}
    big = {**key, "note": {"S": "x" * 1100}}
    # When an item over 1 KB is put, then shrunk by an update, read both ways, and deleted
    with acting_as("ConsumerFunction"):
        client.put_item(TableName=table, Item=big)
        client.update_item(TableName=table, Key=key, UpdateExpression="REMOVE note")
        client.get_item(TableName=table, Key=key, ConsistentRead=True)
        client.get_item(TableName=table, Key=key)
        client.delete_item(TableName=table, Key=key)
    # Then each write counts the larger side, each read its consistency, all from the function that made them
    calls = meter.calls
    assert [(c.operation, c.write_units, c.read_units) for c in calls] == [
        ("PutItem", 2.0, 0.0),
        ("UpdateItem", 2.0, 0.0),
        ("GetItem", 0.0, 1.0),
        ("GetItem", 0.0, 0.5),
        ("DeleteItem", 1.0, 0.0),
    ]
    assert {c.caller for c in calls} == {"ConsumerFunction"}


def test_a_transaction_bills_every_item_twice_even_when_a_condition_cancels_it(stack: Stack) -> None:
    client, meter = counted_client()
    table = stack.name_of("RiderAccountsTable")
    items = [
        {"Put": {"TableName": table, "Item": {"riderId": {"S": f"r{n}"}, "note": {"S": "x" * 1100}}}} for n in (1, 2)
    ]
    guarded = [{**items[0], "Put": {**items[0]["Put"], "ConditionExpression": "attribute_not_exists(riderId)"}}]
    # When two items of just over 1 KB commit together, then one is tried again under a failing condition
    client.transact_write_items(TransactItems=items)  # type: ignore[arg-type]
    with pytest.raises(client.exceptions.TransactionCanceledException):
        client.transact_write_items(TransactItems=guarded)  # type: ignore[arg-type]
    # Then 2 items x 2 KB x 2, and the cancelled one counted at its whole content (an upper bound)
    assert [c.write_units for c in meter.calls] == [8.0, 4.0]
    assert meter.calls[0].caller is None


def take(meter: RequestMeter) -> tuple[int, float]:
    """Requests and write units since the last take."""
    calls: list[Call] = meter.calls
    meter.calls = []
    return len(calls), sum(c.write_units for c in calls)


def test_rideonce_makes_one_request_per_event_and_pays_double_units_for_its_transaction(stack: Stack) -> None:
    # Given both consumer designs, each with a counted client, and one completed ride for each
    rideonce_client, rideonce_meter = counted_client()
    rideonce = RideEventConsumer(
        EffectStore(
            rideonce_client,
            stack.name_of("ProcessedKeysTable"),
            stack.name_of("RideProjectionTable"),
            stack.name_of("RiderAccountsTable"),
        ),
        key_ttl_seconds=3600,
    )
    powertools_client, powertools_meter = counted_client()
    powertools = cost.powertools_consumer(powertools_client, stack)
    powertools_meter.calls = []  # the table it created for itself is not a per-event cost
    measured: dict[str, list[tuple[int, float]]] = {"rideonce": [], "powertools": []}
    # When each applies its ride's four events, RideCompleted last
    for name, consumer, meter in (
        ("rideonce", rideonce, rideonce_meter),
        ("powertools", powertools, powertools_meter),
    ):
        for event in lifecycle(f"ride-{name}", rider_id=f"rider-{name}"):
            assert consumer.handle(event) is Verdict.APPLY
            measured[name].append(take(meter))
    # Then (requests, write units) per event: rideonce one transaction of 2 or 3 items at 2 units each;
    # Powertools three or four standard writes of one unit each. Fewer requests, more write units.
    assert measured["rideonce"] == [(1, 4.0), (1, 4.0), (1, 4.0), (1, 6.0)]
    assert measured["powertools"] == [(3, 3.0), (3, 3.0), (3, 3.0), (4, 4.0)]


@pytest.mark.e2e
def test_a_small_run_bills_both_designs_for_the_same_upstream(restore_environment: None) -> None:
    # Given / When: a few seeded rides through the whole local stack, once per consumer design
    console = Console(quiet=True)
    bills = {design: cost.run(design, rides=4, seed=5, retry_rate=0.2, console=console) for design in cost.DESIGNS}
    rideonce, powertools = bills[cost.RIDEONCE], bills[cost.POWERTOOLS]
    # Then both saw the same rides and requests: every counted line outside the consumer and the timed
    # Lambda durations is the same
    assert rideonce.changes == powertools.changes > 4

    def counted(bill: Bill) -> dict[tuple[str, str], float]:
        return {
            (line.hop, line.what): line.per_change
            for line in bill.lines
            if "GB-seconds" not in line.what and "log GB" not in line.what
        }

    upstream = {key for key in counted(rideonce) if key[0] != CONSUMER}
    assert {key: counted(rideonce)[key] for key in upstream} == {key: counted(powertools)[key] for key in upstream}
    lines = counted(rideonce)
    # And every change became one Pipe request, one custom event and one SQS message sent by the rule
    assert lines[(RELAY, "Pipe requests (records after filtering, 64 KB chunks)")] == 1.0
    assert lines[(BUS, "custom events (64 KB chunks)")] == 1.0
    assert lines[(BUS, "SQS SendMessage by the rules")] == 1.0
    # And the consumer's write units are those counted per event above: 4, or 6 for a RideCompleted
    consumer_units = (CONSUMER, "DynamoDB write request units")
    assert 4.0 <= counted(rideonce)[consumer_units] <= 6.0
    assert 3.0 <= counted(powertools)[consumer_units] <= 4.0


@pytest.mark.parametrize("args", [["--rides", "0"], ["--rides", "-3"], ["--retry-rate", "1"], ["--retry-rate", "-0.1"]])
def test_make_cost_refuses_a_run_it_cannot_price(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    # When make cost is given no rides or a retry share outside [0, 1)
    with pytest.raises(SystemExit) as exit_:
        cost.main(args)
    # Then it stops before starting a stack, with a usage error naming the option
    assert exit_.value.code == 2
    assert f"{args[0]} {args[1]}" in capsys.readouterr().err
