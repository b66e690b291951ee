"""ISO 4217 currencies and their minor units, so a fare is a real amount of a real currency.

From the ISO 4217 list one (current currency and funds codes) published by its maintenance agency,
SIX (https://www.six-group.com/en/products-services/financial-information/data-standards.html), as of
its 2026-01-01 issue. Codes without minor units there (precious metals, bond units, XDR, XSU, XUA, XTS,
XXX) are not money a rider pays. A table here rather than a library at run time: the functions' cold
start stays free of parsing the published XML; tests/unit/test_currency.py holds the table to the `iso4217`
package's copy of that list, so a new issue of the list fails a test instead of drifting.
"""

from typing import Final

_BY_MINOR_UNITS: Final = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    2: (
        "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BMD BND BOB BOV BRL BSD BTN BWP BYN BZD "
        "CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS "
        "GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL "
        "MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK "
        "PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS "
        "TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XAD XCD XCG YER ZAR ZMW ZWG"
    ),
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
}

MINOR_UNITS: Final[dict[str, int]] = {code: units for units, codes in _BY_MINOR_UNITS.items() for code in codes.split()}
"""Digits after the decimal point each currency has, by its alphabetic code."""
