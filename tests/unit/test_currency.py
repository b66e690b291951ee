"""The currency table is ISO 4217's list one, as the `iso4217` package carries it (the published XML)."""

import iso4217

from rideonce.models.currency import MINOR_UNITS


def test_every_currency_with_minor_units_in_the_published_list_and_nothing_else() -> None:
    published = {currency.code: currency.exponent for currency in iso4217.Currency if currency.exponent is not None}
    assert published == MINOR_UNITS
