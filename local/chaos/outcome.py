"""What became of one design: its hop rows and its invariants, from its effect log, its tables and its DLQ."""

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from local.chaos.bus_faults import Delivery, key_of
from local.chaos.downstream import ConsumerRun
from local.chaos.downstream import DesignUnderTest as Design
from local.chaos.reconcile import ReconcileRuns
from local.chaos.report import EffectMetrics, HopRow
from local.chaos.upstream import Upstream
from local.workload.invariants import Check, ledger_fares
from ops.aws import Tables
from ops.checks import charges_match_fares, projection_matches_rides

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def consumer_hops(design: Design, run: ConsumerRun) -> list[HopRow]:
    rows = []
    seen: set[tuple[str, int]] = set()
    phases = list(run.phases.items())
    for index, (name, phase) in enumerate(phases):
        end = phases[index + 1][1].first_effect if index + 1 < len(phases) else len(design.log.projections)
        writes = design.log.projections[phase.first_effect : end]
        fresh = 0
        for key in writes:
            fresh += key not in seen
            seen.add(key)
        hop = {"live": "queue -> consumer"}.get(name, f"{name} -> consumer")
        rows.append(
            HopRow(
                hop,
                design.name,
                phase.deliveries,
                phase.not_deleted + phase.concurrent_pairs + phase.crashed_invocations + phase.held_back,
                phase.dropped,
                fresh,
                f"{phase.not_deleted} not deleted, {phase.concurrent_pairs} concurrent pairs, "
                f"{phase.crashed_invocations} crashed invocations, {phase.held_back} held back, "
                f"{phase.republished} republished by the reconciler; "
                f"{phase.failed} records failed ({', '.join(f'{k} {v}' for k, v in phase.failures.items()) or '-'}); "
                f"{len(writes) - fresh} duplicate effects; {phase.parked} parked in the DLQ",
            )
        )
    return rows


@dataclass(frozen=True)
class Tally:
    """One design's effect log, counted against the outbox records and its DLQ."""

    writes: Counter[tuple[str, int]]
    """Projection writes per outbox record (rideId, version)."""
    before_redrive: set[tuple[str, int]]
    parked: list[Delivery]
    parked_keys: set[tuple[str, int]]
    """The outbox records of the ride events parked in the DLQ."""
    extra_charges: int
    extra_writes: int
    order_violations: int

    @classmethod
    def of(cls, design: Design, run: ConsumerRun, parked: list[Delivery]) -> "Tally":
        log = design.log
        writes = Counter(log.projections)
        charges = Counter((ride_id, version) for ride_id, version, _ in log.charges)
        return cls(
            writes=writes,
            before_redrive=set(log.projections[: run.applied_before_redrive]),
            parked=parked,
            parked_keys={key for message in parked if not message.poison and (key := key_of(message.subject))},
            extra_charges=sum(count - 1 for count in charges.values() if count > 1),
            extra_writes=sum(count - 1 for count in writes.values() if count > 1),
            order_violations=order_violations(log.projections),
        )


def order_violations(applications: list[tuple[str, int]]) -> int:
    """How often a ride's version was applied after a newer one of the same ride."""
    violations = 0
    newest: dict[str, int] = {}
    for ride_id, version in applications:
        if version < newest.get(ride_id, 0):
            violations += 1
        newest[ride_id] = max(newest.get(ride_id, 0), version)
    return violations


def design_checks(
    design: Design,
    upstream: Upstream,
    parked: list[Delivery],
    run: ConsumerRun,
    client: "DynamoDBClient",
    reconciles: ReconcileRuns,
) -> tuple[EffectMetrics, list[Check]]:
    """The end-to-end invariants for one design, from its effect log, its tables and its DLQ."""
    tally = Tally.of(design, run, parked)
    legit = upstream.outbox_keys
    tables = Tables(client)
    accounts = {item["riderId"]: item for item in tables.scan(design.accounts_table)}
    projection = {item["rideId"]: item for item in tables.scan(design.projection_table)}
    metrics = EffectMetrics(
        duplicate_effects=tally.extra_charges + tally.extra_writes,
        extra_charges=tally.extra_charges,
        extra_projection_writes=tally.extra_writes,
        lost_events=sum(1 for key in legit if tally.writes[key] == 0),
        order_violations=tally.order_violations,
        parked_healthy=sum(1 for message in parked if not message.poison),
        unhandled=len(run.unhandled),
        lost_before_redrive=sum(1 for key in legit if key not in tally.before_redrive),
        parked_healthy_before_redrive=run.redriven_healthy,
        lost_at_relay=len(upstream.lost_at_relay),
        repaired=sum(1 for key in upstream.lost_at_relay if tally.writes[key] >= 1),
        reconciler_runs=reconciles.runs,
        republished=reconciles.republished,
    )
    return metrics, [
        *_delivery_checks(tally, upstream, run),
        charges_match_fares(ledger_fares(upstream.ledger), accounts, note=f"{tally.extra_charges} extra charges"),
        projection_matches_rides(upstream.rides, projection),
        Check(
            "each ride's versions were applied in increasing order",
            tally.order_violations == 0,
            f"{tally.order_violations} applications of an older version after a newer one "
            f"({len(design.log.projections)} applications)",
        ),
        Check(
            "no unhandled exception",
            not run.unhandled,
            f"{len(run.unhandled)} unhandled" + (f": {run.unhandled[0]}" if run.unhandled else ""),
        ),
    ]


def _delivery_checks(tally: Tally, upstream: Upstream, run: ConsumerRun) -> list[Check]:
    """Each outbox record applied once or parked, before the redrive; the DLQ holding exactly the poison."""
    legit, writes, parked_keys = upstream.outbox_keys, tally.writes, tally.parked_keys
    wrong_count = [
        key
        for key in legit
        if not ((writes[key] == 1 and key not in parked_keys) or (writes[key] == 0 and key in parked_keys))
    ]
    unknown = set(writes) - legit
    lost = [key for key in legit if writes[key] == 0]
    lost_before_redrive = [key for key in legit if key not in tally.before_redrive]
    parked_subjects = {message.subject for message in tally.parked}
    healthy_parked = [message for message in tally.parked if not message.poison]
    poison = upstream.poison_subjects
    return [
        Check(
            "every outbox record was applied exactly once or sits in the DLQ, never both",
            not wrong_count and not unknown,
            f"{len(legit)} records: {sum(1 for k in legit if writes[k] == 1)} applied once, "
            f"{sum(1 for k in legit if writes[k] > 1)} more than once, {len(lost)} never "
            f"({len(parked_keys & legit)} of them parked); {len(unknown)} unknown applied",
        ),
        Check(
            "every outbox record took effect before the DLQ redrive: the reconciler repaired the relay's losses",
            not lost_before_redrive,
            f"{len(legit) - len(lost_before_redrive)} of {len(legit)} records applied before the redrive, "
            f"{len(upstream.lost_at_relay)} lost at the relay and "
            f"{sum(1 for key in upstream.lost_at_relay if key in tally.before_redrive)} of them republished and "
            f"applied; {run.redriven_healthy} ride events redriven",
        ),
        Check(
            "the DLQ holds exactly the poison" if poison else "the DLQ is empty",
            not healthy_parked and parked_subjects == poison,
            f"{len(tally.parked)} parked: {len(tally.parked) - len(healthy_parked)} poison copies of "
            f"{len(parked_subjects & poison)}/{len(poison)} poison messages, "
            f"{len(healthy_parked)} ride events",
        ),
    ]
