"""The consumer designs compared under the same faults, and the registry `make chaos` reads them from.

Teaching code, never deployed: rideonce's own consumer (rideonce.py, an adapter) beside the two designs
the usual tutorials teach (check_then_write.py, powertools.py). A design is a module with a
`build(kit) -> RecordConsumer` and one row in `REGISTRY`; `make chaos ARGS="--designs rideonce,yours"`
then puts it through the same fault schedule as the others.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from local.designs import check_then_write, powertools, rideonce
from local.designs.steps import Steps
from rideonce.handlers.consumer import RecordConsumer

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


@dataclass(frozen=True)
class ConsumerTables:
    """The consumer's three tables, as template.yaml defines them, for one design alone."""

    processed_keys: str
    projection: str
    accounts: str


@dataclass(frozen=True)
class Kit:
    """What a design is built from; `build` is called once per instance (two consumers of one message)."""

    client: Callable[[], "DynamoDBClient"]
    """A new DynamoDB client, one per instance, as each Lambda execution environment has its own."""
    tables: ConsumerTables
    key_ttl_seconds: int
    """How long a processed key lives (the ConsumerFunction's PROCESSED_KEY_TTL_SECONDS)."""
    clock: Callable[[], datetime]
    steps: Steps
    table_prefix: str
    """For a table of the design's own (the stack's name)."""


@dataclass(frozen=True)
class Design:
    build: Callable[[Kit], RecordConsumer]
    description: str
    cost: int = 1
    """Relative consumer time under chaos, to start the longest first."""
    expected_failures: frozenset[str] = frozenset()
    """Record failures it raises on purpose, so the message is retried (besides poison, which every design refuses)."""


RIDEONCE = "rideonce"
CHECK_THEN_WRITE = "check-then-write"
POWERTOOLS = "powertools"

REGISTRY: dict[str, Design] = {
    RIDEONCE: Design(
        rideonce.build,
        "ours: the processed key and the effects in one TransactWriteItems, in version order",
        cost=2,
        expected_failures=frozenset({"OutOfOrderError"}),
    ),
    CHECK_THEN_WRITE: Design(
        check_then_write.build, "GetItem the key; if absent apply the effects, then PutItem the key", cost=1
    ),
    POWERTOOLS: Design(
        powertools.build,
        "Powertools idempotency alone: an INPROGRESS lock, the effects, a COMPLETED update",
        cost=3,
        expected_failures=frozenset({"IdempotencyAlreadyInProgressError"}),
    ),
}
DESIGNS = tuple(REGISTRY)
