"""Money: ISO 4217 currency codes, cents rounding and conversion to USD.

Every amount on the streams is USD as a decimal string with two places
(``"10.00"``); the original currency is kept beside it. Conversion uses a rate
table (USD per unit of the currency) that operators can override with the
``FX_RATES_USD`` setting; a real ISO code without a rate is refused rather than
guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
BITS_USD = Decimal("0.01")
"""What one bit is worth to the streamer, in USD (Twitch pays one cent a bit)."""

ISO_4217: frozenset[str] = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL
    BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP
    ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR
    IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL
    LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR
    NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD
    SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX
    USD UYU UZS VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
    """.split()  # noqa: SIM905 - a block of codes reads better than a list
)
"""Active ISO 4217 currency codes."""

DEFAULT_USD_RATES: dict[str, Decimal] = {
    code: Decimal(rate)
    for code, rate in {
        "USD": "1",
        "EUR": "1.08",
        "GBP": "1.27",
        "CAD": "0.73",
        "AUD": "0.66",
        "NZD": "0.60",
        "CHF": "1.13",
        "SEK": "0.095",
        "NOK": "0.093",
        "DKK": "0.145",
        "PLN": "0.25",
        "CZK": "0.043",
        "HUF": "0.0027",
        "JPY": "0.0066",
        "KRW": "0.00073",
        "CNY": "0.14",
        "HKD": "0.128",
        "SGD": "0.74",
        "INR": "0.012",
        "BRL": "0.18",
        "MXN": "0.055",
        "ARS": "0.0011",
        "CLP": "0.0011",
        "COP": "0.00025",
        "ZAR": "0.054",
        "TRY": "0.030",
        "ILS": "0.27",
        "PHP": "0.018",
        "THB": "0.028",
        "MYR": "0.22",
        "IDR": "0.000063",
        "TWD": "0.031",
        "RUB": "0.011",
        "UAH": "0.024",
    }.items()
}
"""Approximate USD value of one unit of each currency; override with ``FX_RATES_USD``."""


class CurrencyError(ValueError):
    """A currency code that is not ISO 4217, or that has no known USD rate."""


def to_cents(amount: Decimal) -> Decimal:
    """Round to two decimal places, half up (``Decimal("1.005")`` -> ``1.01``)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def normalise_currency(code: str) -> str:
    """Upper-case ``code`` and check it is an active ISO 4217 code."""
    upper = code.strip().upper()
    if upper not in ISO_4217:
        raise CurrencyError(f"unknown currency {code!r}: expected an ISO 4217 code such as USD")
    return upper


def to_usd(amount: Decimal, currency: str, rates: Mapping[str, Decimal]) -> Decimal:
    """Convert ``amount`` in ``currency`` to USD cents using ``rates`` (USD per unit)."""
    code = normalise_currency(currency)
    rate = rates.get(code)
    if rate is None:
        raise CurrencyError(f"no USD rate for {code}: add it to the FX_RATES_USD setting")
    return to_cents(amount * rate)


def bits_to_usd(bits: int) -> Decimal:
    """USD the streamer earns for ``bits`` bits (one cent each)."""
    return to_cents(BITS_USD * bits)


HOUR_MS = 3_600_000


def usd(cents: int) -> float:
    """Integer cents as USD, rounded to cents (for reports and JSON figures)."""
    return round(cents / 100, 2)


def usd_per_hour(cents: int, duration_ms: int) -> float:
    """``cents`` per hour of ``duration_ms``, USD (0 for an empty range)."""
    return round(cents / 100 * HOUR_MS / duration_ms, 2) if duration_ms else 0.0
