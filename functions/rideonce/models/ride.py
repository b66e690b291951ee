"""The ride aggregate: its lifecycle states and the full state every event carries."""

import re
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

from rideonce.models.base import CamelModel
from rideonce.models.currency import MINOR_UNITS

Timestamp = Annotated[
    AwareDatetime,
    PlainSerializer(lambda value: format_timestamp(value), return_type=str, when_used="json"),
]
"""A UTC instant that always serialises the same way, so events built twice are byte-identical."""


def format_timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with millisecond precision and a `Z`, the one text form of every instant."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


class RideStatus(StrEnum):
    REQUESTED = "REQUESTED"
    ACCEPTED = "ACCEPTED"
    STARTED = "STARTED"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"


def _json_number(value: object) -> object:
    """A number stays a number: no boolean (a JSON `true` is not 1) and no numeric string is coerced."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError("must be a JSON number, not a string or a boolean")
    return value


def _plain_decimal(value: object) -> object:
    """Money travels as text so no float rounds it; the text is the plain form only, never `1E+2` or `1_000`."""
    if isinstance(value, Decimal) and value.is_finite():
        return value
    if isinstance(value, str) and PLAIN_DECIMAL.fullmatch(value):
        return Decimal(value)
    raise ValueError('must be a plain decimal string such as "23.50": ASCII digits and at most one "."')


def _iso_4217(code: str) -> str:
    if code not in MINOR_UNITS:
        raise ValueError("must be an ISO 4217 currency code in capitals, e.g. EUR")
    return code


# About a centimetre. More digits say nothing about a street corner, and a number like 1e-234 is below the
# smallest magnitude a DynamoDB number holds (1E-130): rounding keeps every coordinate storable.
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.NamingRulesDataTypes.html
COORDINATE_DECIMALS = 7


def _to_decimals(value: float) -> float:
    return round(value, COORDINATE_DECIMALS) + 0.0  # + 0.0: never -0.0


def _amount_pattern(decimals: int) -> str:
    """Above 0, at most 100000, at most `decimals` decimals: the generic pattern, narrowed for one currency."""
    if not decimals:
        return r"^(?!0+$)(?:0|[1-9][0-9]{0,4}|100000)$"
    return rf"^(?!0+(?:\.0+)?$)(?:(?:0|[1-9][0-9]{{0,4}})(?:\.[0-9]{{1,{decimals}}})?|100000(?:\.0{{1,{decimals}}})?)$"


# Above 0, at most 100000, at most 4 decimals (a currency's minor units are checked after); no sign, no exponent.
PLAIN_DECIMAL = re.compile(_amount_pattern(max(MINOR_UNITS.values())), re.ASCII)
MAX_FARE = Decimal(100_000)


class Location(CamelModel):
    # The bounds come first, on the number itself, so the JSON Schema says `minimum`/`maximum`.
    lat: Annotated[
        float,
        Field(ge=-90, le=90, description="Latitude in decimal degrees (a JSON number), to 7 decimals."),
        BeforeValidator(_json_number),
        AfterValidator(_to_decimals),
    ]
    lng: Annotated[
        float,
        Field(ge=-180, le=180, description="Longitude in decimal degrees (a JSON number), to 7 decimals."),
        BeforeValidator(_json_number),
        AfterValidator(_to_decimals),
    ]
    address: Annotated[str | None, Field(default=None, max_length=200)] = None


def _one_schema_per_minor_units(schema: dict[str, Any]) -> None:
    """The JSON Schema pairs each currency with its decimals (oneOf by minor units), as validation does."""
    schema["oneOf"] = [
        {
            "properties": {
                "currency": {"enum": sorted(code for code, units in MINOR_UNITS.items() if units == decimals)},
                "amount": {"pattern": _amount_pattern(decimals)},
            }
        }
        for decimals in sorted(set(MINOR_UNITS.values()))
    ]


class Money(CamelModel):
    """An amount of an ISO 4217 currency, with no more decimals than the currency's minor units."""

    model_config = ConfigDict(**{**CamelModel.model_config, "json_schema_extra": _one_schema_per_minor_units})

    amount: Annotated[
        Decimal,
        BeforeValidator(_plain_decimal),
        Field(gt=0, le=MAX_FARE),
        WithJsonSchema(
            {
                "type": "string",
                "pattern": PLAIN_DECIMAL.pattern,
                "description": (
                    'A plain decimal string, e.g. "23.50", above 0 and at most 100000, with at most as many '
                    "decimals as the currency's minor units (JPY none, EUR 2, KWD 3)."
                ),
            }
        ),
    ]
    currency: Annotated[
        str,
        AfterValidator(_iso_4217),
        Field(description="An ISO 4217 alphabetic code, e.g. EUR.", json_schema_extra={"enum": sorted(MINOR_UNITS)}),
    ]

    @model_validator(mode="after")
    def _within_minor_units(self) -> Self:
        units = MINOR_UNITS[self.currency]
        exponent = self.amount.as_tuple().exponent
        if isinstance(exponent, int) and -exponent > units:
            raise ValueError(f"{self.currency} has {units} minor units: the amount may have at most {units} decimals")
        return self


class Ride(CamelModel):
    """The whole state of one ride after a change; `version` counts its accepted changes from 1."""

    ride_id: str
    rider_id: str
    status: RideStatus
    version: Annotated[int, Field(ge=1)]
    pickup: Location
    dropoff: Location
    driver_id: str | None = None
    fare: Money | None = None
    cancellation_reason: str | None = None
    created_at: Timestamp
    updated_at: Timestamp
