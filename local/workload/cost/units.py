"""DynamoDB, EventBridge, SQS and Lambda billing units by their documented rules, and the list prices."""

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from local.aws.template import ROOT

PRICES_PATH = ROOT / "docs" / "prices.toml"
WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096
CHUNK_BYTES = 64 * 1024
"""SQS requests, EventBridge events and Pipe requests are billed per 64 KB chunk of payload."""
PUT_EVENTS_TIME_BYTES = 14
GB = 1024**3


# ---------------------------------------------------------------- units


def item_size(item: Mapping[str, Any]) -> int:
    """Bytes DynamoDB counts for an item (DynamoDB JSON): every attribute's name plus its value."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: Mapping[str, Any]) -> int:
    ((kind, data),) = value.items()
    if kind == "S":
        return len(str(data).encode())
    if kind == "N":
        digits = Decimal(str(data)).normalize().as_tuple().digits
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + item_size(data)
    if kind == "L":
        return 3 + sum(_value_size(element) for element in data)
    if kind in ("SS", "NS", "BS"):
        return sum(_value_size({kind[0]: element}) for element in data)
    raise ValueError(f"no size for a {kind} value")


def write_units(size: int, transactional: bool = False) -> int:
    """Write request units of one item write: 1 per started KB (at least 1), twice in a transaction."""
    units = max(1, math.ceil(size / WRITE_UNIT_BYTES))
    return units * 2 if transactional else units


def read_units(size: int, consistent: bool, transactional: bool = False) -> float:
    """Read request units of one item read: 1 per started 4 KB strongly consistent, half that eventually
    consistent, twice that in a transaction."""
    blocks = max(1, math.ceil(size / READ_UNIT_BYTES))
    if transactional:
        return float(blocks * 2)
    return float(blocks) if consistent else blocks / 2


def chunks(size: int, chunk: int = CHUNK_BYTES) -> int:
    """Billed requests or events for a payload: one per started chunk, at least one."""
    return max(1, math.ceil(size / chunk))


def billed_milliseconds(seconds: float) -> int:
    """Lambda's billed duration: rounded up to the next millisecond."""
    return max(1, math.ceil(seconds * 1000))


def gb_seconds(memory_mb: int, milliseconds: int) -> float:
    return memory_mb / 1024 * milliseconds / 1000


def put_events_entry_size(entry: Mapping[str, Any]) -> int:
    """An entry's size as EventBridge computes it for PutEvents: Time, Source, DetailType, Detail, Resources."""
    size = PUT_EVENTS_TIME_BYTES
    for name in ("Source", "DetailType", "Detail"):
        size += len(str(entry.get(name, "")).encode())
    size += sum(len(resource.encode()) for resource in entry.get("Resources", []))
    return size


# ---------------------------------------------------------------- prices


@dataclass(frozen=True)
class Price:
    key: str
    usd: float | None
    per: int
    unit: str
    source: str
    found_in: str
    read: str
    missing: str = ""

    def cost(self, quantity: float) -> float:
        """Dollars for `quantity` units; nothing when no page gave the price (the report says so)."""
        return 0.0 if self.usd is None else quantity * self.usd / self.per


def load_prices(path: Path = PRICES_PATH) -> dict[str, Price]:
    table = tomllib.loads(path.read_text())
    return {
        key: Price(
            key=key,
            usd=spec.get("usd"),
            per=int(spec.get("per", 1)),
            unit=spec["unit"],
            source=spec["source"],
            found_in=spec.get("found_in", ""),
            read=spec["read"],
            missing=spec.get("missing", ""),
        )
        for key, spec in table["prices"].items()
    }
