"""The end-to-end invariants as pure functions of what the tables and queues hold.

One implementation for every caller: `make demo` and `make chaos` (local/workload/invariants.py, with the ledger of
what the API accepted as ground truth) and `python -m ops audit` (any stack, with the rides and outbox
tables as ground truth). Items are plain dicts as `rideonce.dal.dynamo.from_item` reads them.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

CHARGED_ATTRIBUTE = "chargedEUR"
"""The consumer charges `charged<currency>`; every fare of the ride API is in EUR."""


@dataclass(frozen=True)
class Check:
    name: str
    held: bool
    detail: str


def completed_fares(rides: Iterable[Mapping[str, Any]]) -> dict[str, list[Decimal]]:
    """{rider id: the fares of their completed rides}, read from rides-table items."""
    fares: dict[str, list[Decimal]] = defaultdict(list)
    for ride in rides:
        fare = ride.get("fare")
        if ride.get("status") == "COMPLETED" and isinstance(fare, Mapping):
            fares[str(ride["riderId"])].append(Decimal(str(fare["amount"])))
    return fares


def charges_match_fares(
    fares: Mapping[str, Sequence[Decimal]], accounts: Mapping[str, Mapping[str, Any]], note: str = ""
) -> Check:
    """Each rider was charged each completed fare exactly once: amount and number of charges.

    `note`: what the caller knows besides the tables, said in the detail (chaos counts the extra charges).
    """
    wrong = [
        rider
        for rider in set(fares) | set(accounts)
        if Decimal(str(accounts.get(rider, {}).get(CHARGED_ATTRIBUTE, 0))) != sum(fares.get(rider, []), Decimal(0))
        or int(accounts.get(rider, {}).get("chargeCount", 0)) != len(fares.get(rider, []))
    ]
    charged = sum((Decimal(str(account.get(CHARGED_ATTRIBUTE, 0))) for account in accounts.values()), Decimal(0))
    return Check(
        "no rider charged twice or missed: charges equal the fares of completed rides",
        not wrong,
        f"charged {charged} EUR for {sum(len(f) for f in fares.values())} completed rides; "
        + (f"{note}; " if note else "")
        + f"{len(wrong)} riders wrong"
        + (f" (e.g. {', '.join(sorted(wrong)[:3])})" if wrong else ""),
    )


def projection_matches_rides(
    rides: Mapping[str, Mapping[str, Any]], projection: Mapping[str, Mapping[str, Any]]
) -> Check:
    """The consumer's read model holds exactly the rides table, ride by ride."""
    mismatched = sorted(
        ride_id for ride_id in rides.keys() | projection.keys() if rides.get(ride_id) != projection.get(ride_id)
    )
    return Check(
        "the projection equals the rides table",
        not mismatched,
        f"{len(projection)} projected, {len(rides)} rides, {len(mismatched)} differ"
        + (f" (e.g. {', '.join(mismatched[:3])})" if mismatched else ""),
    )


def records_applied(
    outbox: set[tuple[str, int]], processed_keys: Sequence[Mapping[str, Any]], keys_outlive_records: bool
) -> Check:
    """Every outbox record (rideId, version) has exactly one processed key.

    `keys_outlive_records`: on a live stack the outbox forgets a change after 7 days and the consumer
    remembers its key for 35, so keys without a record are expected; after a run from empty tables
    (the demo, chaos) they are not.
    """
    applied = [(str(item["rideId"]), int(item["version"])) for item in processed_keys]
    seen = set(applied)
    missing = outbox - seen
    twice = len(applied) - len(seen)
    unexpected = 0 if keys_outlive_records else len(seen - outbox)
    return Check(
        "every outbox record was applied exactly once",
        not missing and not twice and not unexpected,
        f"{len(processed_keys)} processed keys for {len(outbox)} records; missing {len(missing)}, "
        f"unexpected {unexpected}, applied twice {twice}"
        + (f" (e.g. {', '.join(f'{ride} v{version}' for ride, version in sorted(missing)[:3])})" if missing else ""),
    )


def applied_in_order(processed_keys: Sequence[Mapping[str, Any]]) -> Check:
    """Each ride's versions were applied in increasing order (by the keys' processedAt)."""
    by_ride: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for item in processed_keys:
        by_ride[str(item["rideId"])].append((int(item["version"]), str(item["processedAt"])))
    disorder = [
        ride_id
        for ride_id, entries in by_ride.items()
        if [at for _, at in sorted(entries)] != sorted(at for _, at in entries)
    ]
    return Check(
        "each ride's versions were applied in increasing order", not disorder, f"{len(disorder)} rides out of order"
    )


def queues_empty(depths: Mapping[str, int], poison_expected: bool = False) -> Check:
    """Nothing parked in a dead-letter or quarantine queue (or, where poison was injected, only poison)."""
    parked = sum(depths.values())
    return Check(
        "dead-letter queues are empty" if not poison_expected else "only poison is parked",
        parked == 0 or poison_expected,
        ", ".join(f"{name} {depth}" for name, depth in depths.items()),
    )
