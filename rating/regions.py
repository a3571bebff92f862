"""A project's region and default currency, from what the operator gives.

The region says which country a national number means (access numbers, callers,
blocks). Issue 12: a project whose access number is ``+41…`` got region DE unless
``--region`` was given, so a caller's ``079…`` became ``+4979…``; and the currency
defaulted to EUR. Now the region is the one given, else the country of the first
access number written in E.164 (``+…`` or ``00…``); a national number with neither is
refused, since nothing says which country it is in. The default currency is the
region's, from a small explicit table (the countries the seeds name and their
neighbours); a region outside it needs ``--currency``.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import InvalidInput
from .numbers import region_of_number

__all__ = ["DEFAULT_CURRENCIES", "default_currency", "project_region"]

# ISO 3166 region -> ISO 4217 currency. Explicit and small on purpose: a guess for a
# country not here would be a silent wrong price, so such a project names its currency.
DEFAULT_CURRENCIES: dict[str, str] = {
    "CH": "CHF", "LI": "CHF",
    "DE": "EUR", "AT": "EUR", "FR": "EUR", "IT": "EUR", "ES": "EUR", "NL": "EUR", "BE": "EUR",
    "LU": "EUR", "IE": "EUR", "PT": "EUR", "FI": "EUR", "GR": "EUR", "SK": "EUR", "SI": "EUR",
    "EE": "EUR", "LV": "EUR", "LT": "EUR", "MT": "EUR", "CY": "EUR", "HR": "EUR", "MC": "EUR",
    "PL": "PLN", "CZ": "CZK", "HU": "HUF", "DK": "DKK", "SE": "SEK", "NO": "NOK", "GB": "GBP",
}


def _written_international(number: str) -> str | None:
    """``+41…`` / ``0041…`` (separators already gone) as ``+41…``; None for a national number."""
    if number.startswith("+"):
        return number
    if number.startswith("00"):
        return "+" + number[2:]
    return None


def project_region(numbers: Sequence[str], region: str | None) -> str:
    """The region of a new project: ``region`` if given, else that of the first access
    number written in E.164.

    Raises:
        InvalidInput: no region and no E.164 number, or the first E.164 number is in no
            country (+800 …) or does not parse.
    """
    if region:
        return region.upper()
    first = next((e for e in map(_written_international, numbers) if e is not None), None)
    if first is None:
        raise InvalidInput(f"{numbers[0]} is a national number: give --region (CH, DE, AT …) or write it"
                           " in E.164 (+41…)" if numbers else "a project needs at least one access number")
    found = region_of_number(first)
    if found is None:
        raise InvalidInput(f"{first} belongs to no country: give --region (CH, DE, AT …)")
    return found


def default_currency(region: str) -> str:
    """The currency a project of ``region`` is priced in unless told otherwise.

    Raises:
        InvalidInput: the region is not in ``DEFAULT_CURRENCIES``.
    """
    try:
        return DEFAULT_CURRENCIES[region]
    except KeyError:
        raise InvalidInput(f"no default currency for region {region}: give --currency (e.g. EUR, CHF)") from None
